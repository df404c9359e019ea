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
	sink         audit.Sink
	runtimeCheck bool
	now          func() time.Time
	adminGIDs    map[uint32]bool
	started      time.Time
	cgroupV      int
	auditName    string

	reg atomic.Pointer[registry]

	mu       sync.Mutex
	runs     map[string]*runState
	perAgent map[string]int

	switches *switches
	pending  pending
	caps     caps
}

// Option configures a Server.
type Option func(*Server)

// WithClock replaces time.Now (tests of schedules and caps).
func WithClock(now func() time.Time) Option { return func(s *Server) { s.now = now } }

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
	s := &Server{cfg: cfg, runner: runner, sink: &trail{sink: sink}, now: time.Now, started: time.Now(),
		runs: map[string]*runState{}, perAgent: map[string]int{}, adminGIDs: map[uint32]bool{}}
	for _, o := range opts {
		o(s)
	}
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
	if err := s.sink.Write(rec); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	for _, p := range r.byName {
		if err := s.sink.Write(audit.New(audit.EventReload, audit.PriInfo, fmt.Sprintf("%s profile %s sha256 %s", p.Name, p.File, p.SHA256)).
			Set(audit.FieldAgent, p.Name).SetInt(audit.FieldUID, p.UID).Set(audit.FieldProfileSHA256, p.SHA256)); err != nil {
			return fmt.Errorf("audit: %w", err)
		}
	}
	for _, e := range r.errs {
		pri := audit.PriErr
		if unknownAccount(e) {
			pri = audit.PriWarning
		}
		if err := s.sink.Write(audit.New(audit.EventError, pri, "profile: "+e.Error()).Set(audit.FieldReason, e.Error())); err != nil {
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

// AgentHandler serves the agent socket.
func (s *Server) AgentHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+api.PathExec, s.handleExec)
	mux.HandleFunc("POST "+api.PathCheck, s.handleCheck)
	mux.HandleFunc("GET "+api.PathWhoami, s.handleWhoami)
	// Admin endpoints are refused by name here, so an agent gets a clear
	// answer rather than a 404 it might retry elsewhere.
	for _, p := range []string{api.PathStatus, api.PathRuns, api.PathApprovals, api.PathApprovals + "/", api.PathAgents, api.PathLockdown, api.PathReload} {
		mux.HandleFunc(p, func(w http.ResponseWriter, r *http.Request) {
			writeError(w, http.StatusForbidden, api.Error{Error: r.URL.Path + " is served only on the admin socket, to admins"})
		})
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, api.Error{Error: "no such endpoint: " + r.Method + " " + r.URL.Path})
	})
	return mux
}

// AdminHandler serves the admin socket.
func (s *Server) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+api.PathStatus, s.admin(s.handleStatus))
	mux.HandleFunc("GET "+api.PathRuns, s.admin(s.handleRuns))
	mux.HandleFunc("GET "+api.PathApprovals, s.admin(s.handleApprovals))
	mux.HandleFunc("POST "+api.PathApprovals+"/{id}", s.admin(s.handleDecide))
	mux.HandleFunc("POST "+api.PathAgents+"{name}/{action}", s.admin(s.handleAgentAction))
	mux.HandleFunc("POST "+api.PathLockdown, s.admin(s.handleLockdown))
	mux.HandleFunc("POST "+api.PathReload, s.admin(s.handleReload))
	mux.HandleFunc("/", s.admin(func(w http.ResponseWriter, r *http.Request, _ Peer) {
		writeError(w, http.StatusNotFound, api.Error{Error: "no such endpoint: " + r.Method + " " + r.URL.Path})
	}))
	return mux
}

// admin wraps an admin handler with its permission check.
func (s *Server) admin(h func(http.ResponseWriter, *http.Request, Peer)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, ok := peerFrom(r.Context())
		if !ok || !s.isAdmin(p) {
			uid := "unknown"
			if ok {
				uid = strconv.FormatUint(uint64(p.UID), 10)
			}
			rec := audit.New(audit.EventAdmin, audit.PriWarning, fmt.Sprintf("uid %s REFUSED admin %s %s", uid, r.Method, r.URL.Path)).
				Set(audit.FieldUID, uid).Set(audit.FieldAdminAction, r.Method+" "+r.URL.Path).Set(audit.FieldDecision, "deny").
				Set(audit.FieldReason, "not an admin")
			s.sink.Write(rec)
			writeError(w, http.StatusForbidden, api.Error{Error: "uid " + uid + " is not an execgate admin"})
			return
		}
		h(w, r, p)
	}
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

// agent identifies the caller of an agent-socket request, answering 403
// (and journaling it) when the uid has no profile.
func (s *Server) agent(w http.ResponseWriter, r *http.Request) (*profiles.Profile, Peer, bool) {
	p, ok := peerFrom(r.Context())
	if !ok {
		writeError(w, http.StatusForbidden, api.Error{Error: "the caller's credentials could not be read"})
		return nil, p, false
	}
	prof := s.reg.Load().byUID[p.UID]
	if prof == nil {
		msg := fmt.Sprintf("uid %d has no execgate profile", p.UID)
		rec := audit.New(audit.EventError, audit.PriWarning, msg+" (refused "+r.URL.Path+")").
			SetInt(audit.FieldUID, int64(p.UID)).SetInt(audit.FieldPeerPID, int64(p.PID)).
			Set(audit.FieldDecision, "deny").Set(audit.FieldReason, msg)
		s.sink.Write(rec)
		writeError(w, http.StatusForbidden, api.Error{Error: msg, Decision: "deny"})
		return nil, p, false
	}
	return prof, p, true
}

func (s *Server) handleWhoami(w http.ResponseWriter, r *http.Request) {
	prof, peer, ok := s.agent(w, r)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, api.Whoami{Agent: prof.Name, UID: peer.UID, PID: peer.PID, Profile: prof.File, SHA256: prof.SHA256,
		Security: string(prof.Security), Ask: string(prof.Ask), Workdirs: prof.Workdirs})
}

func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request, _ Peer) {
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

func (s *Server) handleRuns(w http.ResponseWriter, r *http.Request, _ Peer) {
	writeJSON(w, http.StatusOK, s.runList())
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, e api.Error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(e)
}

// logf reports what cannot be journaled.
func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "execgated: "+format+"\n", args...)
}
