package supervisor

import (
	"fmt"
	"sync"
	"time"

	"github.com/execgate/execgate/profiles"
)

// window counts events in a rolling span.
type window struct{ times []time.Time }

// add records now and forgets what fell out of the span.
func (w *window) add(now time.Time, span time.Duration) {
	cut := now.Add(-span)
	i := 0
	for i < len(w.times) && !w.times[i].After(cut) {
		i++
	}
	w.times = append(w.times[i:], now)
}

func (w *window) count(now time.Time, span time.Duration) int {
	n := 0
	for _, t := range w.times {
		if t.After(now.Add(-span)) {
			n++
		}
	}
	return n
}

// budget is one agent's rolling counts: requests and nested execs apart.
type budget struct {
	reqMin, reqDay, execMin, execDay window
}

// caps holds every agent's budget.
type caps struct {
	mu sync.Mutex
	m  map[string]*budget
}

func (c *caps) get(agent string) *budget {
	if c.m == nil {
		c.m = map[string]*budget{}
	}
	b := c.m[agent]
	if b == nil {
		b = &budget{}
		c.m[agent] = b
	}
	return b
}

// request counts one request against p's per_minute and per_day, and
// returns the reason and setting when a cap refuses it.
func (c *caps) request(p *profiles.Profile, now time.Time) (string, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.get(p.Name)
	return take(now, &b.reqMin, &b.reqDay, p.Limits.PerMinute, p.Limits.PerDay, "requests", "limits.per_minute", "limits.per_day")
}

// exec counts one nested exec against execs_per_minute and execs_per_day.
func (c *caps) exec(p *profiles.Profile, now time.Time) (string, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.get(p.Name)
	return take(now, &b.execMin, &b.execDay, p.Limits.ExecsPerMinute, p.Limits.ExecsPerDay, "programs started", "limits.execs_per_minute", "limits.execs_per_day")
}

func take(now time.Time, min, day *window, perMin, perDay int, what, minKey, dayKey string) (string, string) {
	// Check both before recording either, so a refusal costs nothing.
	if perMin > 0 && min.count(now, time.Minute) >= perMin {
		return fmt.Sprintf("%s cap reached: %d %s in the last minute (%s)", what, perMin, what, minKey), minKey
	}
	if perDay > 0 && day.count(now, 24*time.Hour) >= perDay {
		return fmt.Sprintf("%s cap reached: %d %s in the last 24 hours (%s)", what, perDay, what, dayKey), dayKey
	}
	min.add(now, time.Minute)
	day.add(now, 24*time.Hour)
	return "", ""
}

// counts reports an agent's usage for status.
func (c *caps) counts(agent string, now time.Time) (reqMin, reqDay, execMin, execDay int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.get(agent)
	return b.reqMin.count(now, time.Minute), b.reqDay.count(now, 24*time.Hour), b.execMin.count(now, time.Minute), b.execDay.count(now, 24*time.Hour)
}

// scheduleRefusal says why the schedule refuses a request at now, or "".
func scheduleRefusal(p *profiles.Profile, now time.Time) string {
	s := p.Schedule
	if s == nil || s.Open(now) {
		return ""
	}
	var wins []string
	for _, w := range s.Windows {
		wins = append(wins, w.Src)
	}
	msg := fmt.Sprintf("outside the agent's schedule (%v, %s)", wins, s.Loc)
	if next, ok := s.NextOpen(now); ok {
		msg += "; the next window opens " + next.Format("Mon 2006-01-02 15:04 MST")
	}
	return msg
}
