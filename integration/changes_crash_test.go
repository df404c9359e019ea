package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/execgate/execgate/audit"
	"github.com/execgate/execgate/internal/journaltest"
	"golang.org/x/sys/unix"
)

// crashTree is the real tree of the kill -9 tests: 30 directories, each
// with 10 files the run modifies and 10 it deletes; the run also creates
// 80 files in each. 3,000 paths, each its own rename at apply.
type crashTree struct {
	d    *daemon
	dirs []string
}

const crashScript = `for d in d*; do i=0; while [ $i -lt 80 ]; do echo "new $d $i" > $d/c$i; i=$((i+1)); done; ` +
	`i=0; while [ $i -lt 10 ]; do echo "new $d $i" > $d/m$i; rm $d/x$i; i=$((i+1)); done; done`

func newCrashTree(t *testing.T, d *daemon) *crashTree {
	c := &crashTree{d: d}
	files := map[string]string{}
	for n := 0; n < 30; n++ {
		dir := fmt.Sprintf("d%02d", n)
		c.dirs = append(c.dirs, dir)
		for i := 0; i < 10; i++ {
			files[fmt.Sprintf("%s/m%d", dir, i)] = fmt.Sprintf("old %s %d\n", dir, i)
			files[fmt.Sprintf("%s/x%d", dir, i)] = fmt.Sprintf("old %s %d\n", dir, i)
		}
	}
	d.put(t, files)
	return c
}

// state says of every path whether it is old, new or neither, and
// lists what is in the directories that should not be.
func (c *crashTree) state() (old, new int, neither, strays []string) {
	for _, dir := range c.dirs {
		want := map[string]bool{}
		check := func(name, oldBody, newBody string) {
			want[name] = true
			switch c.d.read(filepath.Join(dir, name)) {
			case oldBody:
				old++
			case newBody:
				new++
			default:
				neither = append(neither, dir+"/"+name+": "+c.d.read(filepath.Join(dir, name)))
			}
		}
		const absent = "<absent>"
		for i := 0; i < 80; i++ {
			check(fmt.Sprintf("c%d", i), absent, fmt.Sprintf("new %s %d\n", dir, i))
		}
		for i := 0; i < 10; i++ {
			check(fmt.Sprintf("m%d", i), fmt.Sprintf("old %s %d\n", dir, i), fmt.Sprintf("new %s %d\n", dir, i))
			check(fmt.Sprintf("x%d", i), fmt.Sprintf("old %s %d\n", dir, i), absent)
		}
		ents, _ := os.ReadDir(filepath.Join(c.d.work, dir))
		for _, e := range ents {
			if !want[e.Name()] {
				strays = append(strays, dir+"/"+e.Name())
			}
		}
	}
	return
}

// created counts the created files present: the apply's progress.
func (c *crashTree) created() int {
	n := 0
	for _, dir := range c.dirs {
		ents, _ := os.ReadDir(filepath.Join(c.d.work, dir))
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), "c") {
				n++
			}
		}
	}
	return n
}

// procState is the state letter of /proc/PID/stat (T when stopped).
func procState(pid int) byte {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if i := strings.LastIndexByte(string(b), ')'); i >= 0 && i+2 < len(b) {
		return b[i+2]
	}
	return 0
}

