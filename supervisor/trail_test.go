package supervisor

import (
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/execgate/execgate/audit"
)

type flakySink struct {
	fail bool
	recs []*audit.Record
}

func (f *flakySink) Write(r *audit.Record) error {
	if f.fail {
		return errors.New("journald is gone")
	}
	f.recs = append(f.recs, r)
	return nil
}
func (f *flakySink) Close() error { return nil }

func TestTrailReportsLostRecords(t *testing.T) {
	f := &flakySink{}
	tr := newTrail(f, t.Logf)
	if err := tr.record(audit.New(audit.EventRequest, 6, "a")); err != nil {
		t.Fatal(err)
	}
	f.fail = true
	for range 3 {
		if err := tr.record(audit.New(audit.EventExec, 6, "lost")); err == nil {
			t.Fatal("a failed write must return its error")
		}
	}
	f.fail = false
	if err := tr.record(audit.New(audit.EventEnd, 6, "b")); err != nil {
		t.Fatal(err)
	}
	if len(f.recs) != 3 || f.recs[1].Fields[audit.FieldLost] != "3" || f.recs[1].Event() != audit.EventError || f.recs[2].Message != "b" {
		t.Fatalf("records: %+v", f.recs)
	}
	tr.note(audit.New(audit.EventEnd, 6, "c"))
	if len(f.recs) != 4 {
		t.Errorf("the loss must be reported once: %d records", len(f.recs))
	}
}

// racySink fails every third write, whatever it is, and is safe for
// concurrent use like the real sinks.
type racySink struct {
	n    atomic.Int64
	down atomic.Bool
	mu   sync.Mutex
	recs []*audit.Record
}

func (f *racySink) Write(r *audit.Record) error {
	if f.down.Load() && f.n.Add(1)%3 == 0 {
		return errors.New("journald is busy")
	}
	f.mu.Lock()
	f.recs = append(f.recs, r)
	f.mu.Unlock()
	return nil
}
func (f *racySink) Close() error { return nil }

// Writers racing against a failing sink: the count of records lost and
// not yet reported never goes negative, and once the sink is well again
// the notes written (EXECGATE_AUDIT_LOST) add up to exactly the records
// whose Write failed (the notes themselves are not records of a caller:
// a note that fails is retried, not counted).
func TestTrailLostRecordsRace(t *testing.T) {
	f := &racySink{}
	f.down.Store(true)
	var logged atomic.Int64
	tr := newTrail(f, func(string, ...any) { logged.Add(1) })
	var failed atomic.Int64
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				if tr.record(audit.New(audit.EventExec, 6, strconv.Itoa(g*1000+i))) != nil {
					failed.Add(1)
				}
				tr.mu.Lock()
				lost := tr.lost
				tr.mu.Unlock()
				if lost < 0 {
					t.Errorf("lost = %d", lost)
					return
				}
			}
		}()
	}
	wg.Wait()
	f.down.Store(false)
	if err := tr.record(audit.New(audit.EventEnd, 6, "after")); err != nil {
		t.Fatal(err)
	}
	reported, notes, written := 0, 0, 0
	for _, r := range f.recs {
		v, ok := r.Fields[audit.FieldLost]
		if !ok {
			written++
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 || r.Event() != audit.EventError {
			t.Fatalf("note %q: %v", v, r)
		}
		reported += n
		notes++
	}
	if failed.Load() == 0 || notes == 0 {
		t.Fatalf("the sink never failed (%d) or no note (%d)", failed.Load(), notes)
	}
	if logged.Load() != failed.Load() {
		t.Errorf("%d failures logged, %d writes failed", logged.Load(), failed.Load())
	}
	if int64(reported) != failed.Load() {
		t.Errorf("notes report %d lost records, %d writes failed", reported, failed.Load())
	}
	if want := 16*200 + 1 - int(failed.Load()); written != want {
		t.Errorf("%d records written, want %d", written, want)
	}
	if tr.lost != 0 {
		t.Errorf("%d lost records left unreported", tr.lost)
	}
}
