package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/user"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/execgate/execgate/api"
	"github.com/execgate/execgate/audit"
	"github.com/execgate/execgate/profiles"
	"github.com/execgate/execgate/shellparse"
	"github.com/execgate/execgate/supervisor/sandbox"
)

// Runner runs an allowed script confined. *sandbox.Runner implements it.
type Runner interface {
	Run(ctx context.Context, spec sandbox.Spec) (sandbox.Result, error)
	Kill(id string) bool
	KillAgent(agent string) int
	FreezeAgent(agent string, on bool) (int, error)
}

// Version is reported by /v1/status; set at build time.
var Version = "dev"

// Request limits. A request over them gets a clear JSON error.
const (
	MaxRequestHeader = 2 << 20 // the JSON head of /v1/exec, /v1/check
)

// Server is execgated's state and HTTP handlers.
type Server struct {
	cfg          *profiles.Config
	runner       Runner
	trail        *trail
	runtimeCheck bool
	now          func() time.Time
	look         *shellparse.Resolver
	logf         func(format string, args ...any)
	adminGIDs    map[uint32]bool
	started      time.Time
	cgroupV      int
	auditName    string

	reg atomic.Pointer[registry]
	// reloadMu keeps the daemon's own reloads (signal, file changes, an
	// admin, a remembered approval) from overlapping, so that each reload
	// record's added and removed lists are exact.
	reloadMu sync.Mutex
	// reloadHooks run around every reload, whatever its trigger (set by
	// WatchProfiles; guarded by reloadMu).
	reloadHooks reloadHooks

	mu       sync.Mutex
	runs     map[string]*runState
	perAgent map[string]int

	switches *switches
	pending  pending
	held     heldSets
	caps     caps
}

// Option configures a Server.
type Option func(*Server)

// WithClock replaces time.Now (tests of schedules and caps).
func WithClock(now func() time.Time) Option { return func(s *Server) { s.now = now } }

// WithLogf replaces where the server says what it cannot journal (by
// default stderr, "execgated: " first).
func WithLogf(logf func(format string, args ...any)) Option {
	return func(s *Server) { s.logf = logf }
}

// WithAuditName sets how /v1/status names the audit sink.
func WithAuditName(name string) Option { return func(s *Server) { s.auditName = name } }

// WithCgroupVersion sets the cgroup version /v1/status reports.
func WithCgroupVersion(v int) Option { return func(s *Server) { s.cgroupV = v } }

