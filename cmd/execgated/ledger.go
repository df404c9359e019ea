package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/execgate/execgate/audit"
	"github.com/execgate/execgate/internal/durable"
	"github.com/execgate/execgate/internal/procfs"
	"github.com/execgate/execgate/supervisor/sandbox"
)

// ledger remembers, in the state dir, every run that started and has no
// end record yet: a small file per run, written before the start record
// and removed once the sink took the run's end record. A daemon that dies
// (kill -9, a crash, the watchdog, a power cut) leaves the files of its
// runs behind, and the next start writes an abort end record for each.
//
// The run cgroups a dead daemon leaves say the same on cgroup v1, but on
// a delegated v2 subtree systemd may remove them (and kill what is in
// them) before the restart; the ledger does not depend on that, and its
// records carry the uid, the peer pid and the start time too.
//
// An entry is synced to disk, file and directory, before the run's code
// runs (ledgerRunner adds it from OnStart), so a power cut cannot lose it.
type ledger struct {
	dir     string
	syncDir func(dir string) error // durable.SyncDir; tests fail it
}

// ledgerEntry is one run in progress.
type ledgerEntry struct {
	ID      string    `json:"id"`
	Agent   string    `json:"agent"`
	UID     uint32    `json:"uid"`
	Pid     int       `json:"pid"`
	Cgroup  string    `json:"cgroup"`
	Started time.Time `json:"started"`
}

func newLedger(dir string) (*ledger, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("run ledger: %w", err)
	}
	// The ledger's own name in the state dir must survive a power cut too.
	if err := durable.SyncDir(filepath.Dir(dir)); err != nil {
		return nil, fmt.Errorf("run ledger: %w", err)
	}
	return &ledger{dir: dir}, nil
}

func (l *ledger) path(id string) string { return filepath.Join(l.dir, id+".json") }

// add records a run durably: the file and its name in the directory are
// on disk when add returns nil. A crash before that is harmless: the run
// has not started (a torn file still names its run, see entries).
func (l *ledger) add(e ledgerEntry) error {
	b, _ := json.Marshal(e)
	err := durable.WriteFile(l.path(e.ID), b)
	if err == nil {
		syncDir := l.syncDir
		if syncDir == nil {
			syncDir = durable.SyncDir
		}
		err = syncDir(l.dir)
	}
	if err != nil {
		os.Remove(l.path(e.ID))
		return err
	}
	return nil
}

func (l *ledger) remove(id string) {
	if err := os.Remove(l.path(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(os.Stderr, "execgated: run ledger: %v\n", err)
	}
}

// entries lists the runs recorded, oldest first. A file that cannot be
// read still names its run.
func (l *ledger) entries() []ledgerEntry {
	ents, _ := os.ReadDir(l.dir)
	var out []ledgerEntry
	for _, de := range ents {
		name := de.Name()
		if de.IsDir() || filepath.Ext(name) != ".json" {
			continue
		}
		e := ledgerEntry{ID: name[:len(name)-len(".json")]}
		if b, err := os.ReadFile(filepath.Join(l.dir, name)); err == nil {
			var got ledgerEntry
			if json.Unmarshal(b, &got) == nil && got.ID == e.ID {
				e = got
			}
		}
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Started.Before(out[j].Started) })
	return out
}

// ledgerRunner records each run in the ledger before its start record.
type ledgerRunner struct {
	*sandbox.Runner
	l *ledger
}

func (r ledgerRunner) Run(ctx context.Context, spec sandbox.Spec) (sandbox.Result, error) {
	onStart := spec.OnStart
	spec.OnStart = func(pid int, cgroup string) error {
		if err := r.l.add(ledgerEntry{ID: spec.ID, Agent: spec.Agent, UID: spec.UID, Pid: pid, Cgroup: cgroup, Started: time.Now()}); err != nil {
			// Without it a crash could leave this run without an end
			// record: refuse, like a start record that cannot be written.
			return fmt.Errorf("run ledger: %w", err)
		}
		if onStart != nil {
			if err := onStart(pid, cgroup); err != nil {
				// Not started (no start record): there is nothing to end.
				r.l.remove(spec.ID)
				return err
			}
		}
		return nil
	}
	return r.Runner.Run(ctx, spec)
}

// ledgerSink drops a run from the ledger once its end record is written.
type ledgerSink struct {
	audit.Sink
	l *ledger
}

func (s ledgerSink) Write(r *audit.Record) error {
	err := s.Sink.Write(r)
	if err == nil && r.Event() == audit.EventEnd {
		if id := r.Fields[audit.FieldID]; id != "" {
			s.l.remove(id)
		}
	}
	return err
}

