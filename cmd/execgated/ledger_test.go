package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/execgate/execgate/audit"
	"github.com/execgate/execgate/supervisor/sandbox"
)

type sinkFunc func(*audit.Record) error

func (f sinkFunc) Write(r *audit.Record) error { return f(r) }
func (f sinkFunc) Close() error                { return nil }

// A run stays in the ledger until its end record is written: a failed
// write keeps it, so the next start writes the abort the run still lacks.
func TestLedger(t *testing.T) {
	l, err := newLedger(filepath.Join(t.TempDir(), "runs"))
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now().Add(-time.Minute)
	l.add(ledgerEntry{ID: "b", Agent: "flow", UID: 1001, Pid: 42, Cgroup: "/execgate/flow/b", Started: t0.Add(time.Second)})
	l.add(ledgerEntry{ID: "a", Agent: "flow", UID: 1001, Started: t0})
	os.WriteFile(filepath.Join(l.dir, "c.json"), []byte("{torn"), 0o600) // a crash mid-write
	es := l.entries()
	if len(es) != 3 || es[0].ID != "c" || es[1].ID != "a" || es[2].ID != "b" || es[2].Pid != 42 || es[2].Cgroup != "/execgate/flow/b" {
		t.Fatalf("entries: %+v", es)
	}

	failing := true
	sink := ledgerSink{Sink: sinkFunc(func(*audit.Record) error {
		if failing {
			return errors.New("journald is down")
		}
		return nil
	}), l: l}
	end := audit.New(audit.EventEnd, audit.PriInfo, "flow END exit 0").Set(audit.FieldID, "a")
	sink.Write(end)
	if _, err := os.Stat(l.path("a")); err != nil {
		t.Error("an end record that was not written took the run out of the ledger")
	}
	failing = false
	sink.Write(audit.New(audit.EventStart, audit.PriInfo, "flow START").Set(audit.FieldID, "b"))
	sink.Write(end)
	if _, err := os.Stat(l.path("a")); err == nil {
		t.Error("a written end record left the run in the ledger")
	}
	if _, err := os.Stat(l.path("b")); err != nil {
		t.Error("a start record took the run out of the ledger")
	}
}

// ownerEnv makes the test binary, whose name starts with "execgated",
// stand in for another live daemon: TestLedgerOwnerHelper then starts a
// child, prints its pid and waits for it.
const ownerEnv = "EXECGATE_LEDGER_TEST_OWNER"

func TestLedgerOwnerHelper(t *testing.T) {
	if os.Getenv(ownerEnv) != "1" {
		t.Skip("run by TestLeftoversUnderAnotherRoot")
	}
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	fmt.Println(cmd.Process.Pid)
	cmd.Wait()
}

// The ledger finds leftover runs where the runner keeps its cgroups, not
// under a fixed /sys/fs/cgroup: here the cgroup2 mount of a hybrid host
// and a root of the test's own. A run of another live daemon keeps its
// cgroup; once that daemon is gone the cgroup is removed and its run gets
// an abort record.
func TestLeftoversUnderAnotherRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root: run cgroups are made for real (make test runs as root)")
	}
	mnt := "/sys/fs/cgroup/unified"
	var st unix.Statfs_t
	if unix.Statfs(mnt, &st) != nil || st.Type != unix.CGROUP2_SUPER_MAGIC {
		mnt = "/sys/fs/cgroup"
	}
	root := fmt.Sprintf("/execgate-ledgertest-%d", os.Getpid())
	r, err := sandbox.NewRunner(sandbox.WithCgroupV2(mnt), sandbox.WithCgroupRoot(root))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	run := filepath.Join(root, "flow", "r1")
	if got := r.CgroupDir(run); got != filepath.Join(mnt, run) {
		t.Fatalf("CgroupDir(%s) = %s", run, got)
	}
	if err := os.MkdirAll(r.CgroupDir(run), 0o755); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(filepath.Join(mnt, root, "flow"))
	defer os.Remove(r.CgroupDir(run))

	owner := exec.Command(os.Args[0], "-test.run=^TestLedgerOwnerHelper$")
	owner.Env = append(os.Environ(), ownerEnv+"=1")
	out, _ := owner.StdoutPipe()
	if err := owner.Start(); err != nil {
		t.Fatal(err)
	}
	var child int
	fmt.Fscan(out, &child)
	defer syscall.Kill(child, syscall.SIGKILL)
	if err := os.WriteFile(filepath.Join(r.CgroupDir(run), "cgroup.procs"), []byte(strconv.Itoa(child)), 0); err != nil {
		t.Fatal(err)
	}

	l, err := newLedger(filepath.Join(t.TempDir(), "runs"))
	if err != nil {
		t.Fatal(err)
	}
	var recs []*audit.Record
	sink := sinkFunc(func(rec *audit.Record) error { recs = append(recs, rec); return nil })
	if err := cleanLeftovers(r, l, sink); err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].Event() != audit.EventError || !strings.Contains(recs[0].Message, "pid "+strconv.Itoa(owner.Process.Pid)) {
		t.Errorf("a live daemon's run: records %v", recs)
	}
	if _, err := os.Stat(r.CgroupDir(run)); err != nil {
		t.Errorf("a live daemon's run cgroup was removed: %v", err)
	}

	owner.Process.Kill()
	owner.Wait()
	recs = nil
	if err := cleanLeftovers(r, l, sink); err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].Event() != audit.EventEnd || recs[0].Fields[audit.FieldID] != "r1" || recs[0].Fields[audit.FieldCgroup] != run {
		t.Errorf("a dead daemon's run: records %v", recs)
	}
	if _, err := os.Stat(r.CgroupDir(run)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a dead daemon's run cgroup is still there: %v", err)
	}
}

// An entry is on disk, its directory synced, before add returns: one that
// cannot be made durable is an error (the run is refused) and leaves no
// file behind.
func TestLedgerAddIsDurable(t *testing.T) {
	l, err := newLedger(filepath.Join(t.TempDir(), "runs"))
	if err != nil {
		t.Fatal(err)
	}
	var synced []string
	l.syncDir = func(d string) error { synced = append(synced, d); return nil }
	if err := l.add(ledgerEntry{ID: "a", Agent: "flow", Pid: 7}); err != nil {
		t.Fatal(err)
	}
	if len(synced) != 1 || synced[0] != l.dir {
		t.Errorf("directory syncs: %q", synced)
	}
	if es := l.entries(); len(es) != 1 || es[0].ID != "a" || es[0].Pid != 7 {
		t.Errorf("entries: %+v", es)
	}

	eio := errors.New("input/output error")
	l.syncDir = func(string) error { return eio }
	if err := l.add(ledgerEntry{ID: "b", Agent: "flow"}); !errors.Is(err, eio) {
		t.Errorf("a failed directory sync: %v", err)
	}
	if _, err := os.Stat(l.path("b")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("an entry that is not durable was left: %v", err)
	}

	l.syncDir = nil // the real fsync
	if err := l.add(ledgerEntry{ID: "c", Agent: "flow"}); err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(l.dir)
	if err := l.add(ledgerEntry{ID: "d", Agent: "flow"}); err == nil {
		t.Error("an entry written nowhere was reported added")
	}
}
