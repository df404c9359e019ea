package supervisor

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/execgate/execgate/api"
	"github.com/execgate/execgate/audit"
)

// adminNote journals an admin action, done or failed, with the admin's
// uid. The action is not undone when the note cannot be written.
func (s *Server) adminNote(p Peer, agent, action, result string) {
	s.note(audit.New(audit.EventAdmin, audit.PriWarning, fmt.Sprintf("uid %d %s: %s", p.UID, action, result)).
		SetInt(audit.FieldUID, int64(p.UID)).SetInt(audit.FieldPeerPID, int64(p.PID)).SetInt(audit.FieldReviewerUID, int64(p.UID)).
		Set(audit.FieldAdminAction, action).Set(audit.FieldAgent, agent).Set(audit.FieldReason, result))
}

func (s *Server) handleApprovals(w http.ResponseWriter, r *http.Request, _ caller) {
	writeJSON(w, http.StatusOK, s.pending.list())
}

func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

func (s *Server) handleDecide(w http.ResponseWriter, r *http.Request, p caller) {
	id := r.PathValue("id")
	var d api.ApprovalDecision
	if err := decodeBody(r, &d); err != nil || (d.Decision != "approve" && d.Decision != "reject") {
		writeError(w, http.StatusBadRequest, api.Error{Error: `want {"decision": "approve" | "reject", "remember": bool, "reason": "..."}`})
		return
	}
	a := s.pending.get(id)
	if a == nil {
		writeError(w, http.StatusNotFound, api.Error{Error: "no pending approval " + id + " (it may have been decided or expired)", ID: id})
		return
	}
	v := verdictOfHuman{state: rejected, remember: d.Remember, reviewer: p.UID, reason: d.Reason}
	if d.Decision == "approve" {
		v.state = approved
	}
	if v.reason == "" {
		v.reason = fmt.Sprintf("%s by uid %d", v.state, p.UID)
	}
	if !a.decide(v) {
		writeError(w, http.StatusConflict, api.Error{Error: "approval " + id + " was already decided", ID: id})
		return
	}
	s.adminNote(p.Peer, a.Agent, "approval "+id+" "+d.Decision, v.reason)
	writeJSON(w, http.StatusOK, api.AdminResult{Message: fmt.Sprintf("%s %s (%s)", v.state, id, strings.Join(argvLines(a.Invocations), "; "))})
}

func argvLines(inv [][]string) []string {
	var out []string
	for _, a := range inv {
		out = append(out, strings.Join(a, " "))
	}
	return out
}

func (s *Server) handleAgentAction(w http.ResponseWriter, r *http.Request, p caller) {
	name, action := r.PathValue("name"), r.PathValue("action")
	switch {
	case s.reg.Load().byName[name] == nil && s.switches.get().Agents[name] == (Switch{}):
		writeError(w, http.StatusNotFound, api.Error{Error: "no agent " + name})
		return
	case action != "kill" && action != "revive" && action != "freeze" && action != "thaw":
		writeError(w, http.StatusNotFound, api.Error{Error: "no such action " + action + " (kill, freeze, thaw, revive)"})
		return
	case action == "thaw" && s.switches.get().Agents[name].Killed:
		writeError(w, http.StatusConflict, api.Error{Error: name + " is killed, not frozen: use revive"})
		return
	}
	msg, runs, err := s.throwSwitch(name, action, p.UID)
	if err != nil {
		s.adminNote(p.Peer, name, action, "failed: "+err.Error())
		writeError(w, http.StatusInternalServerError, api.Error{Error: action + " " + name + ": " + err.Error()})
		return
	}
	s.adminNote(p.Peer, name, action, msg)
	writeJSON(w, http.StatusOK, api.AdminResult{Message: msg, Runs: runs})
}

// throwSwitch kills, freezes, thaws or revives an agent for the admin by:
// the switch is saved first, then its runs and pending approvals follow.
func (s *Server) throwSwitch(name, action string, by uint32) (msg string, runs int, err error) {
	now := s.now()
	switch action {
	case "kill":
		err = s.switches.update(func(st *switchState) { st.Agents[name] = Switch{Killed: true, By: by, Since: now} })
		if err == nil {
			runs = s.runner.KillAgent(name)
			s.rejectPending(name, fmt.Sprintf("agent killed by uid %d", by), by)
			msg = fmt.Sprintf("killed %s: %d run(s) stopped; new requests are refused until revive", name, runs)
		}
	case "revive":
		wasFrozen := s.switches.get().Agents[name].Frozen
		err = s.switches.update(func(st *switchState) { delete(st.Agents, name) })
		msg = fmt.Sprintf("revived %s", name)
		if err == nil && wasFrozen {
			// Revive lifts any switch: a frozen agent's paused runs go on.
			runs, err = s.runner.FreezeAgent(name, false)
			msg = fmt.Sprintf("revived %s: %d frozen run(s) resumed", name, runs)
		}
	case "freeze":
		err = s.switches.update(func(st *switchState) { st.Agents[name] = Switch{Frozen: true, By: by, Since: now} })
		if err == nil {
			runs, err = s.runner.FreezeAgent(name, true)
			s.rejectPending(name, fmt.Sprintf("agent frozen by uid %d", by), by)
			msg = fmt.Sprintf("froze %s: %d run(s) paused; new requests are refused until thaw", name, runs)
		}
	case "thaw":
		err = s.switches.update(func(st *switchState) { delete(st.Agents, name) })
		if err == nil {
			runs, err = s.runner.FreezeAgent(name, false)
			msg = fmt.Sprintf("thawed %s: %d run(s) resumed", name, runs)
		}
	}
	return msg, runs, err
}

// rejectPending rejects every approval an agent ("": every agent) is
// waiting for.
func (s *Server) rejectPending(agent, reason string, by uint32) {
	for _, a := range s.pending.list() {
		if agent == "" || a.Agent == agent {
			if pa := s.pending.get(a.ID); pa != nil {
				pa.decide(verdictOfHuman{state: rejected, reason: reason, reviewer: by})
			}
		}
	}
}

func (s *Server) handleLockdown(w http.ResponseWriter, r *http.Request, p caller) {
	var req api.LockdownRequest
	if err := decodeBody(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, api.Error{Error: `want {"on": true|false}`})
		return
	}
	now := s.now()
	if err := s.switches.update(func(st *switchState) {
		st.Lockdown, st.LockdownBy, st.LockdownAt = req.On, p.UID, now
	}); err != nil {
		writeError(w, http.StatusInternalServerError, api.Error{Error: err.Error()})
		return
	}
	msg := "lockdown off: requests are served again"
	if req.On {
		s.rejectPending("", fmt.Sprintf("lockdown by uid %d", p.UID), p.UID)
		msg = "lockdown on: every new request from every agent is refused"
	}
	s.adminNote(p.Peer, "", "lockdown", msg)
	writeJSON(w, http.StatusOK, api.AdminResult{Message: msg})
}

func (s *Server) handleReload(w http.ResponseWriter, r *http.Request, p caller) {
	if err := s.ReloadAndReport(fmt.Sprintf("admin uid %d", p.UID)); err != nil {
		writeError(w, http.StatusInternalServerError, api.Error{Error: "reload: " + err.Error()})
		return
	}
	reg := s.reg.Load()
	msg := fmt.Sprintf("reloaded: %d agents, %d profile errors", len(reg.byName), len(reg.errs))
	s.adminNote(p.Peer, "", "reload", msg)
	writeJSON(w, http.StatusOK, api.AdminResult{Message: msg})
}
