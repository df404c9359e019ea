package supervisor

import (
	"fmt"
	"strconv"
	"sync"

	"github.com/execgate/execgate/audit"
)

// trail is the audit sink as the server uses it. Every write goes through
// one of two doors, and which one is the rule:
//
//   - record, for a record that gates an action: the request record before
//     anything is decided, the decisions before a run, the start record
//     before the agent's first instruction, an exec record before the exec
//     goes on, an approval before it counts, a reload's records. It returns
//     the error, and the caller does not act when the record is not there.
//   - note, for everything else: denials (the refusal stands either way),
//     end records, admin actions already done, errors. It returns nothing.
//
// Both say a failed write on the daemon's log at once, and in a record of
// its own ahead of the next record that can be written, so a gap in the
// trail is never silent: every lost record is counted in exactly one such
// record (EXECGATE_AUDIT_LOST). The sink must be safe for concurrent
// writes: only those counting records are written under the lock.
type trail struct {
	sink audit.Sink
	logf func(format string, args ...any) // nil: silent

	mu      sync.Mutex
	lost    int // records lost and in no count yet
	lastErr error
}

func newTrail(sink audit.Sink, logf func(string, ...any)) *trail {
	return &trail{sink: sink, logf: logf}
}

// record writes a record that gates an action: on an error, do not act.
func (t *trail) record(r *audit.Record) error { return t.write(r) }

// note writes a record that gates nothing. A failure is logged and
// counted; the caller goes on.
func (t *trail) note(r *audit.Record) { _ = t.write(r) }

func (t *trail) write(r *audit.Record) error {
	t.mu.Lock()
	if t.lost > 0 {
		// Written under the lock: the count says exactly the records lost
		// so far, and no other writer can say them again.
		lost := audit.New(audit.EventError, audit.PriErr, fmt.Sprintf("AUDIT %d record(s) could not be written: %v", t.lost, t.lastErr)).
			Set(audit.FieldReason, t.lastErr.Error()).Set(audit.FieldLost, strconv.Itoa(t.lost))
		if err := t.sink.Write(lost); err == nil {
			t.lost = 0
		}
	}
	t.mu.Unlock()
	err := t.sink.Write(r)
	if err != nil {
		t.mu.Lock()
		t.lost++
		t.lastErr = err
		t.mu.Unlock()
		if t.logf != nil {
			t.logf("audit: cannot write %s record %q: %v", r.Event(), r.Message, err)
		}
	}
	return err
}
