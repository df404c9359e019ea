package integration

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/execgate/execgate/api"
	"github.com/execgate/execgate/audit"
)

const askProfile = `uid = 65534
security = "full"
workdirs = ["WORK"]

[[rule]]
match = "touch approved-*"
action = "ask"
reason = "creating approved-* files needs a human"

[[rule]]
match = "git checkout **"
action = "deny"

[limits]
timeout = "60s"
`

const askConfig = `approval_timeout = "3s"`

// execgate runs the admin CLI as root against the daemon's admin socket.
func (d *daemon) execgate(args ...string) (string, int) {
	cmd := exec.Command(filepath.Join(binDir, "execgate"), args...)
	cmd.Env = []string{"EXECGATE_ADMIN_SOCKET=" + d.adminSock(), "PATH=/usr/bin:/bin"}
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	}
	return string(out), code
}

// pendingNow lists the approvals waiting, as root.
func (d *daemon) pendingNow(t testing.TB) []api.Approval {
	code, body := httpAs(t, 0, d.adminSock(), "GET", "/v1/approvals", nil)
	var list []api.Approval
	if code != 200 || json.Unmarshal(body, &list) != nil {
		t.Fatalf("approvals: %d %s", code, body)
	}
	return list
}

// waitPending waits for one approval to show up and returns it.
func (d *daemon) waitPending(t testing.TB) api.Approval {
	t.Helper()
	var list []api.Approval
	waitFor(t, 10*time.Second, "a pending approval", func() bool { list = d.pendingNow(t); return len(list) > 0 })
	return list[0]
}

func (d *daemon) exists(name string) bool {
	_, err := os.Stat(filepath.Join(d.work, name))
	return err == nil
}

func TestAskApproveRun(t *testing.T) {
	d := startDaemonConfig(t, "file", askConfig, profile{"bot", askProfile})
	done := make(chan result, 1)
	go func() { done <- d.egsh(agentUID, nil, "-c", "touch approved-1") }()
	a := d.waitPending(t)
	if a.Agent != "bot" || a.UID != agentUID || a.Cwd != d.work || len(a.Invocations) != 1 ||
		strings.Join(a.Invocations[0], " ") != "touch approved-1" || a.Rule != "bot.toml:6" || !strings.Contains(a.Reason, "needs a human") {
		t.Errorf("pending approval: %+v", a)
	}
	if d.exists("approved-1") {
		t.Fatal("ran before approval")
	}
	// What a reviewer sees.
	if out, code := d.execgate("approvals"); code != 0 || !strings.Contains(out, "touch approved-1") || !strings.Contains(out, a.ID) {
		t.Errorf("execgate approvals: %d %s", code, out)
	}
	// The agent cannot approve itself: not through its own socket, and not
	// through the admin socket.
	if code, body := httpAs(t, agentUID, d.agentSock(), "POST", "/v1/approvals/"+a.ID, []byte(`{"decision":"approve"}`)); code != 403 {
		t.Errorf("approve via the agent socket: %d %s", code, body)
	}
	os.Chmod(d.adminSock(), 0o666)
	if code, body := httpAs(t, agentUID, d.adminSock(), "POST", "/v1/approvals/"+a.ID, []byte(`{"decision":"approve"}`)); code != 403 {
		t.Errorf("approve via the admin socket as the agent: %d %s", code, body)
	}
	if d.exists("approved-1") {
		t.Fatal("an agent's own approval took effect")
	}
	out, code := d.execgate("approve", a.ID)
	if code != 0 || !strings.Contains(out, "approved") {
		t.Fatalf("approve: %d %s", code, out)
	}
	r := <-done
	if r.code != 0 || !d.exists("approved-1") || !strings.Contains(string(r.stderr), "waiting for approval") {
		t.Errorf("after approval: exit %d %q", r.code, r.stderr)
	}
	// Single use: a second approve of the same id fails.
	if out, code := d.execgate("approve", a.ID); code == 0 {
		t.Errorf("second approve succeeded: %s", out)
	}
	recs := d.records()
	ap := find(recs, audit.FieldEvent, "approval", audit.FieldID, a.ID)
	if len(ap) != 1 || ap[0].Fields[audit.FieldDecision] != "approved" || ap[0].Fields[audit.FieldReviewerUID] != "0" {
		t.Errorf("approval record: %v", ap)
	}
	if adm := find(recs, audit.FieldEvent, "admin", audit.FieldUID, "0"); len(adm) == 0 {
		t.Error("the admin's approval is not journaled with the admin's uid")
	}
}

