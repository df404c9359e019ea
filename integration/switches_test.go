package integration

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/execgate/execgate/audit"
)

func TestKillReviveSurvivesRestart(t *testing.T) {
	d := startDaemon(t, profile{"bot", fullProfile})
	done := make(chan result, 1)
	go func() { done <- d.egsh(agentUID, nil, "-c", "exec -a killme-sleep sleep 1000") }()
	waitFor(t, 10*time.Second, "the run", func() bool { return pgrep("killme-sleep") > 0 })
	out, code := d.execgate("kill", "bot")
	if code != 0 || !strings.Contains(out, "1 run(s) stopped") {
		t.Fatalf("kill: %d %s", code, out)
	}
	select {
	case r := <-done:
		if r.code == 0 {
			t.Errorf("the killed run exited 0")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the run outlived kill")
	}
	waitFor(t, 5*time.Second, "no process left", func() bool { return pgrep("killme-sleep") == 0 })
	r := d.egsh(agentUID, nil, "-c", "touch after-kill")
	if r.code != 126 || !strings.Contains(string(r.stderr), "was killed by uid 0") || d.exists("after-kill") {
		t.Errorf("after kill: %d %q", r.code, r.stderr)
	}
	// The switch survives a restart.
	d.stop()
	d.start()
	if r := d.egsh(agentUID, nil, "-c", "touch after-restart"); r.code != 126 || d.exists("after-restart") {
		t.Errorf("after restart: %d %q", r.code, r.stderr)
	}
	if out, _ := d.execgate("status"); !strings.Contains(out, "KILLED") {
		t.Errorf("status does not show the kill: %s", out)
	}
	if out, code := d.execgate("revive", "bot"); code != 0 {
		t.Fatalf("revive: %d %s", code, out)
	}
	if r := d.egsh(agentUID, nil, "-c", "touch revived"); r.code != 0 || !d.exists("revived") {
		t.Errorf("after revive: %d %q", r.code, r.stderr)
	}
	adm := find(d.records(), audit.FieldEvent, "admin", audit.FieldUID, "0")
	var actions []string
	for _, a := range adm {
		actions = append(actions, a.Fields[audit.FieldAdminAction])
	}
	if !strings.Contains(strings.Join(actions, ","), "kill") || !strings.Contains(strings.Join(actions, ","), "revive") {
		t.Errorf("admin actions journaled: %v", actions)
	}
}

// A frozen agent makes no progress until thawed.
func TestFreezeThaw(t *testing.T) {
	d := startDaemon(t, profile{"bot", strings.Replace(fullProfile, `timeout = "3s"`, `timeout = "60s"`, 1)})
	counter := filepath.Join(d.work, "counter")
	go d.egsh(agentUID, nil, "-c", `i=0; while :; do i=$((i+1)); echo $i > counter; sleep 0.05; done`)
	read := func() int {
		b, _ := os.ReadFile(counter)
		n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		return n
	}
	waitFor(t, 10*time.Second, "the counter", func() bool { return read() > 3 })
	if out, code := d.execgate("freeze", "bot"); code != 0 || !strings.Contains(out, "1 run(s) paused") {
		t.Fatalf("freeze: %d %s", code, out)
	}
	time.Sleep(200 * time.Millisecond)
	frozen := read()
	time.Sleep(time.Second)
	if n := read(); n != frozen {
		t.Errorf("the counter moved while frozen: %d -> %d", frozen, n)
	}
	if r := d.egsh(agentUID, nil, "-c", "true"); r.code != 126 || !strings.Contains(string(r.stderr), "frozen") {
		t.Errorf("a new request while frozen: %d %q", r.code, r.stderr)
	}
	if out, code := d.execgate("thaw", "bot"); code != 0 {
		t.Fatalf("thaw: %d %s", code, out)
	}
	waitFor(t, 5*time.Second, "progress after thaw", func() bool { return read() > frozen+3 })
	d.execgate("kill", "bot")
	d.execgate("revive", "bot")
}

func TestLockdown(t *testing.T) {
	d := startDaemon(t, profile{"bot", fullProfile})
	if out, code := d.execgate("lockdown", "on"); code != 0 {
		t.Fatalf("lockdown on: %d %s", code, out)
	}
	if r := d.egsh(agentUID, nil, "-c", "touch locked"); r.code != 126 || !strings.Contains(string(r.stderr), "lockdown") || d.exists("locked") {
		t.Errorf("in lockdown: %d %q", r.code, r.stderr)
	}
	d.stop()
	d.start()
	if r := d.egsh(agentUID, nil, "-c", "touch locked"); r.code != 126 {
		t.Errorf("lockdown did not survive a restart: %d", r.code)
	}
	d.execgate("lockdown", "off")
	if r := d.egsh(agentUID, nil, "-c", "touch unlocked"); r.code != 0 || !d.exists("unlocked") {
		t.Errorf("after lockdown off: %d %q", r.code, r.stderr)
	}
}

func TestPerMinuteCap(t *testing.T) {
	d := startDaemon(t, profile{"bot", fullProfile + "per_minute = 3\n"})
	for i := range 3 {
		if r := d.egsh(agentUID, nil, "-c", "true"); r.code != 0 {
			t.Fatalf("request %d: %d %q", i, r.code, r.stderr)
		}
	}
	r := d.egsh(agentUID, nil, "-c", "touch capped")
	if r.code != 126 || !strings.Contains(string(r.stderr), "limits.per_minute") || d.exists("capped") {
		t.Errorf("over the cap: %d %q", r.code, r.stderr)
	}
	deny := find(d.records(), audit.FieldEvent, "decision", audit.FieldDecision, "deny")
	if len(deny) != 1 || !strings.Contains(deny[0].Fields[audit.FieldReason], "3 requests in the last minute") || deny[0].Fields[audit.FieldRule] != "bot.toml:16" {
		t.Errorf("cap denial record: %v", deny)
	}
}
