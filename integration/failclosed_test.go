package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/execgate/execgate/audit"
	"github.com/execgate/execgate/internal/journaltest"
)

// With journald gone, nothing runs: the request is refused and the command
// has no effect. Once journald is back, requests run again and the gap is
// recorded.
func TestFailClosedJournald(t *testing.T) {
	d := startDaemonAudit(t, "journal", profile{"bot", auditProfile})
	if r := d.egsh(agentUID, nil, "-c", "touch before"); r.code != 0 {
		t.Fatalf("before: %d %s", r.code, r.stderr)
	}
	if err := journaltest.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !journaltest.Running() {
			journaltest.Start()
		}
	})
	r := d.egsh(agentUID, nil, "-c", "touch during")
	if r.code != 125 || !strings.Contains(string(r.stderr), "audit log cannot be written") {
		t.Errorf("with journald stopped: exit %d %q", r.code, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(d.work, "during")); err == nil {
		t.Error("the command ran without an audit record")
	}
	if !strings.Contains(d.stderr.String(), "audit") {
		t.Errorf("the daemon did not say so on stderr: %q", d.stderr)
	}
	if err := journaltest.Start(); err != nil {
		t.Fatal(err)
	}
	if r := d.egsh(agentUID, nil, "-c", "touch after"); r.code != 0 {
		t.Fatalf("after journald came back: %d %s", r.code, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(d.work, "after")); err != nil {
		t.Error("the command did not run after journald came back")
	}
	lost := journaltest.WaitFor(t, 1, "EXECGATE_EVENT=error", audit.FieldLost+"=1")
	if !strings.Contains(lost[0].Message, "could not be written") {
		t.Errorf("lost-record note: %q", lost[0].Message)
	}
}

// The JSONL file on a full disk: refused, no effect, the file intact.
func TestFailClosedFullDisk(t *testing.T) {
	d := startDaemon(t, profile{"bot", auditProfile})
	d.stop()
	fs := filepath.Join(d.dir, "auditfs")
	os.MkdirAll(fs, 0o755)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", fs).CombinedOutput(); err != nil {
		t.Fatalf("mount: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", fs).Run() })
	d.auditPath = filepath.Join(fs, "audit.jsonl")
	d.start()
	if r := d.egsh(agentUID, nil, "-c", "touch ok1"); r.code != 0 {
		t.Fatalf("before the disk filled: %d %s", r.code, r.stderr)
	}
	exec.Command("dd", "if=/dev/zero", "of="+filepath.Join(fs, "filler"), "bs=4k", "count=64").Run()
	// A request record larger than a page: tmpfs takes a smaller one
	// into the free end of the audit file's last page, full disk or not.
	r := d.egsh(agentUID, nil, "-c", "touch full # "+strings.Repeat("x", 8<<10))
	if r.code != 125 {
		t.Errorf("disk full: exit %d %q", r.code, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(d.work, "full")); err == nil {
		t.Error("the command ran although its request record could not be written")
	}
	for _, rec := range d.records() { // every line still parses: nothing torn
		if rec.Fields[audit.FieldEvent] == "" {
			t.Errorf("torn record %v", rec.Fields)
		}
	}
	// The failed write was cut back: the hash chain is whole.
	if res, err := audit.VerifyFiles([]string{d.auditFile()}, audit.VerifyOptions{}); err != nil {
		t.Error(err)
	} else if !res.Intact() || res.Records == 0 {
		t.Errorf("the audit file's chain after the full disk: %s %v", res.Summary(), res.Findings)
	}
}

// When the sink fails in the middle of a run, the run is killed at its next
// exec: the program after the failure never runs.
func TestFailClosedMidRun(t *testing.T) {
	d := startDaemonAudit(t, "journal", profile{"bot", auditProfile})
	t.Cleanup(func() {
		if !journaltest.Running() {
			journaltest.Start()
		}
	})
	done := make(chan result, 1)
	go func() {
		done <- d.egsh(agentUID, nil, "-c", "touch started; while [ ! -e go ]; do sleep 0.05; done; /bin/touch after-exec")
	}()
	waitFor(t, 10*time.Second, "the run to start", func() bool {
		_, err := os.Stat(filepath.Join(d.work, "started"))
		return err == nil
	})
	if err := journaltest.Stop(); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(d.work, "go"), nil, 0o644)
	select {
	case r := <-done:
		if r.code == 0 {
			t.Errorf("the run went on with no audit trail: %q", r.stderr)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the run was not stopped")
	}
	if _, err := os.Stat(filepath.Join(d.work, "after-exec")); err == nil {
		t.Error("a program ran after the audit trail failed")
	}
	if !strings.Contains(d.stderr.String(), "killing run") {
		t.Errorf("daemon stderr: %q", d.stderr)
	}
}
