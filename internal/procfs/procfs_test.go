package procfs

import (
	"os"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseStat(t *testing.T) {
	tail := " S 41 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 200 18446744073709551615\n"
	for _, c := range []struct {
		name, in string
		want     Proc
		ok       bool
	}{
		{"plain", "42 (sh)" + tail, Proc{Comm: "sh", PPid: 41, Start: 98765}, true},
		{"spaces in the name", "42 (a b)" + tail, Proc{Comm: "a b", PPid: 41, Start: 98765}, true},
		{"parentheses in the name", "42 (x) S 1 (y))" + tail, Proc{Comm: "x) S 1 (y)", PPid: 41, Start: 98765}, true},
		{"empty name", "42 ()" + tail, Proc{Comm: "", PPid: 41, Start: 98765}, true},
		{"no name", "42 sh" + tail, Proc{}, false},
		{"close before open", "42 )sh(" + tail, Proc{}, false},
		{"short", "42 (sh) S 41 42 42", Proc{}, false},
		{"empty", "", Proc{}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, ok := parseStat([]byte(c.in))
			if got != c.want || ok != c.ok {
				t.Errorf("parseStat(%q) = %+v, %v; want %+v, %v", c.in, got, ok, c.want, c.ok)
			}
		})
	}
}

func TestParseStatus(t *testing.T) {
	for _, c := range []struct {
		name, in   string
		tgid, ppid int
		ok         bool
	}{
		{"process", "Name:\tsh\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t42\nNgid:\t0\nPid:\t42\nPPid:\t41\nTracerPid:\t0\n", 42, 41, true},
		{"thread", "Name:\tsh\nTgid:\t42\nPid:\t43\nPPid:\t41\n", 42, 41, true},
		{"cut after PPid", "Name:\tsh\nTgid:\t42\nPid:\t42\nPPid:\t41", 42, 41, true},
		{"no PPid", "Name:\tsh\nTgid:\t42\n", 0, 0, false},
		{"no Tgid", "Name:\tsh\nPPid:\t41\n", 0, 0, false},
		{"empty", "", 0, 0, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			tgid, ppid, ok := parseStatus([]byte(c.in))
			if ok != c.ok || ok && (tgid != c.tgid || ppid != c.ppid) {
				t.Errorf("parseStatus(%q) = %d, %d, %v; want %d, %d, %v", c.in, tgid, ppid, ok, c.tgid, c.ppid, c.ok)
			}
		})
	}
}

func TestLive(t *testing.T) {
	t.Run("stat", func(t *testing.T) {
		p, err := Stat(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		comm, _ := os.ReadFile("/proc/self/comm")
		if p.PPid != os.Getppid() || p.Comm != strings.TrimSpace(string(comm)) || p.Start == 0 {
			t.Errorf("Stat(self) = %+v; ppid %d comm %q", p, os.Getppid(), comm)
		}
	})
	t.Run("status of a thread", func(t *testing.T) {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		tgid, ppid, err := Status(unix.Gettid())
		if err != nil || tgid != os.Getpid() || ppid != os.Getppid() {
			t.Errorf("Status(tid) = %d, %d, %v; want %d, %d", tgid, ppid, err, os.Getpid(), os.Getppid())
		}
	})
	t.Run("missing", func(t *testing.T) {
		if _, err := Stat(1 << 30); err == nil {
			t.Error("Stat of a missing pid: no error")
		}
		if _, _, err := Status(1 << 30); err == nil {
			t.Error("Status of a missing pid: no error")
		}
	})
	// The exec check calls these for every exec: the path and the name
	// are all they allocate.
	t.Run("allocations", func(t *testing.T) {
		pid := os.Getpid()
		if n := testing.AllocsPerRun(100, func() { Stat(pid) }); n > 4 {
			t.Errorf("Stat: %v allocations", n)
		}
		if n := testing.AllocsPerRun(100, func() { Status(pid) }); n > 3 {
			t.Errorf("Status: %v allocations", n)
		}
	})
}
