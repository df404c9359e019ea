package supervisor

import (
	"fmt"
	"sync"
	"time"

	"github.com/execgate/execgate/profiles"
)

// window counts events over a rolling span in a fixed ring of buckets, so
// an agent that execs millions of programs a day costs no more memory than
// one that execs none. The span rolls one bucket at a time (a second for
// the minute window, a minute for the day window).
type window struct {
	res    time.Duration
	counts []int
	epochs []int64 // the bucket period each count belongs to
}

func newWindow(span, res time.Duration) window {
	n := int(span / res)
	return window{res: res, counts: make([]int, n), epochs: make([]int64, n)}
}

func (w *window) add(now time.Time) {
	e := now.UnixNano() / int64(w.res)
	i := int(e % int64(len(w.counts)))
	if w.epochs[i] != e {
		w.epochs[i], w.counts[i] = e, 0
	}
	w.counts[i]++
}

func (w *window) count(now time.Time) int {
	e := now.UnixNano() / int64(w.res)
	n := 0
	for i, c := range w.counts {
		if e-w.epochs[i] < int64(len(w.counts)) {
			n += c
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
		b = &budget{reqMin: newWindow(time.Minute, time.Second), reqDay: newWindow(24*time.Hour, time.Minute),
			execMin: newWindow(time.Minute, time.Second), execDay: newWindow(24*time.Hour, time.Minute)}
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
	return take(now, &b.reqMin, &b.reqDay, p.Limits.PerMinute, p.Limits.PerDay, "requests", profiles.KeyPerMinute, profiles.KeyPerDay)
}

// exec counts one nested exec against execs_per_minute and execs_per_day.
func (c *caps) exec(p *profiles.Profile, now time.Time) (string, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.get(p.Name)
	return take(now, &b.execMin, &b.execDay, p.Limits.ExecsPerMinute, p.Limits.ExecsPerDay, "programs started", profiles.KeyExecsPerMinute, profiles.KeyExecsPerDay)
}

func take(now time.Time, min, day *window, perMin, perDay int, what, minKey, dayKey string) (string, string) {
	// Check both before recording either, so a refusal costs nothing.
	if perMin > 0 && min.count(now) >= perMin {
		return fmt.Sprintf("%s cap reached: %d %s in the last minute (%s)", what, perMin, what, minKey), minKey
	}
	if perDay > 0 && day.count(now) >= perDay {
		return fmt.Sprintf("%s cap reached: %d %s in the last 24 hours (%s)", what, perDay, what, dayKey), dayKey
	}
	min.add(now)
	day.add(now)
	return "", ""
}

// counts reports an agent's usage for status.
func (c *caps) counts(agent string, now time.Time) (reqMin, reqDay, execMin, execDay int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.get(agent)
	return b.reqMin.count(now), b.reqDay.count(now), b.execMin.count(now), b.execDay.count(now)
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
