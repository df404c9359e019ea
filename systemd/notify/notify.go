package notify

import (
	"context"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// Notifier sends state changes to the service manager. The zero value is
// not usable; use New. It is safe for concurrent use.
type Notifier struct {
	watchdog time.Duration // WATCHDOG_USEC when it is meant for this process, else 0

	mu         sync.Mutex
	lastStatus string
	sent       func(state string) error // daemon.SdNotify; replaced by tests
}

// New reads the watchdog settings ($WATCHDOG_USEC, honoured only when
// $WATCHDOG_PID is unset or names this process) and removes them from the
// environment, so no child process inherits a watchdog meant for the
// daemon. $NOTIFY_SOCKET stays: go-systemd reads it on every message.
func New() *Notifier {
	wd, err := daemon.SdWatchdogEnabled(true)
	if err != nil {
		wd = 0
	}
	return &Notifier{watchdog: wd, sent: func(state string) error {
		_, err := daemon.SdNotify(false, state)
		return err
	}}
}

// Enabled reports whether a service manager listens ($NOTIFY_SOCKET set).
func (n *Notifier) Enabled() bool { return os.Getenv("NOTIFY_SOCKET") != "" }

// Watchdog is the interval the service manager expects pings within, or 0
// when there is no watchdog for this process.
func (n *Notifier) Watchdog() time.Duration { return n.watchdog }

func (n *Notifier) send(lines ...string) error {
	var b strings.Builder
	for _, l := range lines {
		l = strings.TrimRight(l, "\n")
		if l == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(l)
	}
	return n.sent(b.String())
}

// status formats a STATUS= line and remembers it; one line, no newlines.
func (n *Notifier) status(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	n.lastStatus = s
	if s == "" {
		return ""
	}
	return "STATUS=" + s
}

// Ready says the daemon serves: its sockets accept connections and its
// profiles are loaded. It also ends a reload (after Reloading).
func (n *Notifier) Ready(status string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.send(daemon.SdNotifyReady, n.status(status))
}

// Reloading says a reload starts, with the CLOCK_MONOTONIC time systemd
// (253 and later, Type=notify-reload) matches against its reload request.
// Ready must follow.
func (n *Notifier) Reloading(status string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.send(daemon.SdNotifyReloading, daemon.SdNotifyMonotonicUsec(), n.status(status))
}

// Stopping says the daemon is shutting down.
func (n *Notifier) Stopping(status string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.send(daemon.SdNotifyStopping, n.status(status))
}

// Status sends a STATUS= line when it differs from the last one sent.
func (n *Notifier) Status(status string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if strings.Join(strings.Fields(status), " ") == n.lastStatus {
		return nil
	}
	return n.send(n.status(status))
}

// Failed reports an error the daemon exits with, for `systemctl status`.
func (n *Notifier) Failed(err error) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.send(n.status("failed: " + err.Error()))
}

// Run pings the watchdog at half its interval and sends STATUS= lines as
// the status changes (checked every statusEvery, default 1s), until ctx
// ends. status is the liveness probe: a ping is sent only after it
// returned, so a daemon stuck on its own locks stops pinging.
func (n *Notifier) Run(ctx context.Context, status func() string, statusEvery time.Duration) {
	if statusEvery <= 0 {
		statusEvery = time.Second
	}
	var wd <-chan time.Time
	if n.watchdog > 0 {
		t := time.NewTicker(n.watchdog / 2)
		defer t.Stop()
		wd = t.C
	}
	st := time.NewTicker(statusEvery)
	defer st.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-wd:
			s := status()
			n.mu.Lock()
			// A ping or status systemd does not take has no one to be
			// reported to; a missing ping is what the watchdog is for.
			_ = n.send(daemon.SdNotifyWatchdog)
			n.mu.Unlock()
			_ = n.Status(s)
		case <-st.C:
			_ = n.Status(status())
		}
	}
}