// NewServer loads the profiles named by cfg and returns a server that runs
// allowed scripts with runner and records every step in sink.
func NewServer(cfg *profiles.Config, runner Runner, sink audit.Sink, opts ...Option) (*Server, error) {
	if cfg == nil || runner == nil || sink == nil {
		return nil, errors.New("supervisor: config, runner and audit sink are required")
	}
	s := &Server{cfg: cfg, runner: runner, now: time.Now, logf: stderrLogf,
		runs: map[string]*runState{}, perAgent: map[string]int{}, adminGIDs: map[uint32]bool{}}
	for _, o := range opts {
		o(s)
	}
	if s.logf == nil {
		s.logf = func(string, ...any) {}
	}
	s.started = s.now()
	s.trail = newTrail(sink, s.logf)
	s.look = shellparse.NewResolver(0, s.now) // PATH lookups, cached briefly across requests
	sw, err := loadSwitches(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	s.switches = sw
	for _, g := range cfg.AdminGroups {
		if grp, err := user.LookupGroup(g); err == nil {
			if id, err := strconv.ParseUint(grp.Gid, 10, 32); err == nil {
				s.adminGIDs[uint32(id)] = true
			}
		}
	}
	if err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Reload re-reads every profile. A profile that fails keeps its last good
// version in force (a broken first load leaves the agent without one, and
// its caller is refused). Each loaded profile's sha256 is journaled.
func (s *Server) Reload() error {
	r := loadRegistry(s.cfg, s.reg.Load())
	s.reg.Store(r)
	rec := audit.New(audit.EventReload, audit.PriInfo, fmt.Sprintf("reload: %d agents, %d errors", len(r.byName), len(r.errs)))
	if len(r.kept) > 0 {
		rec.Set(audit.FieldReason, fmt.Sprintf("kept the last good profile of %v", r.kept))
	}
	if err := s.record(rec); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	for _, p := range r.byName {
		if err := s.record(audit.New(audit.EventReload, audit.PriInfo, fmt.Sprintf("%s profile %s sha256 %s", p.Name, p.File, p.SHA256)).
			Set(audit.FieldAgent, p.Name).SetInt(audit.FieldUID, p.UID).Set(audit.FieldProfileSHA256, p.SHA256)); err != nil {
			return fmt.Errorf("audit: %w", err)
		}
	}
	for _, e := range r.errs {
		pri := audit.PriErr
		if unknownAccount(e) {
			pri = audit.PriWarning
		}
		if err := s.record(audit.New(audit.EventError, pri, "profile: "+e.Error()).Set(audit.FieldReason, e.Error())); err != nil {
			return fmt.Errorf("audit: %w", err)
		}
	}
	return nil
}

// Serve answers the agent and admin sockets until ctx is done, then shuts
// down as ServeWith does with the default grace.
func (s *Server) Serve(ctx context.Context, agent, admin net.Listener) error {
	return s.ServeWith(ctx, agent, admin, ServeOptions{})
}

func (s *Server) isAdmin(p Peer) bool {
	if p.UID == 0 || s.adminGIDs[p.GID] {
		return true
	}
	for _, u := range s.cfg.AdminUIDs {
		if u == p.UID {
			return true
		}
	}
	if len(s.adminGIDs) == 0 {
		return false
	}
	// Supplementary groups come from the account database: SO_PEERCRED
	// carries only the primary group.
	if u, err := user.LookupId(strconv.FormatUint(uint64(p.UID), 10)); err == nil {
		if gids, err := u.GroupIds(); err == nil {
			for _, g := range gids {
				if id, err := strconv.ParseUint(g, 10, 32); err == nil && s.adminGIDs[uint32(id)] {
					return true
				}
			}
		}
	}
	return false
}

func (s *Server) handleWhoami(w http.ResponseWriter, r *http.Request, c caller) {
	prof := c.prof
	writeJSON(w, http.StatusOK, api.Whoami{Agent: prof.Name, UID: c.UID, PID: c.PID, Profile: prof.File, SHA256: prof.SHA256,
		Security: string(prof.Security), Ask: string(prof.Ask), Workdirs: prof.Workdirs})
}

func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request, _ caller) {
	reg := s.reg.Load()
	st := api.Status{Version: Version, Started: s.started, Audit: s.auditName, CgroupV: s.cgroupV, RuntimeCheck: s.runtimeCheck}
	sw := s.switches.get()
	st.Lockdown = sw.Lockdown
	st.Pending = len(s.pending.list())
	now := s.now()
	s.mu.Lock()
	st.Runs = len(s.runs)
	for _, p := range reg.byName {
		a := api.AgentStatus{Name: p.Name, UID: uint32(p.UID), Profile: p.File, SHA256: p.SHA256,
			Security: string(p.Security), Runs: s.perAgent[p.Name], Killed: sw.Agents[p.Name].Killed, Frozen: sw.Agents[p.Name].Frozen}
		a.RequestsMinute, a.RequestsDay, a.ExecsMinute, a.ExecsDay = s.caps.counts(p.Name, now)
		st.Agents = append(st.Agents, a)
	}
	s.mu.Unlock()
	sortAgents(st.Agents)
	for _, e := range reg.errs {
		st.Errors = append(st.Errors, e.Error())
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) handleRuns(w http.ResponseWriter, r *http.Request, _ caller) {
	writeJSON(w, http.StatusOK, s.runList())
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // a client that went away has nothing left to be told
}

func writeError(w http.ResponseWriter, code int, e api.Error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(e) // as in writeJSON
}

// record writes a record that gates an action (see trail): on an error,
// do not act.
func (s *Server) record(r *audit.Record) error { return s.trail.record(r) }

// note writes a record that gates nothing (see trail).
func (s *Server) note(r *audit.Record) { s.trail.note(r) }

// stderrLogf is the default logf: the daemon's stderr, which systemd
// sends to the journal under the unit.
func stderrLogf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "execgated: "+format+"\n", args...)
}
