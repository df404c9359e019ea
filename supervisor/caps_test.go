package supervisor

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/execgate/execgate/api"
	"github.com/execgate/execgate/audit"
	"github.com/execgate/execgate/profiles"
	"github.com/execgate/execgate/supervisor/sandbox"
)

// refuseRunner fails the test if anything is run: these tests check
// refusals that must happen before the sandbox.
type refuseRunner struct{ t *testing.T }

func (r refuseRunner) Run(context.Context, sandbox.Spec) (sandbox.Result, error) {
	r.t.Error("a refused request reached the sandbox")
	return sandbox.Result{}, nil
}
func (refuseRunner) Kill(string) bool                      { return false }
func (refuseRunner) KillAgent(string) int                  { return 0 }
func (refuseRunner) FreezeAgent(string, bool) (int, error) { return 0, nil }

type memSink struct{ recs []*audit.Record }

func (m *memSink) Write(r *audit.Record) error { m.recs = append(m.recs, r); return nil }
func (m *memSink) Close() error                { return nil }

// newTestServer serves one agent, uid 4242, with profile body, on a clock
// the test sets.
func newTestServer(t *testing.T, body string, now *time.Time) (*Server, *memSink, string) {
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	agents, work := filepath.Join(dir, "agents"), filepath.Join(dir, "work")
	os.MkdirAll(agents, 0o755)
	os.MkdirAll(work, 0o755)
	os.WriteFile(filepath.Join(agents, "bot.toml"), []byte("uid = 4242\nworkdirs = [\""+work+"\"]\n"+body), 0o644)
	cfg := profiles.DefaultConfig()
	cfg.AgentsDir, cfg.StateDir = agents, filepath.Join(dir, "state")
	os.MkdirAll(cfg.StateDir, 0o700)
	sink := &memSink{}
	s, err := NewServer(cfg, refuseRunner{t}, sink, WithClock(func() time.Time { return *now }))
	if err != nil {
		t.Fatal(err)
	}
	return s, sink, work
}

func execAs(s *Server, uid uint32, script string) (int, api.Error) {
	r := httptest.NewRequest(http.MethodPost, "/v1/exec", strings.NewReader(`{"script":`+strconvQuote(script)+`}`))
	r = r.WithContext(context.WithValue(r.Context(), peerKey{}, Peer{UID: uid, PID: 1}))
	w := httptest.NewRecorder()
	s.AgentHandler().ServeHTTP(w, r)
	var e api.Error
	json.Unmarshal(w.Body.Bytes(), &e)
	return w.Code, e
}

func strconvQuote(s string) string { b, _ := json.Marshal(s); return string(b) }

func TestScheduleWindow(t *testing.T) {
	jnb, _ := time.LoadLocation("Africa/Johannesburg")
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, jnb) // a Saturday
	s, sink, _ := newTestServer(t, `security = "full"
[schedule]
windows = ["Mon-Fri 07:00-19:00"]
timezone = "Africa/Johannesburg"
[[rule]]
match = "git push **"
action = "deny"
`, &now)
	// Outside the window the schedule refuses, whatever the script.
	if code, e := execAs(s, 4242, "git push"); code != http.StatusForbidden || !strings.Contains(e.Reason, "schedule") {
		t.Errorf("git push on Saturday: %d %+v", code, e)
	}
	code, e := execAs(s, 4242, "echo hi")
	if code != http.StatusForbidden || !strings.Contains(e.Reason, "outside the agent's schedule") || !strings.Contains(e.Reason, "Mon 2026-11-30 07:00") || e.Rule != "bot.toml:5" {
		t.Errorf("Saturday: %d %+v", code, e)
	}
	var denials int
	for _, r := range sink.recs {
		if r.Fields[audit.FieldDecision] == "deny" && strings.Contains(r.Fields[audit.FieldReason], "schedule") {
			denials++
		}
	}
	if denials != 2 {
		t.Errorf("%d journaled schedule denials, want 2", denials)
	}
}

func TestRequestCapsRoll(t *testing.T) {
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	s, _, _ := newTestServer(t, "security = \"full\"\n[limits]\nper_minute = 2\nper_day = 3\n", &now)
	// git push is denied statically: no sandbox is needed to count it.
	s.reg.Load().byName["bot"].Rules = append(s.reg.Load().byName["bot"].Rules, denyAll(t))
	for i := range 2 {
		if code, e := execAs(s, 4242, "x"); code != http.StatusForbidden || strings.Contains(e.Reason, "cap") {
			t.Fatalf("request %d: %d %+v", i, code, e)
		}
	}
	if code, e := execAs(s, 4242, "x"); code != http.StatusTooManyRequests || !strings.Contains(e.Reason, "limits.per_minute") {
		t.Errorf("third in a minute: %d %+v", code, e)
	}
	now = now.Add(61 * time.Second)
	if code, e := execAs(s, 4242, "x"); code == http.StatusTooManyRequests {
		t.Errorf("a minute later: %d %+v", code, e)
	}
	if code, e := execAs(s, 4242, "x"); code != http.StatusTooManyRequests || !strings.Contains(e.Reason, "limits.per_day") {
		t.Errorf("fourth in a day: %d %+v", code, e)
	}
}

func denyAll(t *testing.T) profiles.Rule {
	p, err := profiles.CompilePattern("**")
	if err != nil {
		t.Fatal(err)
	}
	return profiles.Rule{Match: "**", Action: profiles.Deny, Pattern: p, Reason: "test"}
}