// stopped sends SIGSTOP and waits until every thread of pid is stopped.
func stopped(t *testing.T, pid int) {
	syscall.Kill(pid, syscall.SIGSTOP)
	deadline := time.Now().Add(5 * time.Second)
	for {
		all := true
		tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		for _, task := range tasks {
			tid, _ := strconv.Atoi(task.Name())
			b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/stat", pid, tid))
			if i := strings.LastIndexByte(string(b), ')'); i >= 0 && i+2 < len(b) && b[i+2] != 'T' {
				all = false
			}
		}
		if all {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("execgated (pid %d) did not stop: %c", pid, procState(pid))
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// launchChanges starts a daemon with changesProfile and config, on a
// cgroup root of its own, and returns how to start it again.
func launchChanges(t *testing.T, sink, config string) (*daemon, launchOpts) {
	d := prepareDaemon(t, sink, profile{"bot", changesProfile})
	d.config = config
	os.WriteFile(filepath.Join(d.dir, "none.toml"), []byte(config), 0o644)
	opts := launchOpts{args: []string{"--cgroup-root", uniqueCgroupRoot()}}
	d.launch(opts)
	return d, opts
}

// 7. kill -9 of the daemon in the middle of an apply: on restart every
// path is old or new, all of them the same way, and the journal says
// which. Cut short before the commit, it is rolled back.
func TestChangesKill9DuringApply(t *testing.T) {
	if !crashApply(t, false) {
		t.Error("the kill did not land mid-apply")
	}
}

// After the commit, before the clean-up: the restart finishes it.
func TestChangesKill9AfterCommit(t *testing.T) {
	for try := 1; try <= 3; try++ {
		landed := false
		t.Run(fmt.Sprintf("try%d", try), func(t *testing.T) { landed = crashApply(t, true) })
		if landed || t.Failed() {
			return
		}
	}
	t.Skip("three times the apply was cleaned up before the kill landed")
}

// crashApply holds crashScript's set, approves it, stops the daemon the
// moment its intent log appears and lets it on in slices of about 200µs
// until the apply is part done (afterCommit false: some created files in,
// not all) or committed and not yet cleaned up (afterCommit true); then
// kill -9, a restart on the same directories, and the checks. It
// reports whether the kill landed where it was meant to.
func crashApply(t *testing.T, afterCommit bool) bool {
	d, opts := launchChanges(t, "journal", changesConfig)
	c := newCrashTree(t, d)
	run, a := d.heldSet(t, crashScript)
	if !strings.Contains(run.stderr.String(), "3000 files (2400 created, 300 modified, 300 deleted)") {
		t.Fatalf("held: %q", run.stderr)
	}
	runDir := filepath.Join(d.dir, "state", "changes", a.ID)
	logPath := filepath.Join(runDir, "apply.log")
	if _, err := os.Stat(filepath.Join(runDir, "manifest.json")); err != nil {
		t.Fatalf("the held set's directory: %v", err)
	}

	// Stop the daemon the moment the intent log appears.
	ifd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(ifd)
	if _, err := unix.InotifyAddWatch(ifd, runDir, unix.IN_CREATE|unix.IN_MOVED_TO); err != nil {
		t.Fatal(err)
	}
	approved := make(chan string, 1)
	go func() { out, _ := d.execgate("approve", a.ID); approved <- out }()
	pid := d.pid
	buf := make([]byte, 64<<10)
	deadline := time.Now().Add(20 * time.Second)
	for seen := false; !seen; {
		if time.Now().After(deadline) {
			t.Fatal("no apply log appeared")
		}
		unix.Poll([]unix.PollFd{{Fd: int32(ifd), Events: unix.POLLIN}}, 100)
		n, _ := unix.Read(ifd, buf)
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			name := strings.TrimRight(string(buf[off+unix.SizeofInotifyEvent:off+unix.SizeofInotifyEvent+int(ev.Len)]), "\x00")
			off += unix.SizeofInotifyEvent + int(ev.Len)
			if name == "apply.log" {
				stopped(t, pid)
				seen = true
			}
		}
	}
	// Let it on in slices until it is where the kill is meant to land.
	const total = 2400
	var progress int
	var committed, gone bool
	at := func() bool {
		progress = c.created()
		b, err := os.ReadFile(logPath)
		gone = err != nil
		committed = strings.Contains(string(b), `"committed":true`)
		if afterCommit {
			return committed || gone
		}
		return progress > 0 || gone
	}
	steps := 0
	for ; !at() && steps < 20000; steps++ {
		syscall.Kill(pid, syscall.SIGCONT)
		time.Sleep(200 * time.Microsecond)
		stopped(t, pid)
	}
	syscall.Kill(pid, syscall.SIGKILL)
	d.cmd.Wait()
	d.cmd = nil
	old, new, neither, strays := c.state()
	t.Logf("killed after %d slices: %d of %d created files in, log committed %v, gone %v; %d paths old, %d new, %d neither (mid-op), %d stray entries (%.200v)",
		steps, progress, total, committed, gone, old, new, len(neither), len(strays), strays)
	// Cut short: something moved, and the log is not committed.
	landed := !gone && (afterCommit && committed || !afterCommit && !committed && progress > 0)
	if code := run.wait(t, 10*time.Second); code != 125 && landed {
		t.Errorf("egsh when the daemon died: exit %d %q", code, run.stderr)
	}
	<-approved

	// Restart on the same directories.
	d.launch(opts)
	if gone {
		// Nothing left to recover: the apply finished.
		d.noLeftovers(t)
		if old, new, _, _ := c.state(); new != 3000 {
			t.Errorf("the apply finished, but %d paths are old", old)
		}
		return false
	}
	recs := journaltest.WaitFor(t, 1, "_PID="+strconv.Itoa(d.pid), "EXECGATE_EVENT=changes", "EXECGATE_ID="+a.ID)
	rec := recs[0]
	decision := rec.Fields[audit.FieldDecision]
	old, new, neither, strays = c.state()
	t.Logf("after the restart: %s (%q): %d paths old, %d new", decision, rec.Message, old, new)
	if len(neither) != 0 || len(strays) != 0 {
		t.Errorf("after the restart: %d paths neither old nor new (%.300v), stray entries %.300v", len(neither), neither, strays)
	}
	switch decision {
	case "rolled-back":
		if new != 0 || old != 3000 {
			t.Errorf("rolled back, but %d paths are new", new)
		}
	case "applied":
		if old != 0 || new != 3000 {
			t.Errorf("finished, but %d paths are old", old)
		}
	default:
		t.Errorf("the recovery record's decision: %q (%v)", decision, rec.Fields)
	}
	if want := map[bool]string{false: "rolled-back", true: "applied"}[committed]; decision != want {
		t.Errorf("an apply killed with its log committed=%v was journaled %s at the restart, want %s", committed, decision, want)
	}
	if rec.Priority != audit.PriWarning || !strings.Contains(rec.Message, a.ID) {
		t.Errorf("recovery record: %d %q", rec.Priority, rec.Message)
	}
	d.noLeftovers(t)
	// The restarted daemon applies a small set as usual.
	if r := d.egsh(agentUID, nil, "-c", "echo after > after.txt"); r.code != 0 || d.read("after.txt") != "after\n" {
		t.Errorf("after the restart: %d %q", r.code, r.stderr)
	}
	return landed
}

// kill -9 while a set is held: the restart removes it, journals it as
// discarded, and the tree is as it was.
func TestChangesKill9WhileHeld(t *testing.T) {
	d, opts := launchChanges(t, "journal", changesConfig)
	d.put(t, map[string]string{"a": "a\n", "b": "b\n", "c": "c\n"})
	before := treePrint(t, d.work)
	run, a := d.heldSet(t, "rm a b c; i=0; while [ $i -lt 20 ]; do echo $i > n$i; i=$((i+1)); done")
	d.cmd.Process.Signal(syscall.SIGKILL)
	d.cmd.Wait()
	d.cmd = nil
	run.wait(t, 10*time.Second)
	if _, err := os.Stat(filepath.Join(d.dir, "state", "changes", a.ID)); err != nil {
		t.Fatalf("the held set's directory is gone before the restart: %v", err)
	}
	d.launch(opts)
	rec := journaltest.WaitFor(t, 1, "_PID="+strconv.Itoa(d.pid), "EXECGATE_EVENT=changes", "EXECGATE_ID="+a.ID)[0]
	if rec.Fields[audit.FieldDecision] != "discarded" {
		t.Errorf("recovery record: %q %v", rec.Message, rec.Fields)
	}
	if after := treePrint(t, d.work); after != before {
		t.Errorf("the tree changed:\n%s", diffPrints(before, after))
	}
	d.noLeftovers(t)
	if len(d.pendingNow(t)) != 0 {
		t.Error("the held set came back as an approval")
	}
}
