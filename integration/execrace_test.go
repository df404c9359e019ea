package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/execgate/execgate/audit"
)

// buildRacer compiles testdata/race/execrace.c into dir, owned by the
// agent.
func buildRacer(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "execrace")
	if out, err := exec.Command("gcc", "-O2", "-pthread", "-o", bin, "testdata/race/execrace.c").CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	os.Chown(bin, agentUID, agentUID)
	return bin
}

var raceLine = regexp.MustCompile(`tries=(\d+) ran=(\d+) refused=(\d+) killed=(\d+) other=(\d+) escaped=(\d)`)

// TestExecRaceCannotWin runs a program whose second thread flips the path
// and argv of an execve between `/bin/true status` and `git checkout -b
// raced`. Run as the agent without execgate it creates the branch at
// once; through execgate, thousands of tries never do, and the journal
// has the exec denials of the race.
func TestExecRaceCannotWin(t *testing.T) {
	d := startDaemon(t, profile{"bot", checkoutProfile})
	git := gitRepo(t, d)

	// Live: the same program, as the agent, on plain bash, in a copy.
	plain, err := os.MkdirTemp("/var/tmp", "execrace")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(plain) })
	os.Chmod(plain, 0o755)
	if out, err := exec.Command("cp", "-a", d.work+"/.", plain).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	exec.Command("chown", "-R", strconv.Itoa(agentUID), plain).Run()
	bin := buildRacer(t, plain)
	cmd := exec.Command("setpriv", "--reuid", strconv.Itoa(agentUID), "--regid", strconv.Itoa(agentUID), "--clear-groups", "bash", "-c", bin+" 3000")
	cmd.Dir = plain
	out, _ := cmd.CombinedOutput()
	if m := raceLine.FindStringSubmatch(string(out)); m == nil || m[6] != "1" {
		t.Fatalf("without execgate the race should create the branch: %s", out)
	}

	// Through execgate: 2,000 tries, the flips held for spans from none
	// to some tens of microseconds, so they land at every distance from
	// the check.
	buildRacer(t, d.work)
	r := d.egsh(agentUID, nil, "-c", "for s in 0 1000 20000 50000; do ./execrace 500 $s; done")
	lines := raceLine.FindAllStringSubmatch(string(r.stdout), -1)
	if len(lines) != 4 {
		t.Fatalf("racer output %q, stderr %q, exit %d", r.stdout, r.stderr, r.code)
	}
	var tries, ran, killed int
	for _, m := range lines {
		t.Logf("through execgate: %s", m[0])
		if m[6] != "0" {
			t.Errorf("the race created the branch: %s", m[0])
		}
		tries, ran, killed = tries+atoi(m[1]), ran+atoi(m[2]), killed+atoi(m[4])
	}
	if b := git("branch", "--list", "raced"); b != "" {
		t.Fatalf("the race created the branch")
	}
	if cur := git("rev-parse", "--abbrev-ref", "HEAD"); cur != "main" {
		t.Fatalf("HEAD moved to %q", cur)
	}
	if tries != 2000 || ran == 0 {
		t.Errorf("the harmless exec should still run: %d tries, %d ran", tries, ran)
	}
	var raced int
	for _, rec := range find(d.records(), audit.FieldEvent, "exec", audit.FieldDecision, "deny") {
		if strings.Contains(rec.Fields[audit.FieldReason], "raced its check") {
			raced++
			// The kernel's copy may be torn mid-flip (even /bin/true called
			// as git): the rule that refuses it is the checkout rule.
			if rec.Fields[audit.FieldRule] != "bot.toml:6" {
				t.Errorf("race record: %v", rec.Fields)
			}
		}
	}
	if raced == 0 || killed == 0 {
		t.Errorf("no race was caught in %d tries (%d race records, %d killed): the test is not live", tries, raced, killed)
	}
	if !strings.Contains(string(r.stderr), "raced its check") {
		t.Errorf("no race denial on the client's stream: %q", r.stderr)
	}
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }
