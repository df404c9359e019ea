package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/execgate/execgate/audit"
	"github.com/execgate/execgate/internal/journaltest"
)

const longProfile = `uid = 65534
security = "full"
workdirs = ["WORK"]

[limits]
timeout = "1h"
concurrent = 8
`

// procsIn returns the pids in a cgroup directory (none when it is gone).
func procsIn(dir string) []int {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		if p, err := strconv.Atoi(f); err == nil {
			pids = append(pids, p)
		}
	}
	return pids
}

// kill -9 of the daemon in the middle of a run, then a restart: nothing
// of the run is left (no process, no cgroup in any hierarchy, no ledger
// entry), and the new daemon journals one abort end record carrying the
// run's id. A process still in the leftover cgroup at the restart (the
// run's own die with the daemon: their init has PR_SET_PDEATHSIG) is
// killed by the restart's cleanup.
func TestRestartAfterKill9(t *testing.T) {
	d := prepareDaemon(t, "journal", profile{"bot", longProfile})
	root := uniqueCgroupRoot()
	opts := launchOpts{args: []string{"--cgroup-root", root}}
	d.launch(opts)
	oldPid := d.pid

	const script = "exec -a execgate-restart-victim sleep 1000"
	run := d.egshStart(agentUID, "-c", script)
	id := d.runID(script)
	start := d.waitRecord(audit.FieldEvent, "start", audit.FieldID, id)
	cg := start.Fields[audit.FieldCgroup]
	if cg != root+"/bot/"+id {
		t.Fatalf("run cgroup %q, want %s/bot/%s", cg, root, id)
	}
	dirs := v1Dirs(cg)
	waitFor(t, 5*time.Second, "the run's sleep", func() bool { return pgrep("^execgate-restart-victim") == 1 })
	if len(procsIn(dirs[0])) == 0 {
		t.Fatalf("no process in %s", dirs[0])
	}
	ledger := filepath.Join(d.dir, "state", "runs", id+".json")
	if _, err := os.Stat(ledger); err != nil {
		t.Fatalf("the run is not in the ledger: %v", err)
	}

	// kill -9: no shutdown code runs.
	d.cmd.Process.Signal(syscall.SIGKILL)
	d.cmd.Wait()
	d.cmd = nil
	if code := run.wait(t, 10*time.Second); code != 125 {
		t.Errorf("egsh when the daemon died: exit %d %q", code, run.stderr)
	}
	// The run's processes die with the daemon; its cgroup stays behind.
	waitFor(t, 10*time.Second, "the run's processes to die with the daemon", func() bool { return pgrep("^execgate-restart-victim") == 0 })
	for _, dir := range dirs {
		if _, err := os.Stat(dir); err != nil {
			t.Fatalf("leftover cgroup %s already gone before the restart: %v", dir, err)
		}
	}
	// Something still in the leftover cgroup, in every hierarchy: the
	// restart must kill it.
	stray := exec.Command("sleep", "1000")
	stray.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: agentUID, Gid: agentUID}}
	if err := stray.Start(); err != nil {
		t.Fatal(err)
	}
	strayDone := make(chan error, 1)
	go func() { strayDone <- stray.Wait() }()
	t.Cleanup(func() { stray.Process.Kill() })
	for _, dir := range dirs {
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(stray.Process.Pid)), 0); err != nil {
			t.Fatalf("put a process in %s: %v", dir, err)
		}
	}

	// Restart.
	d.launch(opts)
	if d.pid == oldPid {
		t.Fatal("same daemon")
	}
	select {
	case err := <-strayDone:
		if ws, ok := stray.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
			t.Errorf("the process in the leftover cgroup ended with %v, want SIGKILL", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("the process in the leftover cgroup survived the restart")
	}
	for _, dir := range dirs {
		if _, err := os.Stat(dir); err == nil {
			t.Errorf("leftover cgroup %s survived the restart", dir)
		}
	}
	if _, err := os.Stat(ledger); err == nil {
		t.Error("the run is still in the ledger after its abort was journaled")
	}

	// The abort end record, from the new daemon, with the run's id.
	aborts := journaltest.WaitFor(t, 1, "_PID="+strconv.Itoa(d.pid), "EXECGATE_EVENT=end", "EXECGATE_ID="+id)
	a := aborts[0]
	for k, want := range map[string]string{
		audit.FieldAborted: "1", audit.FieldAgent: "bot", audit.FieldUID: strconv.Itoa(agentUID),
		audit.FieldExit: "137", audit.FieldSignal: "9", audit.FieldCgroup: cg,
	} {
		if a.Fields[k] != want {
			t.Errorf("abort record %s=%q, want %q (%v)", k, a.Fields[k], want, a.Fields)
		}
	}
	if a.Priority != audit.PriWarning || !strings.Contains(a.Message, "bot END aborted") {
		t.Errorf("abort record: %d %q", a.Priority, a.Message)
	}
	// The old daemon's records of the run end without an end record; the
	// trail is complete only with the new one.
	if old := journaltest.Query(t, "_PID="+strconv.Itoa(oldPid), "EXECGATE_ID="+id); len(find(old, audit.FieldEvent, "end")) != 0 || len(find(old, audit.FieldEvent, "start")) != 1 {
		t.Errorf("old daemon's records of the run: %d", len(old))
	}

	// The restarted daemon serves, and a second restart finds nothing.
	if r := d.egsh(agentUID, nil, "-c", "echo after-restart"); r.code != 0 || string(r.stdout) != "after-restart\n" {
		t.Errorf("after the restart: %d %q %q", r.code, r.stdout, r.stderr)
	}
	d.stop()
	d.launch(opts)
	if n := len(journaltest.Query(t, "EXECGATE_EVENT=end", "EXECGATE_ID="+id, "EXECGATE_ABORTED=1")); n != 1 {
		t.Errorf("%d abort records for run %s, want exactly 1", n, id)
	}
}

