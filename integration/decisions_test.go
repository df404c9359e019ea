package integration

import (
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/execgate/execgate/audit"
)

// A nested exec waiting for a human does not keep its run past the
// timeout: egsh exits 124 within the timeout plus a second, and the
// approval is gone from the pending list.
func TestNestedAskEndsWithTimeout(t *testing.T) {
	prof := strings.Replace(askProfile, `timeout = "60s"`, `timeout = "2s"`, 1)
	d := startDaemonConfig(t, "file", `approval_timeout = "5m"`, profile{"bot", prof})
	hidden := base64.StdEncoding.EncodeToString([]byte("touch approved-late"))
	start := time.Now()
	done := make(chan result, 1)
	go func() { done <- d.egsh(agentUID, nil, "-c", fmt.Sprintf(`eval "$(echo %s | base64 -d)"`, hidden)) }()
	a := d.waitPending(t)
	if !a.Nested {
		t.Fatalf("want a nested ask: %+v", a)
	}
	var r result
	select {
	case r = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the run outlived its timeout while its exec waited for a human")
	}
	if took := time.Since(start); r.code != 124 || took > 3*time.Second {
		t.Errorf("egsh exit %d after %v (want 124 within 3s): %s", r.code, took, r.stderr)
	}
	waitFor(t, 2*time.Second, "the approval to go", func() bool { return len(d.pendingNow(t)) == 0 })
	if out, code := d.execgate("approve", a.ID); code == 0 {
		t.Errorf("an approval of an ended run was taken: %s", out)
	}
	if d.exists("approved-late") {
		t.Error("the asked command ran")
	}
	// Allowed half: the same profile runs an untimed command.
	if r := d.egsh(agentUID, nil, "-c", "touch fine"); r.code != 0 || !d.exists("fine") {
		t.Errorf("an allowed command: %d %s", r.code, r.stderr)
	}
	recs := find(d.records(), audit.FieldEvent, "approval")
	if len(recs) != 1 || recs[0].Fields[audit.FieldDecision] != "rejected" || !strings.Contains(recs[0].Fields[audit.FieldReason], "timed out") ||
		recs[0].Fields[audit.FieldReviewerUID] != "" {
		t.Errorf("approval record: %v", recs)
	}
}

// A switch thrown while a request waits for a human starts nothing, even
// if an admin approves afterwards.
func TestSwitchWhilePending(t *testing.T) {
	for _, sw := range []struct{ name, on, off string }{
		{"lockdown", "lockdown on", "lockdown off"},
		{"freeze", "freeze bot", "thaw bot"},
		{"kill", "kill bot", "revive bot"},
	} {
		t.Run(sw.name, func(t *testing.T) {
			d := startDaemonConfig(t, "file", `approval_timeout = "5m"`, profile{"bot", askProfile})
			done := make(chan result, 1)
			go func() { done <- d.egsh(agentUID, nil, "-c", "touch approved-x") }()
			a := d.waitPending(t)
			if out, code := d.execgate(strings.Fields(sw.on)...); code != 0 {
				t.Fatalf("%s: %d %s", sw.on, code, out)
			}
			d.execgate("approve", a.ID)
			var r result
			select {
			case r = <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("the pending request did not end")
			}
			if r.code != 126 || d.exists("approved-x") {
				t.Errorf("after %s and approve: exit %d, ran %v: %s", sw.on, r.code, d.exists("approved-x"), r.stderr)
			}
			if len(d.pendingNow(t)) != 0 {
				t.Error("the approval is still pending")
			}
			if out, code := d.execgate(strings.Fields(sw.off)...); code != 0 {
				t.Fatalf("%s: %d %s", sw.off, code, out)
			}
			// Allowed half: with the switch lifted the agent runs again.
			if r := d.egsh(agentUID, nil, "-c", "touch after"); r.code != 0 || !d.exists("after") {
				t.Errorf("after %s: %d %s", sw.off, r.code, r.stderr)
			}
		})
	}
}

// revive lifts a freeze too, and the frozen run goes on.
func TestReviveThawsFrozenRuns(t *testing.T) {
	d := startDaemon(t, profile{"bot", strings.Replace(fullProfile, `timeout = "3s"`, `timeout = "60s"`, 1)})
	done := make(chan result, 1)
	go func() { done <- d.egsh(agentUID, nil, "-c", "sleep 1; touch woke") }()
	waitFor(t, 10*time.Second, "the run", func() bool { return pgrepUID(agentUID, "sleep") > 0 })
	if out, code := d.execgate("freeze", "bot"); code != 0 || !strings.Contains(out, "1 run(s) paused") {
		t.Fatalf("freeze: %d %s", code, out)
	}
	time.Sleep(1500 * time.Millisecond)
	if d.exists("woke") {
		t.Fatal("the frozen run went on")
	}
	if out, code := d.execgate("revive", "bot"); code != 0 || !strings.Contains(out, "1 frozen run(s) resumed") {
		select {
		case r := <-done:
			t.Logf("the run: %d %s", r.code, r.stderr)
		default:
		}
		t.Fatalf("revive: %d %s", code, out)
	}
	select {
	case r := <-done:
		if r.code != 0 || !d.exists("woke") {
			t.Errorf("the revived run: %d %s", r.code, r.stderr)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the frozen run stayed frozen after revive")
	}
}
