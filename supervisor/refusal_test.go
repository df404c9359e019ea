package supervisor

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/execgate/execgate/api"
	"github.com/execgate/execgate/audit"
	"github.com/execgate/execgate/policy"
	"github.com/execgate/execgate/profiles"
)

// Each kind of refusal says, in one place, its record, its HTTP answer and
// its events in the stream.
func TestRefusalAnswers(t *testing.T) {
	ri := &reqInfo{id: "r1", prof: &profiles.Profile{Name: "bot"}, cwd: "/w"}
	rule := profiles.Loc{File: "/etc/execgate/agents/bot.toml", Line: 7}
	verdict := &policy.Verdict{Decision: profiles.Ask, Rule: rule, Reason: "needs a human"}
	for _, tc := range []struct {
		name   string
		f      *refusal
		status int
		code   int
		event  audit.Event // of the record; "" for none
		api    api.Error
		denied bool   // a denied event in the stream
		last   string // the stream's last event: the exit of a denial, else the failure
	}{
		{"switch", denial(http.StatusForbidden, "agent bot was killed", rule), 403, 126, audit.EventDecision,
			api.Error{Error: "deny: agent bot was killed", ID: "r1", Decision: "deny", Rule: "bot.toml:7", Reason: "agent bot was killed"}, true, api.EventExit},
		{"cap", denial(http.StatusTooManyRequests, "requests cap reached", rule), 429, 126, audit.EventDecision,
			api.Error{Error: "deny: requests cap reached", ID: "r1", Decision: "deny", Rule: "bot.toml:7", Reason: "requests cap reached"}, true, api.EventExit},
		{"human", humanDenial(verdict, verdictOfHuman{state: abandoned, reason: "the client went away"}), 403, 126, "",
			api.Error{Error: "deny: rejected: the client went away", ID: "r1", Decision: "deny", Rule: "bot.toml:7", Reason: "rejected: the client went away"}, true, api.EventExit},
		{"bad request", badRequestRefusal(badRequest(http.StatusBadRequest, "cwd %s does not exist", "/x")), 400, 125, audit.EventError,
			api.Error{Error: "cwd /x does not exist", ID: "r1"}, false, api.EventError},
		{"bad request, not a requestError", badRequestRefusal(errors.New("odd")), 400, 125, audit.EventError,
			api.Error{Error: "odd", ID: "r1"}, false, api.EventError},
		{"audit", auditRefusal(errors.New("journald is gone")), 503, 125, "",
			api.Error{Error: "the audit log cannot be written, so nothing runs: journald is gone", ID: "r1"}, false, api.EventError},
		{"run failure", runFailure(errors.New("clone: EPERM")), 500, 125, audit.EventError,
			api.Error{Error: "execgate could not run the script: clone: EPERM", ID: "r1"}, false, api.EventError},
		{"not a refusal", asRefusal(errors.New("surprise")), 500, 125, audit.EventError,
			api.Error{Error: "surprise", ID: "r1"}, false, api.EventError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.f
			if f.status != tc.status || f.code != tc.code {
				t.Errorf("status %d, code %d; want %d, %d", f.status, f.code, tc.status, tc.code)
			}
			if got := f.apiError("r1"); got != tc.api {
				t.Errorf("answer %+v\nwant   %+v", got, tc.api)
			}
			rec := f.record(ri)
			switch {
			case tc.event == "" && rec != nil:
				t.Errorf("record %q, want none (already journaled)", rec.Message)
			case tc.event != "" && (rec == nil || rec.Event() != tc.event):
				t.Errorf("record %v, want a %s record", rec, tc.event)
			case tc.event == audit.EventDecision && (rec.Fields[audit.FieldDecision] != "deny" || rec.Fields[audit.FieldRule] != "bot.toml:7"):
				t.Errorf("decision record %v", rec.Fields)
			}
			if ev, ok := f.deniedEvent("r1"); ok != tc.denied || ok && (ev.Reason != tc.api.Reason || ev.Rule != tc.api.Rule) {
				t.Errorf("denied event %v %+v", ok, ev)
			}
			last := f.lastEvent("r1")
			if last.Event != tc.last || last.Event == api.EventExit && (last.Code == nil || *last.Code != tc.code) {
				t.Errorf("last event %+v", last)
			}
			if errors.As(error(f), new(*refusal)) != true {
				t.Error("a refusal is not an error")
			}
		})
	}
}

// The approval states keep the journal's words, and only a state an admin
// decided names a reviewer.
func TestApprovalState(t *testing.T) {
	for _, tc := range []struct {
		name     string
		st       approvalState
		word     string
		reviewed bool
	}{
		{"approved", approved, "approved", true},
		{"rejected", rejected, "rejected", true},
		{"expired", expired, "expired", false},
		{"abandoned", abandoned, "rejected", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.st.String() != tc.word || tc.st.reviewed() != tc.reviewed {
				t.Errorf("%d: %q reviewed %v", int(tc.st), tc.st.String(), tc.st.reviewed())
			}
			a := &approval{Approval: api.Approval{Rule: "bot.toml:7"}, asks: []asked{{argv: []string{"git", "push"}}}}
			rec := approvalRecord(&reqInfo{id: "r1", prof: &profiles.Profile{Name: "bot"}}, a, verdictOfHuman{state: tc.st, reviewer: 1000, reason: "x"})
			_, named := rec.Fields[audit.FieldReviewerUID]
			if rec.Fields[audit.FieldDecision] != tc.word || named != tc.reviewed {
				t.Errorf("record %q %v", rec.Message, rec.Fields)
			}
		})
	}
}

// failingSink fails every write once down is set.
type failingSink struct {
	memSink
	down bool
}

func (f *failingSink) Write(r *audit.Record) error {
	if f.down {
		return errors.New("journald is gone")
	}
	return f.memSink.Write(r)
}

// A request whose request record cannot be written is refused (503) before
// anything is decided, and the daemon says so through the logf it was
// given.
func TestRequestRecordGates(t *testing.T) {
	dir := t.TempDir()
	agents, work := filepath.Join(dir, "agents"), filepath.Join(dir, "work")
	os.MkdirAll(agents, 0o755)
	os.MkdirAll(work, 0o755)
	os.WriteFile(filepath.Join(agents, "bot.toml"), []byte("uid = 4242\nworkdirs = [\""+work+"\"]\nsecurity = \"full\"\n"), 0o644)
	cfg := profiles.DefaultConfig()
	cfg.AgentsDir, cfg.StateDir = agents, filepath.Join(dir, "state")
	os.MkdirAll(cfg.StateDir, 0o700)
	sink := &failingSink{}
	var logged []string
	s, err := NewServer(cfg, refuseRunner{t}, sink, WithLogf(func(format string, args ...any) {
		logged = append(logged, fmt.Sprintf(format, args...))
	}))
	if err != nil {
		t.Fatal(err)
	}
	sink.down = true
	code, e := execAs(s, 4242, "echo hi")
	if code != http.StatusServiceUnavailable || !strings.Contains(e.Error, "audit log cannot be written") || e.ID == "" {
		t.Errorf("exec with the trail down: %d %+v", code, e)
	}
	if len(logged) != 2 || !strings.Contains(logged[0], "cannot write request record") || !strings.Contains(logged[1], "refusing run "+e.ID) {
		t.Errorf("logged: %q", logged)
	}
}
