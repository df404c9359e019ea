package supervisor

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/execgate/execgate/api"
	"github.com/execgate/execgate/audit"
	"github.com/execgate/execgate/profiles"
)

// asked is one invocation that needs a human: its argv as the agent wrote
// it and the program file it resolved to (a remembered rule names the
// file, not the name).
type asked struct {
	argv    []string
	program string
	what    string // "connect" or "changes": not a command
}

// approval is a request (or a nested exec) held until an admin decides.
type approval struct {
	api.Approval
	asks     []asked
	decision chan verdictOfHuman // buffered 1; the first decision wins
	once     sync.Once
}

// approvalState is how an approval ended.
type approvalState int

const (
	approved  approvalState = iota + 1 // an admin approved it
	rejected                           // an admin rejected it, or threw a switch (kill, freeze, lockdown)
	expired                            // no one decided within approval_timeout
	abandoned                          // no one decided: the client left, or the run it belongs to ended
)

// String is the state as the journal's EXECGATE_DECISION says it. An
// abandoned approval is journaled as rejected.
func (st approvalState) String() string {
	switch st {
	case approved:
		return "approved"
	case rejected, abandoned:
		return "rejected"
	case expired:
		return "expired"
	}
	return fmt.Sprintf("approvalState(%d)", int(st))
}

// reviewed reports whether an admin decided, so that the record names
// the reviewer's uid.
func (st approvalState) reviewed() bool { return st == approved || st == rejected }

type verdictOfHuman struct {
	state    approvalState
	remember bool
	reviewer uint32 // the admin's uid, when state.reviewed()
	reason   string
}

// pending holds the approvals waiting; each is single-use.
type pending struct {
	mu sync.Mutex
	m  map[string]*approval
}

func (p *pending) add(a *approval) {
	p.mu.Lock()
	if p.m == nil {
		p.m = map[string]*approval{}
	}
	p.m[a.ID] = a
	p.mu.Unlock()
}

func (p *pending) remove(id string) {
	p.mu.Lock()
	delete(p.m, id)
	p.mu.Unlock()
}

func (p *pending) get(id string) *approval {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.m[id]
}

func (p *pending) list() []api.Approval {
	p.mu.Lock()
	out := make([]api.Approval, 0, len(p.m))
	for _, a := range p.m {
		out = append(out, a.Approval)
	}
	p.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out
}

// decide settles an approval once; later calls report false.
func (a *approval) decide(v verdictOfHuman) bool {
	ok := false
	a.once.Do(func() {
		a.decision <- v
		ok = true
	})
	return ok
}

