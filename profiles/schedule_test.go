package profiles

import (
	"testing"
	"time"
)

func TestSchedule(t *testing.T) {
	loc, _ := time.LoadLocation("Africa/Johannesburg")
	mk := func(ws ...string) *Schedule {
		s := &Schedule{Loc: loc}
		for _, w := range ws {
			pw, err := ParseWindow(w)
			if err != nil {
				t.Fatal(err)
			}
			s.Windows = append(s.Windows, pw)
		}
		return s
	}
	at := func(s string) time.Time {
		tm, err := time.ParseInLocation("Mon 2006-01-02 15:04", s, loc)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	office := mk("Mon-Fri 07:00-19:00")
	night := mk("Fri 22:00-06:00")
	tests := []struct {
		s    *Schedule
		t    string
		want bool
	}{
		{office, "Mon 2026-11-23 07:00", true},
		{office, "Mon 2026-11-23 18:59", true},
		{office, "Mon 2026-11-23 19:00", false},
		{office, "Mon 2026-11-23 06:59", false},
		{office, "Sat 2026-11-28 12:00", false},
		{night, "Fri 2026-11-27 23:00", true},
		{night, "Sat 2026-11-28 05:59", true},
		{night, "Sat 2026-11-28 06:00", false},
		{night, "Sun 2026-11-29 01:00", false},
		{mk("daily 00:00-24:00"), "Sun 2026-11-29 23:59", true},
		{mk("Sat,Sun 10:00-12:00", "Wed 13:00-14:00"), "Wed 2026-11-25 13:30", true},
		{mk("Fri-Mon 10:00-12:00"), "Sun 2026-11-29 11:00", true}, // wraps past Sat
		{mk("Fri-Mon 10:00-12:00"), "Wed 2026-11-25 11:00", false},
	}
	for _, tt := range tests {
		t.Run(tt.s.Windows[0].Src+" at "+tt.t, func(t *testing.T) {
			if got := tt.s.Open(at(tt.t)); got != tt.want {
				t.Errorf("%v.Open(%s) = %v, want %v", tt.s.Windows[0].Src, tt.t, got, tt.want)
			}
		})
	}
	// The clock is Johannesburg time, whatever the caller's zone.
	if !office.Open(time.Date(2026, 11, 23, 6, 30, 0, 0, time.UTC)) { // 08:30 SAST
		t.Error("time zone not applied")
	}
	next, ok := office.NextOpen(at("Sat 2026-11-28 12:00"))
	if !ok || next.Format("Mon 15:04") != "Mon 07:00" {
		t.Errorf("NextOpen = %v %v", next, ok)
	}
	for _, bad := range []string{"Mon 7-19", "Mon 07:00", "Mon 25:00-26:00", "Mon 07:00-07:00", "Xyz 07:00-08:00", "Mon 24:00-01:00", "Mon 07:60-08:00"} {
		if _, err := ParseWindow(bad); err == nil {
			t.Errorf("ParseWindow(%q): want error", bad)
		}
	}
}