// SIGTERM with runs going: they get their grace; one that ends within it
// ends normally, one that does not is killed when it runs out; both get
// their end records and their clients their exit; new requests are no
// longer taken; the daemon exits 0 with nothing left behind.
func TestShutdownGrace(t *testing.T) {
	const grace = 2 * time.Second
	d := prepareDaemon(t, "file", profile{"bot", longProfile})
	root := uniqueCgroupRoot()
	d.launch(launchOpts{args: []string{"--cgroup-root", root, "--shutdown-grace", grace.String()}})

	long := d.egshStart(agentUID, "-c", "exec -a execgate-grace-long sleep 1000")
	short := d.egshStart(agentUID, "-c", "sleep 1; echo finished-in-grace")
	longID, shortID := d.runID("exec -a execgate-grace-long sleep 1000"), d.runID("sleep 1; echo finished-in-grace")
	d.waitRecord(audit.FieldEvent, "start", audit.FieldID, longID)
	d.waitRecord(audit.FieldEvent, "start", audit.FieldID, shortID)
	waitFor(t, 5*time.Second, "the long run", func() bool { return pgrep("^execgate-grace-long") == 1 })

	sent := time.Now()
	d.cmd.Process.Signal(syscall.SIGTERM)
	exited := make(chan error, 1)
	go func() { exited <- d.cmd.Wait() }()

	// No new requests during the grace.
	time.Sleep(300 * time.Millisecond)
	if r := d.egsh(agentUID, nil, "-c", "echo late"); r.code != 125 {
		t.Errorf("a request during shutdown: exit %d %q %q", r.code, r.stdout, r.stderr)
	}

	if code := short.wait(t, 10*time.Second); code != 0 || short.stdout.String() != "finished-in-grace\n" {
		t.Errorf("the run that ends within the grace: exit %d %q %q", code, short.stdout, short.stderr)
	}
	if pgrep("^execgate-grace-long") != 1 {
		t.Error("the long run was killed before its grace ran out")
	}
	code := long.wait(t, 15*time.Second)
	killedAfter := time.Since(sent)
	if code != 137 {
		t.Errorf("the run killed at the end of the grace: exit %d %q", code, long.stderr)
	}
	if killedAfter < grace || killedAfter > grace+5*time.Second {
		t.Errorf("the long run ended %s after SIGTERM, want just after the %s grace", killedAfter, grace)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("daemon exit after SIGTERM: %v\n%s", err, d.stderr)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the daemon did not exit")
	}
	d.cmd = nil

	recs := d.records()
	end := find(recs, audit.FieldEvent, "end", audit.FieldID, longID)
	if len(end) != 1 || end[0].Fields[audit.FieldExit] != "137" || end[0].Fields[audit.FieldSignal] != "9" || !strings.Contains(end[0].Message, "killed") {
		t.Errorf("end record of the killed run: %+v", end)
	}
	end = find(recs, audit.FieldEvent, "end", audit.FieldID, shortID)
	if len(end) != 1 || end[0].Fields[audit.FieldExit] != "0" {
		t.Errorf("end record of the run that finished: %+v", end)
	}
	if k := find(recs, audit.FieldEvent, "admin", audit.FieldAdminAction, "shutdown kill", audit.FieldID, longID); len(k) != 1 {
		t.Errorf("the shutdown kill is not journaled: %d records", len(k))
	}
	if len(find(recs, audit.FieldEvent, "admin", audit.FieldAdminAction, "shutdown kill", audit.FieldID, shortID)) != 0 {
		t.Error("the run that finished in its grace was journaled as killed")
	}
	if pgrep("^execgate-grace-long") != 0 || pgrepUID(agentUID, "sleep") != 0 {
		t.Error("a run's process outlived the daemon")
	}
	for _, dir := range v1Dirs(root) {
		if _, err := os.Stat(dir); err == nil {
			t.Errorf("cgroup %s left after shutdown", dir)
		}
	}
	if ents, _ := os.ReadDir(filepath.Join(d.dir, "state", "runs")); len(ents) != 0 {
		t.Errorf("ledger entries left after a clean shutdown: %v", ents)
	}
}