func envHash(env map[string]string) string {
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	h := sha256.New()
	for _, k := range keys {
		fmt.Fprintf(h, "%s=%s\x00", k, env[k])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// askHuman holds a request until an admin approves or rejects it, the
// approval times out (denied), or ctx ends (the client left). The approval
// is bound to this very request: its exact argv lists, cwd, environment
// and agent; it cannot be used by any other. It counts only once its
// record is written: the error says it could not be, and the verdict's
// reason then says why it does not count.
func (s *Server) askHuman(ctx context.Context, ri *reqInfo, req api.ExecRequest, asks []asked, rule profiles.Loc, reason string, nested bool, onPending func(api.Approval)) (verdictOfHuman, error) {
	a := s.newApproval(ri, req, asks, rule, reason, nested)
	s.pending.add(a)
	defer s.pending.remove(a.ID)
	if onPending != nil {
		onPending(a.Approval)
	}
	s.notifyApprovers(a.Approval)
	v := s.waitHuman(ctx, a)
	if err := s.record(approvalRecord(ri, a, v)); err != nil {
		// No record of the approval: it does not count.
		v.reason = "the approval could not be recorded: " + err.Error()
		return v, err
	}
	if v.state == approved && v.remember {
		s.remember(ri, asks, v.reviewer)
	}
	return v, nil
}

func (s *Server) newApproval(ri *reqInfo, req api.ExecRequest, asks []asked, rule profiles.Loc, reason string, nested bool) *approval {
	now := s.now()
	a := &approval{asks: asks, decision: make(chan verdictOfHuman, 1)}
	a.Approval = api.Approval{ID: ri.id, Agent: ri.prof.Name, UID: ri.peer.UID, Script: req.Script, Cwd: ri.cwd,
		EnvSHA256: envHash(req.Env), Nested: nested, Rule: rule.String(), Reason: reason, Created: now, Expires: now.Add(s.cfg.ApprovalTimeout)}
	if nested {
		a.ID = ri.id + "-" + newID()[:6] // one run may ask more than once
	}
	for _, x := range asks {
		a.Invocations = append(a.Invocations, x.argv)
	}
	return a
}

// waitHuman returns the first decision on a: an admin's, the timeout's
// (expired) or the end of ctx's (abandoned).
func (s *Server) waitHuman(ctx context.Context, a *approval) verdictOfHuman {
	timer := time.NewTimer(s.cfg.ApprovalTimeout)
	defer timer.Stop()
	select {
	case v := <-a.decision:
		return v
	case <-timer.C:
		// Unless an admin decided at the last moment, it expires.
		a.decide(verdictOfHuman{state: expired, reason: fmt.Sprintf("no admin decided within approval_timeout (%s)", s.cfg.ApprovalTimeout)})
	case <-ctx.Done():
		// The client left, or the run this exec belongs to ended (timed
		// out, killed): the request is dropped from the pending list.
		why := "the client went away"
		if c := context.Cause(ctx); c != nil && !errors.Is(c, context.Canceled) {
			why = c.Error()
		}
		a.decide(verdictOfHuman{state: abandoned, reason: why})
	}
	return <-a.decision
}

func approvalRecord(ri *reqInfo, a *approval, v verdictOfHuman) *audit.Record {
	pri := audit.PriInfo
	if v.state != approved {
		pri = audit.PriWarning
	}
	argv, _ := json.Marshal(a.Invocations)
	rec := ri.record(audit.EventApproval, pri, fmt.Sprintf("%s %s", strings.ToUpper(v.state.String()), joinAsks(a.asks))).
		Set(audit.FieldDecision, v.state.String()).Set(audit.FieldArgv, string(argv)).Set(audit.FieldRule, a.Rule).
		Set(audit.FieldReason, v.reason)
	if v.state.reviewed() {
		rec.SetInt(audit.FieldReviewerUID, int64(v.reviewer))
	}
	return rec
}

func joinAsks(asks []asked) string {
	var parts []string
	for _, a := range asks {
		parts = append(parts, strings.Join(a.argv, " "))
	}
	return strings.Join(parts, "; ")
}

// remember appends a precise allow rule per asked invocation to the
// agent's remembered approvals and reloads, so the next identical request
// runs without asking.
func (s *Server) remember(ri *reqInfo, asks []asked, reviewer uint32) {
	path := filepath.Join(s.cfg.StateDir, "approved", ri.prof.Name+".toml")
	for _, a := range asks {
		if a.what != "" {
			// A [[connect]] rule or a cap is the admin's to write: a
			// remembered exec rule cannot express it.
			s.note(ri.record(audit.EventError, audit.PriWarning, a.what+" approvals are not remembered: change the profile").
				Set(audit.FieldReason, "--remember applies to commands only"))
			continue
		}
		match := profiles.ExactPattern(a.program, a.argv)
		reason := fmt.Sprintf("approved by uid %d on %s for run %s", reviewer, s.now().UTC().Format(time.RFC3339), ri.id)
		if err := profiles.AppendApproved(path, match, ri.cwd, reason); err != nil {
			s.logf("remember approval of run %s: %v", ri.id, err)
			s.note(ri.record(audit.EventError, audit.PriErr, "cannot remember approval: "+err.Error()).Set(audit.FieldReason, err.Error()))
			return
		}
	}
	if err := s.ReloadAndReport("remembered approval of run " + ri.id); err != nil {
		s.logf("reload after remembering run %s: %v", ri.id, err)
	}
}

// notifyApprovers runs approval_command with the pending request as JSON
// on stdin. It only tells; its failure never approves anything.
func (s *Server) notifyApprovers(a api.Approval) {
	if len(s.cfg.ApprovalCommand) == 0 {
		return
	}
	b, _ := json.Marshal(a)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, s.cfg.ApprovalCommand[0], s.cfg.ApprovalCommand[1:]...)
		cmd.Stdin = bytes.NewReader(b)
		cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
		if out, err := cmd.CombinedOutput(); err != nil {
			msg := fmt.Sprintf("approval_command for %s failed: %v: %.200s", a.ID, err, out)
			s.logf("%s", msg)
			s.note(audit.New(audit.EventError, audit.PriErr, msg).Set(audit.FieldID, a.ID).Set(audit.FieldReason, msg))
		}
	}()
}
