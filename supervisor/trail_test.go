package supervisor

import (
	"errors"
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
	tr := &trail{sink: f}
	if err := tr.Write(audit.New(audit.EventRequest, 6, "a")); err != nil {
		t.Fatal(err)
	}
	f.fail = true
	for range 3 {
		if err := tr.Write(audit.New(audit.EventExec, 6, "lost")); err == nil {
			t.Fatal("a failed write must return its error")
		}
	}
	f.fail = false
	if err := tr.Write(audit.New(audit.EventEnd, 6, "b")); err != nil {
		t.Fatal(err)
	}
	if len(f.recs) != 3 || f.recs[1].Fields[audit.FieldLost] != "3" || f.recs[1].Event() != audit.EventError || f.recs[2].Message != "b" {
		t.Fatalf("records: %+v", f.recs)
	}
	tr.Write(audit.New(audit.EventEnd, 6, "c"))
	if len(f.recs) != 4 {
		t.Errorf("the loss must be reported once: %d records", len(f.recs))
	}
}
