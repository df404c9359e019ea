package notify

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// listen makes a real NOTIFY_SOCKET and returns its messages as they come.
func listen(t *testing.T) <-chan string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	ch := make(chan string, 100)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			if err != nil {
				close(ch)
				return
			}
			ch <- string(buf[:n])
		}
	}()
	return ch
}

func next(t *testing.T, ch <-chan string) string {
	t.Helper()
	select {
	case m := <-ch:
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("no sd_notify message within 5s")
		return ""
	}
}

func TestMessages(t *testing.T) {
	ch := listen(t)
	t.Setenv("WATCHDOG_USEC", "")
	n := New()
	if !n.Enabled() || n.Watchdog() != 0 {
		t.Fatalf("Enabled %v Watchdog %v", n.Enabled(), n.Watchdog())
	}
	n.Ready("serving 2 agents")
	if m := next(t, ch); m != "READY=1\nSTATUS=serving 2 agents" {
		t.Errorf("ready: %q", m)
	}
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	before := ts.Nano() / 1000
	n.Reloading("reloading\nprofiles")
	m := next(t, ch)
	lines := strings.Split(m, "\n")
	if len(lines) != 3 || lines[0] != "RELOADING=1" || !strings.HasPrefix(lines[1], "MONOTONIC_USEC=") || lines[2] != "STATUS=reloading profiles" {
		t.Fatalf("reloading: %q", m)
	}
	usec, err := strconv.ParseInt(strings.TrimPrefix(lines[1], "MONOTONIC_USEC="), 10, 64)
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	if err != nil || usec < before || usec > ts.Nano()/1000 {
		t.Errorf("MONOTONIC_USEC %d not within [%d, %d]", usec, before, ts.Nano()/1000)
	}
	// A status equal to the last one is not sent again.
	n.Status("reloading profiles")
	n.Status("serving 3 agents")
	if m := next(t, ch); m != "STATUS=serving 3 agents" {
		t.Errorf("status: %q", m)
	}
	n.Stopping("stopping")
	if m := next(t, ch); m != "STOPPING=1\nSTATUS=stopping" {
		t.Errorf("stopping: %q", m)
	}
}

func TestWatchdog(t *testing.T) {
	ch := listen(t)
	t.Setenv("WATCHDOG_USEC", "200000")
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	n := New()
	if n.Watchdog() != 200*time.Millisecond {
		t.Fatalf("Watchdog = %v", n.Watchdog())
	}
	// The settings are taken out of the environment: children never see them.
	if os.Getenv("WATCHDOG_USEC") != "" || os.Getenv("WATCHDOG_PID") != "" {
		t.Error("WATCHDOG_* left in the environment")
	}
	var stuck atomic.Bool
	probe := func() string {
		for stuck.Load() {
			time.Sleep(10 * time.Millisecond)
		}
		return "ok"
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n.Run(ctx, probe, time.Hour); close(done) }()
	var pings []time.Time
	for len(pings) < 5 {
		if m := next(t, ch); m == "WATCHDOG=1" {
			pings = append(pings, time.Now())
		}
	}
	for i := 1; i < len(pings); i++ {
		if d := pings[i].Sub(pings[i-1]); d < 50*time.Millisecond || d > 180*time.Millisecond {
			t.Errorf("ping interval %v, want about 100ms (half of WatchdogSec)", d)
		}
	}
	// A probe that does not return stops the pings.
	stuck.Store(true)
	time.Sleep(150 * time.Millisecond)
	for len(ch) > 0 {
		<-ch
	}
	select {
	case m := <-ch:
		t.Errorf("a stuck daemon still sent %q", m)
	case <-time.After(400 * time.Millisecond):
	}
	stuck.Store(false)
	cancel()
	<-done

	// A watchdog meant for another process is not this one's.
	t.Setenv("WATCHDOG_USEC", "200000")
	t.Setenv("WATCHDOG_PID", "1")
	if New().Watchdog() != 0 {
		t.Error("WATCHDOG_PID of another process was honoured")
	}
}

func TestNoManager(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	n := New()
	if n.Enabled() {
		t.Error("enabled without NOTIFY_SOCKET")
	}
	if err := n.Ready("x"); err != nil {
		t.Errorf("Ready without a manager: %v", err)
	}
}
