package main

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/execgate/execgate/audit"
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

func TestParentOf(t *testing.T) {
	if got := parentOf(strconv.Itoa(os.Getpid())); got != os.Getppid() {
		t.Errorf("parentOf(self) = %d, want %d", got, os.Getppid())
	}
	if parentOf("999999999") != 0 {
		t.Error("parent of a missing process")
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