func TestAskRejectAndExpire(t *testing.T) {
	d := startDaemonConfig(t, "file", askConfig, profile{"bot", askProfile})
	done := make(chan result, 1)
	go func() { done <- d.egsh(agentUID, nil, "-c", "touch approved-2") }()
	a := d.waitPending(t)
	if out, code := d.execgate("reject", a.ID, "--reason", "not today"); code != 0 {
		t.Fatalf("reject: %d %s", code, out)
	}
	r := <-done
	if r.code != 126 || !strings.Contains(string(r.stderr), "rejected: not today") || d.exists("approved-2") {
		t.Errorf("rejected: exit %d %q", r.code, r.stderr)
	}
	// Nobody decides: it expires after approval_timeout, as a denial.
	start := time.Now()
	r = d.egsh(agentUID, nil, "-c", "touch approved-3")
	if r.code != 126 || !strings.Contains(string(r.stderr), "expired") || d.exists("approved-3") || time.Since(start) < 2*time.Second {
		t.Errorf("expired: exit %d %q after %s", r.code, r.stderr, time.Since(start))
	}
	recs := d.records()
	if len(find(recs, audit.FieldEvent, "approval", audit.FieldDecision, "rejected")) != 1 || len(find(recs, audit.FieldEvent, "approval", audit.FieldDecision, "expired")) != 1 {
		t.Error("rejection and expiry must be journaled")
	}
}

// Two admins approving at once: exactly one wins.
func TestDoubleApprove(t *testing.T) {
	d := startDaemonConfig(t, "file", askConfig, profile{"bot", askProfile})
	go d.egsh(agentUID, nil, "-c", "touch approved-4")
	a := d.waitPending(t)
	var wg sync.WaitGroup
	codes := make([]int, 2)
	for i := range codes {
		wg.Add(1)
		go func() { defer wg.Done(); _, codes[i] = d.execgate("approve", a.ID) }()
	}
	wg.Wait()
	if (codes[0] == 0) == (codes[1] == 0) {
		t.Errorf("both or neither approve succeeded: %v", codes)
	}
}

// --remember allows exactly that argv in that cwd from then on; anything
// else still asks.
func TestRememberIsExact(t *testing.T) {
	d := startDaemonConfig(t, "file", askConfig, profile{"bot", askProfile})
	go d.egsh(agentUID, nil, "-c", "touch approved-5")
	a := d.waitPending(t)
	if out, code := d.execgate("approve", "--remember", a.ID); code != 0 {
		t.Fatalf("approve --remember: %d %s", code, out)
	}
	waitFor(t, 5*time.Second, "the first run", func() bool { return d.exists("approved-5") })
	os.Remove(filepath.Join(d.work, "approved-5"))
	if r := d.egsh(agentUID, nil, "-c", "touch approved-5"); r.code != 0 || !d.exists("approved-5") || strings.Contains(string(r.stderr), "waiting") {
		t.Errorf("the remembered argv asked again: %d %q", r.code, r.stderr)
	}
	// A changed argv asks (and expires here).
	if r := d.egsh(agentUID, nil, "-c", "touch approved-6"); r.code != 126 || d.exists("approved-6") {
		t.Errorf("a changed argv matched the old approval: %d %q", r.code, r.stderr)
	}
	// So does the same argv in another cwd.
	sub := filepath.Join(d.work, "sub")
	os.Mkdir(sub, 0o777)
	code, body := httpAs(t, agentUID, d.agentSock(), "POST", "/v1/check", jsonBody(api.ExecRequest{Script: "touch approved-5", Cwd: sub}))
	if code != 200 || !strings.Contains(string(body), `"decision": "ask"`) {
		t.Errorf("the same argv in another cwd: %d %s", code, body)
	}
	b, _ := os.ReadFile(filepath.Join(d.dir, "state", "approved", "bot.toml"))
	if !strings.Contains(string(b), `'/usr/bin/touch' 'approved-5'`) || !strings.Contains(string(b), "cwd = ") {
		t.Errorf("remembered file:\n%s", b)
	}
}

// An ask from a nested exec holds that exec in the kernel until decided.
func TestNestedAsk(t *testing.T) {
	d := startDaemonConfig(t, "file", askConfig, profile{"bot", askProfile})
	done := make(chan result, 1)
	go func() {
		done <- d.egsh(agentUID, nil, "-c", `echo start > started; sh -c "$(printf 'touch approved-7')"; echo after > after`)
	}()
	a := d.waitPending(t)
	if !a.Nested || strings.Join(a.Invocations[0], " ") != "touch approved-7" || !d.exists("started") || d.exists("after") {
		t.Fatalf("nested approval: %+v started=%v after=%v", a, d.exists("started"), d.exists("after"))
	}
	d.execgate("approve", a.ID)
	r := <-done
	if r.code != 0 || !d.exists("approved-7") || !d.exists("after") {
		t.Errorf("after the nested approval: %d %q", r.code, r.stderr)
	}
}
