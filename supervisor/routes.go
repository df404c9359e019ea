package supervisor

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/execgate/execgate/api"
	"github.com/execgate/execgate/audit"
	"github.com/execgate/execgate/profiles"
)

// audience is who may call a route.
type audience int

const (
	forAgents audience = iota + 1 // a uid with a profile, on the agent socket, for its own profile
	forAdmins                     // root and the configured admins, on the admin socket
)

// caller is who made a request, as the route's audience check found them.
type caller struct {
	Peer
	prof *profiles.Profile // the caller's own profile; nil for an admin
}

// route is one endpoint of the socket API.
type route struct {
	method string
	path   string // as http.ServeMux takes it, {wildcards} and all
	who    audience
	serve  func(http.ResponseWriter, *http.Request, caller)
}

// routes is the socket API. Both sockets are built from it: the agent
// socket serves the agents' routes and refuses (403) every admin route by
// construction; the admin socket serves the admin routes only.
func (s *Server) routes() []route {
	return []route{
		{http.MethodPost, api.PathExec, forAgents, s.handleExec},
		{http.MethodPost, api.PathCheck, forAgents, s.handleCheck},
		{http.MethodGet, api.PathWhoami, forAgents, s.handleWhoami},
		{http.MethodGet, api.PathStatus, forAdmins, s.handleStatus},
		{http.MethodGet, api.PathRuns, forAdmins, s.handleRuns},
		{http.MethodGet, api.PathApprovals, forAdmins, s.handleApprovals},
		{http.MethodPost, api.PathApprovals + "/{id}", forAdmins, s.handleDecide},
		{http.MethodGet, api.PathChanges + "/{id}", forAdmins, s.handleChanges},
		{http.MethodPost, api.PathAgents + "{name}/{action}", forAdmins, s.handleAgentAction},
		{http.MethodPost, api.PathLockdown, forAdmins, s.handleLockdown},
		{http.MethodPost, api.PathReload, forAdmins, s.handleReload},
	}
}

// AgentHandler serves the agent socket.
func (s *Server) AgentHandler() http.Handler {
	mux := http.NewServeMux()
	refused := map[string]bool{}
	for _, rt := range s.routes() {
		if rt.who == forAgents {
			mux.HandleFunc(rt.method+" "+rt.path, s.asAgent(rt.serve))
			continue
		}
		// An admin path is refused by name, whatever the method and
		// whatever follows a wildcard, so an agent gets a clear answer
		// rather than a 404 it might retry elsewhere.
		if p := refusedPath(rt.path); !refused[p] {
			refused[p] = true
			mux.HandleFunc(p, func(w http.ResponseWriter, r *http.Request) {
				writeError(w, http.StatusForbidden, api.Error{Error: r.URL.Path + " is served only on the admin socket, to admins"})
			})
		}
	}
	mux.HandleFunc("/", noEndpoint)
	return mux
}

// AdminHandler serves the admin socket.
func (s *Server) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	for _, rt := range s.routes() {
		if rt.who == forAdmins {
			mux.HandleFunc(rt.method+" "+rt.path, s.asAdmin(rt.serve))
		}
	}
	mux.HandleFunc("/", s.asAdmin(func(w http.ResponseWriter, r *http.Request, _ caller) { noEndpoint(w, r) }))
	return mux
}

// refusedPath is the pattern the agent socket refuses for an admin path:
// the path itself, or everything under it when it has a wildcard.
func refusedPath(path string) string {
	if i := strings.IndexByte(path, '{'); i >= 0 {
		return path[:i]
	}
	return path
}

func noEndpoint(w http.ResponseWriter, r *http.Request) {
	writeError(w, http.StatusNotFound, api.Error{Error: "no such endpoint: " + r.Method + " " + r.URL.Path})
}

// asAdmin serves a route to admins only, journaling every refusal.
func (s *Server) asAdmin(h func(http.ResponseWriter, *http.Request, caller)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, ok := peerFrom(r.Context())
		if !ok || !s.isAdmin(p) {
			uid := "unknown"
			if ok {
				uid = strconv.FormatUint(uint64(p.UID), 10)
			}
			s.note(audit.New(audit.EventAdmin, audit.PriWarning, fmt.Sprintf("uid %s REFUSED admin %s %s", uid, r.Method, r.URL.Path)).
				Set(audit.FieldUID, uid).Set(audit.FieldAdminAction, r.Method+" "+r.URL.Path).Set(audit.FieldDecision, "deny").
				Set(audit.FieldReason, "not an admin"))
			writeError(w, http.StatusForbidden, api.Error{Error: "uid " + uid + " is not an execgate admin"})
			return
		}
		h(w, r, caller{Peer: p})
	}
}

// asAgent serves a route to callers with a profile, for that profile only;
// a uid without one is refused (403) and journaled.
func (s *Server) asAgent(h func(http.ResponseWriter, *http.Request, caller)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, ok := peerFrom(r.Context())
		if !ok {
			writeError(w, http.StatusForbidden, api.Error{Error: "the caller's credentials could not be read"})
			return
		}
		prof := s.reg.Load().byUID[p.UID]
		if prof == nil {
			msg := fmt.Sprintf("uid %d has no execgate profile", p.UID)
			s.note(audit.New(audit.EventError, audit.PriWarning, msg+" (refused "+r.URL.Path+")").
				SetInt(audit.FieldUID, int64(p.UID)).SetInt(audit.FieldPeerPID, int64(p.PID)).
				Set(audit.FieldDecision, "deny").Set(audit.FieldReason, msg))
			writeError(w, http.StatusForbidden, api.Error{Error: msg, Decision: "deny"})
			return
		}
		h(w, r, caller{Peer: p, prof: prof})
	}
}
