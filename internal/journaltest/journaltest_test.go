package journaltest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	sdjournal "github.com/coreos/go-systemd/v22/journal"
)

const selftestDirEnv = "JOURNALTEST_SELFTEST_DIR"

type mount struct{ dev, point, fstype string }

func mounts(t *testing.T) []mount {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var ms []mount
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		i := 6
		for i < len(f) && f[i] != "-" {
			i++
		}
		if len(f) < 5 || i+1 >= len(f) {
			t.Fatalf("odd mountinfo line %q", line)
		}
		ms = append(ms, mount{dev: f[2], point: f[4], fstype: f[i+1]})
	}
	return ms
}

func listDir(t *testing.T, dir string) []string {
	t.Helper()
	var names []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil {
			info, _ := d.Info()
			if info != nil {
				names = append(names, fmt.Sprintf("%s %d %v", p, info.Size(), info.ModTime().UnixNano()))
			}
		}
		return nil
	})
	sort.Strings(names)
	return names
}

func dead(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// "pid (comm) S ...": a zombie is dead too.
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && len(s) > i+2 {
		return s[i+2] == 'Z' || s[i+2] == 'X'
	}
	return false
}

func waitDead(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !dead(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("journald (pid %d) still alive on the host", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func readPid(t *testing.T, dir string) (int, string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "pid"))
	if err != nil {
		t.Fatalf("the child left no pid file: %v", err)
	}
	pid, dev, _ := strings.Cut(strings.TrimSpace(string(b)), " ")
	n, err := strconv.Atoi(pid)
	if err != nil || n <= 0 {
		t.Fatalf("bad pid file %q", b)
	}
	return n, dev
}

// childWork is what the isolated child checks and records for the parent.
func childWork(t *testing.T) {
	Require(t)
	var runDev string
	for _, m := range mounts(t) {
		if m.point == "/run" {
			runDev = m.dev + "/" + m.fstype
		}
	}
	if !strings.HasSuffix(runDev, "/tmpfs") {
		t.Fatalf("/run in the child is %q, want a tmpfs", runDev)
	}
	if !Running() || PID() == 0 {
		t.Fatal("journald is not running in the child")
	}
	if err := os.WriteFile(filepath.Join(os.Getenv(selftestDirEnv), "pid"), []byte(fmt.Sprintf("%d %s", PID(), runDev)), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestIsolateLeavesNothing runs a journald in an isolated child, checks
// the harness there (records round-trip, Stop/Kill/Pause/Start), and then
// checks on the host that the journald process is gone, its /run tmpfs
// was never visible and the host's journal directories are untouched.
func TestIsolateLeavesNothing(t *testing.T) {
	parent := os.Getenv(envKey) == ""
	var dir string
	var hostJournal, hostRunLog []string
	if parent {
		dir = t.TempDir()
		t.Setenv(selftestDirEnv, dir)
		hostJournal, hostRunLog = listDir(t, "/var/log/journal"), listDir(t, "/run/log/journal")
	}
	if !Isolate(t) {
		pid, dev := readPid(t, dir)
		waitDead(t, pid)
		for _, m := range mounts(t) {
			if m.point == "/run" && m.dev+"/"+m.fstype == dev {
				t.Errorf("the child's /run tmpfs (%s) is visible on the host", dev)
			}
		}
		if got := listDir(t, "/var/log/journal"); strings.Join(got, "\n") != strings.Join(hostJournal, "\n") {
			t.Errorf("the host's /var/log/journal changed:\nbefore %q\nafter  %q", hostJournal, got)
		}
		if got := listDir(t, "/run/log/journal"); strings.Join(got, "\n") != strings.Join(hostRunLog, "\n") {
			t.Errorf("the host's /run/log/journal changed:\nbefore %q\nafter  %q", hostRunLog, got)
		}
		return
	}
	childWork(t)

	send := func(id string) error {
		return sdjournal.Send("selftest "+id, sdjournal.PriInfo, map[string]string{"SYSLOG_IDENTIFIER": "journaltest-selftest", "SELFTEST_ID": id})
	}
	if err := send("one"); err != nil {
		t.Fatal(err)
	}
	if recs := WaitFor(t, 1, "SELFTEST_ID=one"); recs[0].Message != "selftest one" {
		t.Fatalf("read back %q", recs[0].Message)
	}

	// Kill leaves the socket behind with nobody reading: ECONNREFUSED.
	if err := Kill(); err != nil {
		t.Fatal(err)
	}
	if Running() {
		t.Fatal("Running after Kill")
	}
	if _, err := os.Stat(Socket); err != nil {
		t.Fatalf("socket after SIGKILL: %v", err)
	}
	if err := send("dead"); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("send to a killed journald: %v, want ECONNREFUSED", err)
	}

	// Start again: journald takes over the socket and the old records stay.
	if err := Start(); err != nil {
		t.Fatal(err)
	}
	if err := send("two"); err != nil {
		t.Fatal(err)
	}
	WaitFor(t, 1, "SELFTEST_ID=two")
	if n := len(Query(t, "SELFTEST_ID=one")); n != 1 {
		t.Fatalf("%d records from before the restart, want 1", n)
	}

	// Pause: the datagram queue fills up and a sender blocks.
	if err := Pause(); err != nil {
		t.Fatal(err)
	}
	blocked := make(chan error, 1)
	go func() {
		for i := 0; ; i++ {
			if err := send(fmt.Sprint("paused-", i)); err != nil {
				blocked <- err
				return
			}
		}
	}()
	select {
	case err := <-blocked:
		t.Fatalf("sends to a paused journald failed instead of blocking: %v", err)
	case <-time.After(500 * time.Millisecond):
	}
	if err := Resume(); err != nil {
		t.Fatal(err)
	}
	WaitFor(t, 1, "SELFTEST_ID=paused-0")

	// Stop: journald exits and leaves its socket file: ECONNREFUSED.
	if err := Stop(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-blocked:
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("send after Stop: %v, want ECONNREFUSED", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the sender is still blocked after journald stopped")
	}
	if err := Start(); err != nil {
		t.Fatal(err)
	}
	t.Logf("journald log tail:\n%s", Logs())
}

// TestCrashedChildLeavesNoJournald kills an isolated child with SIGKILL,
// so no cleanup runs: journald must die with it (PR_SET_PDEATHSIG).
func TestCrashedChildLeavesNoJournald(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(selftestDirEnv, dir)
	var out LockedBuffer
	code, err := reexec([]string{"-test.run=^TestCrashHelper$", "-test.v=true"}, "test:TestCrashHelper", &out, &out)
	if err != nil {
		t.Fatal(err)
	}
	if code != 128+int(syscall.SIGKILL) {
		t.Fatalf("helper exit %d, want %d:\n%s", code, 128+int(syscall.SIGKILL), out.String())
	}
	pid, _ := readPid(t, dir)
	waitDead(t, pid)
}

// TestCrashHelper is run by TestCrashedChildLeavesNoJournald.
func TestCrashHelper(t *testing.T) {
	if os.Getenv(envKey) != "test:TestCrashHelper" {
		t.Skip("helper for TestCrashedChildLeavesNoJournald")
	}
	if !Isolate(t) {
		t.Fatal("Isolate returned false in the child")
	}
	childWork(t)
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {}
}