// cleanLeftovers ends what a previous daemon left: it kills and removes
// every run cgroup no live run owns, and journals an abort end record for
// each such run and each run still in the ledger (every run ends with an
// end record). A run's ledger entry goes only once its record is written.
//
// A cgroup that cannot be removed (a process stuck in the kernel) is
// journaled as an error and does not stop the daemon: its processes were
// sent SIGKILL, and refusing to start would take the gate away from every
// agent.
//
// Run cgroups that another live execgated still runs (a second daemon
// started by mistake on the same cgroup root, test suites side by side)
// are not leftovers: when there are any, the cgroups are left alone and a
// warning is journaled; only this daemon's own ledger is settled.
func cleanLeftovers(r *sandbox.Runner, l *ledger, sink audit.Sink) error {
	left, rmErr, err := removeLeftovers(r, sink)
	if err != nil {
		return err
	}
	for _, e := range unended(l.entries(), left) {
		if err := sink.Write(abortRecord(e)); err != nil {
			return fmt.Errorf("audit: %w", err)
		}
		l.remove(e.ID)
	}
	if rmErr != nil {
		return journalError(sink, audit.PriErr, "leftover runs: "+rmErr.Error())
	}
	return nil
}

// removeLeftovers removes the run cgroups under the root that no live run
// owns, and returns them with the error of any that could not be removed.
// When another execgated still runs some of them, it removes none.
func removeLeftovers(r *sandbox.Runner, sink audit.Sink) (left []sandbox.Leftover, rmErr, err error) {
	left, err = r.Leftovers()
	if err != nil {
		return nil, nil, fmt.Errorf("leftover runs: %w", err)
	}
	if other := liveOwner(r.CgroupDir, left); other != 0 {
		msg := fmt.Sprintf("leftover runs: not cleaned: execgated pid %d is running runs under the same cgroup root", other)
		return nil, nil, journalError(sink, audit.PriWarning, msg)
	}
	_, rmErr = r.RemoveLeftovers()
	return left, rmErr, nil
}

// journalError reports msg on stderr and in the journal.
func journalError(sink audit.Sink, pri int, msg string) error {
	fmt.Fprintln(os.Stderr, "execgated: "+msg)
	if err := sink.Write(audit.New(audit.EventError, pri, msg).Set(audit.FieldReason, msg)); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	return nil
}

// unended merges the ledger's entries with the leftover cgroups: one
// entry per run without an end record, the ledger's first.
func unended(entries []ledgerEntry, left []sandbox.Leftover) []*ledgerEntry {
	byID := map[string]*ledgerEntry{}
	var out []*ledgerEntry
	for _, e := range entries {
		e := e
		byID[e.ID] = &e
		out = append(out, &e)
	}
	for _, c := range left {
		if e := byID[c.ID]; e != nil {
			if e.Cgroup == "" {
				e.Cgroup = c.Cgroup
			}
			continue
		}
		e := &ledgerEntry{ID: c.ID, Agent: c.Agent, Cgroup: c.Cgroup}
		byID[c.ID] = e
		out = append(out, e)
	}
	return out
}

// abortRecord is the end record of a run the daemon stopped during.
func abortRecord(e *ledgerEntry) *audit.Record {
	msg := e.Agent + " END aborted: the daemon stopped during the run; found at startup, killed"
	rec := audit.New(audit.EventEnd, audit.PriWarning, msg).
		Set(audit.FieldID, e.ID).Set(audit.FieldAgent, e.Agent).Set(audit.FieldCgroup, e.Cgroup).
		Set(audit.FieldAborted, "1").SetInt(audit.FieldSignal, int64(syscall.SIGKILL)).
		SetInt(audit.FieldExit, 128+int64(syscall.SIGKILL)).Set(audit.FieldReason, "the daemon stopped during the run")
	if e.UID != 0 {
		rec.SetInt(audit.FieldUID, int64(e.UID))
	}
	if e.Pid != 0 {
		rec.SetInt(audit.FieldPid, int64(e.Pid))
	}
	if !e.Started.IsZero() {
		rec.Message += fmt.Sprintf(" (started %s)", e.Started.Format(time.RFC3339))
	}
	return rec
}

// liveOwner returns the pid of a live execgated other than this one that
// is the parent of a process in one of the run cgroups (a run's init is
// its daemon's child; it dies with its daemon), or 0. dirOf says where a
// cgroup's processes are listed (Runner.CgroupDir).
func liveOwner(dirOf func(cgroup string) string, left []sandbox.Leftover) int {
	self := os.Getpid()
	for _, c := range left {
		b, err := os.ReadFile(filepath.Join(dirOf(c.Cgroup), "cgroup.procs"))
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			pid, _ := strconv.Atoi(f)
			st, err := procfs.Stat(pid)
			if err != nil || st.PPid <= 1 || st.PPid == self {
				continue
			}
			if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", st.PPid)); err == nil && strings.HasPrefix(filepath.Base(exe), "execgated") {
				return st.PPid
			}
		}
	}
	return 0
}
