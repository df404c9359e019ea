package profiles

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // schedules name zones; hosts without tzdata must still load them
)

// Schedule is the [schedule] table: requests are served only inside one of
// the windows, in the schedule's time zone.
type Schedule struct {
	Windows []Window
	Loc     *time.Location
}

// Window is one "Mon-Fri 07:00-19:00" entry. End <= Start means the window
// runs past midnight into the next day.
type Window struct {
	Src        string
	Days       [7]bool // indexed by time.Weekday
	Start, End int     // minutes since midnight; End may be 1440
}

var dayNames = map[string]time.Weekday{
	"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday,
}

// ParseWindow parses "Mon-Fri 07:00-19:00", "Sat,Sun 10:00-12:00",
// "daily 00:00-24:00" or "Mon 22:00-06:00".
func ParseWindow(s string) (Window, error) {
	w := Window{Src: s}
	f := strings.Fields(s)
	if len(f) != 2 {
		return w, fmt.Errorf("window %q: want DAYS HH:MM-HH:MM, like \"Mon-Fri 07:00-19:00\"", s)
	}
	if err := parseDays(f[0], &w.Days); err != nil {
		return w, fmt.Errorf("window %q: %w", s, err)
	}
	from, to, ok := strings.Cut(f[1], "-")
	if !ok {
		return w, fmt.Errorf("window %q: want a time range HH:MM-HH:MM", s)
	}
	var err error
	if w.Start, err = parseClock(from, false); err != nil {
		return w, fmt.Errorf("window %q: %w", s, err)
	}
	if w.End, err = parseClock(to, true); err != nil {
		return w, fmt.Errorf("window %q: %w", s, err)
	}
	if w.Start == w.End {
		return w, fmt.Errorf("window %q: empty time range", s)
	}
	return w, nil
}

func parseDays(s string, days *[7]bool) error {
	if l := strings.ToLower(s); l == "daily" || l == "*" {
		for i := range days {
			days[i] = true
		}
		return nil
	}
	for _, part := range strings.Split(s, ",") {
		a, b, isRange := strings.Cut(part, "-")
		da, ok := dayNames[strings.ToLower(a)]
		if !ok {
			return fmt.Errorf("unknown day %q (use Mon Tue Wed Thu Fri Sat Sun or daily)", a)
		}
		db := da
		if isRange {
			if db, ok = dayNames[strings.ToLower(b)]; !ok {
				return fmt.Errorf("unknown day %q (use Mon Tue Wed Thu Fri Sat Sun or daily)", b)
			}
		}
		for d := da; ; d = (d + 1) % 7 {
			days[d] = true
			if d == db {
				break
			}
		}
	}
	return nil
}

func parseClock(s string, end bool) (int, error) {
	h, m, ok := strings.Cut(s, ":")
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if !ok || err1 != nil || err2 != nil || len(m) != 2 || hh < 0 || mm < 0 || mm > 59 || hh > 24 || (hh == 24 && (mm != 0 || !end)) {
		return 0, fmt.Errorf("bad time %q (want HH:MM, 00:00 to 24:00)", s)
	}
	return hh*60 + mm, nil
}

// Open reports whether t lies inside a window.
func (s *Schedule) Open(t time.Time) bool {
	if s == nil || len(s.Windows) == 0 {
		return true
	}
	t = t.In(s.Loc)
	mins := t.Hour()*60 + t.Minute()
	today, yesterday := t.Weekday(), (t.Weekday()+6)%7
	for _, w := range s.Windows {
		if w.Start < w.End {
			if w.Days[today] && mins >= w.Start && mins < w.End {
				return true
			}
			continue
		}
		// Past midnight: the part after Start belongs to today, the part
		// before End to the day the window started.
		if (w.Days[today] && mins >= w.Start) || (w.Days[yesterday] && mins < w.End) {
			return true
		}
	}
	return false
}

// NextOpen returns the first minute at or after t that lies in a window, and
// false when there is none within a week.
func (s *Schedule) NextOpen(t time.Time) (time.Time, bool) {
	t = t.In(s.Loc).Truncate(time.Minute)
	for i := 0; i <= 7*24*60; i++ {
		c := t.Add(time.Duration(i) * time.Minute)
		if s.Open(c) {
			return c, true
		}
	}
	return time.Time{}, false
}
