package supervisor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/execgate/execgate/audit"
)

// DefaultShutdownGrace is how long running runs may go on after the daemon
// was told to stop (execgated --shutdown-grace).
const DefaultShutdownGrace = 10 * time.Second

// ServeOptions configures ServeWith.
type ServeOptions struct {
	// Grace is how long running runs may go on, once ctx is done, before
	// their cgroups are killed. 0 means DefaultShutdownGrace; a negative
	// value kills them at once.
	Grace time.Duration
	// Settle bounds each wait after the grace: for killed runs to be gone,
	// and for every request's handler to write its end record and answer
	// (default 10s). Keep Grace plus twice Settle under the unit's
	// TimeoutStopSec.
	Settle time.Duration
	// Stopping is called once ctx is done, before the grace, with a status
	// line (sd_notify STOPPING=1).
	Stopping func(status string)
}

// Summary is one status line: agents, runs, pending approvals and what is
// wrong (profile errors, lockdown, no exec check). It takes the server's
// locks, so it doubles as the watchdog's liveness probe.
func (s *Server) Summary() string {
	reg := s.reg.Load()
	agents, errs := 0, 0
	if reg != nil {
		agents, errs = len(reg.byName), len(reg.errs)
	}
	s.mu.Lock()
	runs := len(s.runs)
	s.mu.Unlock()
	msg := fmt.Sprintf("%s, %s, %s", plural(agents, "agent"), plural(runs, "run"), plural(len(s.pending.list()), "pending approval"))
	if errs > 0 {
		msg += ", " + plural(errs, "profile error")
	}
	if s.switches != nil && s.switches.get().Lockdown {
		msg += ", LOCKDOWN"
	}
	if !s.runtimeCheck {
		msg += ", DEGRADED: no runtime exec check"
	}
	return msg
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// running returns the runs in progress.
func (s *Server) running() []*runState {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*runState, 0, len(s.runs))
	for _, r := range s.runs {
		out = append(out, r)
	}
	return out
}

// ServeWith answers the agent and admin sockets until ctx is done, then
// shuts down in order:
//  1. it stops accepting (the listeners close; with socket activation
//     systemd keeps the sockets, and connections wait for the next start);
//  2. running runs get Grace to end on their own;
//  3. what still runs is killed (its cgroup), each kill journaled;
//  4. it waits for every request's handler, so every run's end record is
//     written and its client gets the exit event, then closes what is left
//     (requests still waiting for an approval end as not run).
func (s *Server) ServeWith(ctx context.Context, agent, admin net.Listener, o ServeOptions) error {
	grace, settle := o.durations()
	sv := s.serveSockets(agent, admin)
	var err error
	select {
	case <-ctx.Done():
	case err = <-sv.errc:
	}

	// 1. Shutdown closes the listeners and idle connections now, and
	// waits for the active ones in the background.
	sctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var shut sync.WaitGroup
	for _, hs := range sv.servers {
		shut.Add(1)
		go func() { defer shut.Done(); _ = hs.Shutdown(sctx) }() // ends when the connections have, or at cancel
	}
	s.announceStop(grace, o.Stopping)

	// 2. The grace.
	until(grace, s.noRuns)

	// 3. Kill what is left.
	s.killLeft(grace, settle)

	// 4. Let the handlers of ended runs write their end records and
	// answer, then close the rest (approval waits, slow clients) and let
	// their handlers finish too.
	until(min(settle, 2*time.Second), sv.idle)
	for _, hs := range sv.servers {
		_ = hs.Close() // its error is the listener's, closed by Shutdown already
	}
	if !until(settle, sv.idle) {
		s.logf("shutdown: %d requests still running after %s", sv.active.Load(), settle)
	}
	cancel()
	shut.Wait()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// durations are the grace and the settle time, defaults filled in.
func (o ServeOptions) durations() (grace, settle time.Duration) {
	grace, settle = o.Grace, o.Settle
	if grace == 0 {
		grace = DefaultShutdownGrace
	}
	if settle <= 0 {
		settle = 10 * time.Second
	}
	return max(grace, 0), settle
}

// sockets is the two sockets being served, with a count of the handlers
// running.
type sockets struct {
	servers []*http.Server
	errc    chan error // each server's Serve error
	active  atomic.Int64
}

func (sv *sockets) idle() bool { return sv.active.Load() == 0 }

func (sv *sockets) track(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sv.active.Add(1)
		defer sv.active.Add(-1)
		h.ServeHTTP(w, r)
	})
}

func (s *Server) serveSockets(agent, admin net.Listener) *sockets {
	sv := &sockets{errc: make(chan error, 2)}
	sv.servers = []*http.Server{
		{Handler: sv.track(s.AgentHandler()), ConnContext: peerContext, ReadHeaderTimeout: 10 * time.Second},
		{Handler: sv.track(s.AdminHandler()), ConnContext: peerContext, ReadHeaderTimeout: 10 * time.Second},
	}
	for i, ln := range []net.Listener{agent, admin} {
		go func() { sv.errc <- sv.servers[i].Serve(ln) }()
	}
	return sv
}

// announceStop says the daemon is stopping: to stopping (sd_notify) and
// in the journal.
func (s *Server) announceStop(grace time.Duration, stopping func(string)) {
	status := fmt.Sprintf("stopping: %s, %s grace", plural(len(s.running()), "run"), grace)
	if stopping != nil {
		stopping(status)
	}
	s.note(audit.New(audit.EventAdmin, audit.PriInfo, "execgated "+status).
		Set(audit.FieldAdminAction, "shutdown").SetInt(audit.FieldDurationMS, grace.Milliseconds()))
}

// killLeft kills what still runs, again and again for up to settle until
// nothing does: a request decided during the grace may still have started
// one. Each kill is journaled.
func (s *Server) killLeft(grace, settle time.Duration) {
	killed := map[string]bool{}
	until(settle, func() bool {
		for _, r := range s.running() {
			if killed[r.ID] {
				continue
			}
			killed[r.ID] = true
			msg := fmt.Sprintf("%s KILL at shutdown: the run outlived the %s grace", r.Agent, grace)
			s.note(audit.New(audit.EventAdmin, audit.PriWarning, msg).Set(audit.FieldAdminAction, "shutdown kill").
				Set(audit.FieldID, r.ID).Set(audit.FieldAgent, r.Agent).SetInt(audit.FieldUID, int64(r.UID)).
				Set(audit.FieldReason, "the daemon is stopping"))
			r.cancel()
		}
		return s.noRuns()
	})
}

func (s *Server) noRuns() bool { return len(s.running()) == 0 }

// until polls done for up to d and reports whether it came true.
func until(d time.Duration, done func() bool) bool {
	end := time.Now().Add(d)
	for !done() {
		if !time.Now().Before(end) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}
