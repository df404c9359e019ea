package supervisor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"

	"github.com/execgate/execgate/api"
	"github.com/execgate/execgate/audit"
	"github.com/execgate/execgate/profiles"
	"github.com/execgate/execgate/supervisor/changes"
	"github.com/execgate/execgate/supervisor/sandbox"
)

// maxChangePaths is how many paths a changes record names.
const maxChangePaths = 100

// Change-set decisions, as EXECGATE_DECISION says them.
const (
	changesApplied  = "applied"
	changesHeld     = "held"
	changesApproved = "approved"
	changesRejected = "rejected"
	changesExpired  = "expired"
	changesConflict = "conflict"
	changesDryRun   = "dry-run"
)

// heldSets are the change sets waiting for a human, for `execgate changes`.
type heldSets struct {
	mu sync.Mutex
	m  map[string]*heldSet
}

type heldSet struct {
	agent      string
	set        *changes.Set
	violations []changes.Violation
}

func (h *heldSets) put(id string, hs *heldSet) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.m == nil {
		h.m = map[string]*heldSet{}
	}
	h.m[id] = hs
}

func (h *heldSets) drop(id string) {
	h.mu.Lock()
	delete(h.m, id)
	h.mu.Unlock()
}

func (h *heldSets) get(id string) *heldSet {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.m[id]
}

// prepareChanges gives a review or dry-run run its copy-on-write layers;
// nil in direct mode.
func (q *request) prepareChanges(spec *sandbox.Spec) (*changes.Run, error) {
	prof := q.ri.prof
	if prof.Changes.Mode != profiles.ChangesReview && prof.Changes.Mode != profiles.ChangesDryRun {
		return nil, nil
	}
	var dirs []string
	for _, wd := range prof.Workdirs {
		if real, err := filepath.EvalSymlinks(wd); err == nil {
			dirs = append(dirs, real)
		}
	}
	cr, err := changes.Prepare(q.s.cfg.StateDir, q.ri.id, dirs)
	if err != nil {
		return nil, err // says "changes: ..."
	}
	for _, l := range cr.Layers {
		spec.Overlays = append(spec.Overlays, sandbox.Overlay{Lower: l.Lower, Upper: l.Upper, Work: l.Work, Dev: l.LowerDev, Ino: l.LowerIno})
	}
	return cr, nil
}

// settleChanges decides what the finished run wrote: dry-run reports and
// discards it; review applies it when it is within every cap and outside
// protect, and otherwise holds it for a human. A set that is not applied
// ends the request as a denial (exit 126).
func (q *request) settleChanges(ctx context.Context, cr *changes.Run) error {
	prof := q.ri.prof
	set, err := cr.Compute()
	if err != nil {
		q.discard(cr)
		return runFailure(fmt.Errorf("changes: %w", err))
	}
	if len(set.Changes) == 0 {
		// Nothing written: nothing to apply, hold or report.
		q.discard(cr)
		return nil
	}
	if prof.Changes.Mode == profiles.ChangesDryRun {
		q.out.tell(api.Event{Event: api.EventChanges, ID: q.ri.id, Reason: "dry run, not applied: " + set.Summary()})
		q.discard(cr)
		return q.s.record(changesRecord(q.ri, set, changesDryRun, nil, ""))
	}
	v := set.Check(changes.Caps{MaxFiles: prof.Changes.MaxFiles, MaxDeleted: prof.Changes.MaxDeleted,
		MaxBytes: prof.Changes.MaxBytes, Protect: prof.Changes.Protected})
	if c := &prof.Changes; c.HasMaxDeleted && c.MaxDeleted == 0 && set.Totals.Deleted > 0 {
		// max_deleted = 0: no deletion without a human.
		v = append(v, changes.Violation{Cap: changes.CapMaxDeleted, Message: fmt.Sprintf("%d deleted, over max_deleted = 0", set.Totals.Deleted)})
	}
	if len(v) == 0 {
		return q.applyChanges(cr, set, changesApplied, nil)
	}
	return q.holdChanges(ctx, cr, set, v)
}

// holdChanges puts a set over its caps before a human, as an ask.
func (q *request) holdChanges(ctx context.Context, cr *changes.Run, set *changes.Set, v []changes.Violation) error {
	rule, why := q.violationLoc(v[0]), violationText(v)
	summary := set.Summary()
	if err := q.s.record(changesRecord(q.ri, set, changesHeld, v, rule.String())); err != nil {
		q.discard(cr)
		return auditRefusal(err)
	}
	q.s.held.put(q.ri.id, &heldSet{agent: q.ri.prof.Name, set: set, violations: v})
	defer q.s.held.drop(q.ri.id)
	held := fmt.Sprintf("changes held for review: %s (%s at %s)", summary, why, rule)
	q.out.tell(api.Event{Event: api.EventPending, ID: q.ri.id, Invocation: "changes", Rule: rule.String(), Reason: held})
	asks := []asked{{argv: []string{"changes", summary}, what: "changes"}}
	h, err := q.s.askHuman(ctx, q.ri, q.body, asks, rule, held, false, nil)
	if err != nil || h.state != approved {
		q.discard(cr)
		decision := changesRejected
		if h.state == expired {
			decision = changesExpired
		}
		q.s.note(changesRecord(q.ri, set, decision, v, rule.String()))
		why := h.state.String() + ", not applied: " + summary
		if h.reason != "" {
			why += ": " + h.reason
		}
		f := denial(http.StatusForbidden, why, rule)
		f.invocation = "changes"
		return f
	}
	return q.applyChanges(cr, set, changesApproved, v)
}