// A second daemon on the same cgroup root (started by mistake, or test
// suites side by side) does not take another live daemon's runs for
// leftovers: they go on, and it journals why it cleaned nothing.
func TestSecondDaemonSparesLiveRuns(t *testing.T) {
	root := uniqueCgroupRoot()
	a := prepareDaemon(t, "file", profile{"bot", longProfile})
	a.launch(launchOpts{args: []string{"--cgroup-root", root, "--shutdown-grace", "500ms"}})
	run := a.egshStart(agentUID, "-c", "exec -a execgate-spared sleep 1000")
	a.waitRecord(audit.FieldEvent, "start", audit.FieldID, a.runID("exec -a execgate-spared sleep 1000"))

	b := prepareDaemon(t, "file", profile{"bot", longProfile})
	b.launch(launchOpts{args: []string{"--cgroup-root", root}})
	w := b.waitRecord(audit.FieldEvent, "error")
	if !strings.Contains(w.Message, "execgated pid "+strconv.Itoa(a.pid)) {
		t.Errorf("second daemon's warning: %q", w.Message)
	}
	if len(find(b.records(), audit.FieldEvent, "end")) != 0 {
		t.Error("the second daemon journaled an abort for a live run")
	}
	time.Sleep(200 * time.Millisecond)
	select {
	case <-run.done:
		t.Fatalf("the first daemon's run was killed: exit %d", run.code)
	default:
	}
	if pgrep("^execgate-spared") != 1 {
		t.Error("the first daemon's run is gone")
	}
	b.stop()
	a.stop() // its grace ends the run, with its end record
	if code := run.wait(t, 20*time.Second); code != 137 {
		t.Errorf("run after its daemon stopped: exit %d", code)
	}
}