// applyChanges applies set all or nothing; a conflict applies nothing.
func (q *request) applyChanges(cr *changes.Run, set *changes.Set, decision string, v []changes.Violation) error {
	err := cr.Apply(set)
	var ce *changes.ConflictError
	switch {
	case errors.As(err, &ce):
		q.discard(cr)
		why := fmt.Sprintf("nothing applied: %d of the paths it changed changed in the real tree since the run started: %s",
			len(ce.Paths), strings.Join(firstN(ce.Paths, 5), ", "))
		q.s.note(changesRecord(q.ri, set, changesConflict, v, "").Set(audit.FieldReason, why))
		f := denial(http.StatusConflict, why, q.ri.prof.LocOf(profiles.KeyChangesMode))
		f.invocation = "changes"
		return f
	case err != nil && !errors.Is(err, changes.ErrNotCleaned):
		q.discard(cr)
		return runFailure(fmt.Errorf("changes: %w", err))
	}
	if err != nil {
		q.s.logf("changes of run %s: applied, but %v (removed at the next start)", q.ri.id, err)
	}
	return q.s.record(changesRecord(q.ri, set, decision, v, ""))
}

func (q *request) discard(cr *changes.Run) {
	if err := cr.Discard(); err != nil {
		q.s.logf("changes of run %s: discard: %v", q.ri.id, err)
		q.s.note(q.ri.record(audit.EventError, audit.PriErr, "cannot discard changes: "+err.Error()).Set(audit.FieldReason, err.Error()))
	}
}

// violationLoc is the profile line of the cap v is over.
func (q *request) violationLoc(v changes.Violation) profiles.Loc {
	key := map[string]string{changes.CapMaxFiles: profiles.KeyChangesMaxFiles, changes.CapMaxDeleted: profiles.KeyChangesMaxDeleted,
		changes.CapMaxBytes: profiles.KeyChangesMaxBytes, changes.CapProtect: profiles.KeyChangesProtect}[v.Cap]
	return q.ri.prof.LocOf(key)
}

func firstN(s []string, n int) []string {
	if len(s) > n {
		return append(s[:n:n], fmt.Sprintf("... (%d in all)", len(s)))
	}
	return s
}

func violationText(v []changes.Violation) string {
	msgs := make([]string, len(v))
	for i, x := range v {
		msgs[i] = x.Message
	}
	return strings.Join(msgs, "; ")
}

// changesRecord is the journal record of a change set's decision.
func changesRecord(ri *reqInfo, set *changes.Set, decision string, v []changes.Violation, rule string) *audit.Record {
	t := set.Totals
	pri := audit.PriInfo
	if decision != changesApplied && decision != changesApproved && decision != changesDryRun {
		pri = audit.PriWarning
	}
	var paths []string
	for _, c := range set.Changes {
		if len(paths) == maxChangePaths {
			break
		}
		if !c.Implied {
			paths = append(paths, c.Abs)
		}
	}
	pj, _ := json.Marshal(paths)
	msg := fmt.Sprintf("CHANGES %s %s", strings.ToUpper(decision), set.Summary())
	if len(v) > 0 {
		msg += " (" + violationText(v) + ")"
	}
	argv, _ := json.Marshal([]string{"changes", set.Summary()})
	return ri.record(audit.EventChanges, pri, msg).Set(audit.FieldDecision, decision).Set(audit.FieldArgv, string(argv)).
		SetInt(audit.FieldFilesCreated, int64(t.Created)).SetInt(audit.FieldFilesModified, int64(t.Modified)).
		SetInt(audit.FieldFilesDeleted, int64(t.Deleted)).SetInt(audit.FieldChangeBytes, t.Bytes).
		Set(audit.FieldPaths, string(pj)).Set(audit.FieldRule, rule).Set(audit.FieldReason, violationText(v))
}

// RecoverChanges finishes or rolls back what a daemon that died left of
// change sets (an apply cut short), and removes the rest (sets held or
// running when it died); each is journaled. Call it before serving.
func (s *Server) RecoverChanges() {
	done, err := changes.Recover(s.cfg.StateDir)
	for _, r := range done {
		rec := audit.New(audit.EventChanges, audit.PriWarning, fmt.Sprintf("CHANGES of run %s left by a previous daemon: %s (%d operations)", r.RunID, r.Action, r.Ops)).
			Set(audit.FieldID, r.RunID).Set(audit.FieldDecision, recoveredDecision(r.Action))
		if r.Err != nil {
			rec.Set(audit.FieldReason, r.Err.Error())
		}
		s.note(rec)
	}
	if err != nil {
		s.logf("changes: recover: %v", err)
		s.note(audit.New(audit.EventError, audit.PriErr, "changes: recover: "+err.Error()).Set(audit.FieldReason, err.Error()))
	}
}

func recoveredDecision(action string) string {
	switch action {
	case "finished":
		return changesApplied
	case "rolled back":
		return "rolled-back"
	}
	return "discarded"
}

// handleChanges is GET /v1/changes/{id}: a held change set, with unified
// diffs when ?diff=1.
func (s *Server) handleChanges(w http.ResponseWriter, r *http.Request, _ caller) {
	id := r.PathValue("id")
	hs := s.held.get(id)
	if hs == nil {
		writeError(w, http.StatusNotFound, api.Error{Error: "no change set held for " + id + " (it may have been decided or expired)", ID: id})
		return
	}
	out := api.ChangeSet{ID: id, Agent: hs.agent, Summary: hs.set.Summary()}
	for _, v := range hs.violations {
		out.Violations = append(out.Violations, v.Message)
	}
	out.Set, _ = json.Marshal(hs.set)
	if r.URL.Query().Get("diff") != "" {
		var b bytes.Buffer
		if err := hs.set.Diff(&b); err != nil {
			fmt.Fprintf(&b, "\n(diff failed: %v)\n", err)
		}
		out.Diff = b.String()
	}
	writeJSON(w, http.StatusOK, out)
}
