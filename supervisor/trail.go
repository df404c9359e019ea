package supervisor

import (
	"fmt"
	"strconv"
	"sync"

	"github.com/execgate/execgate/audit"
)

// trail is the audit sink as the server uses it: a failed write is said on
// the daemon's stderr at once, and in a record of its own ahead of the next
// record that can be written, so a gap in the trail is never silent.
// Every lost record is counted in exactly one note. The sink must be safe
// for concurrent writes: only the notes are written under the lock.
type trail struct {
	sink audit.Sink

	mu      sync.Mutex
	lost    int // records lost and in no note yet
	lastErr error
}

func (t *trail) Write(r *audit.Record) error {
	t.mu.Lock()
	if t.lost > 0 {
		// Written under the lock: the note says exactly the records lost
		// so far, and no other writer can say them again.
		note := audit.New(audit.EventError, audit.PriErr, fmt.Sprintf("AUDIT %d record(s) could not be written: %v", t.lost, t.lastErr)).
			Set(audit.FieldReason, t.lastErr.Error()).Set(audit.FieldLost, strconv.Itoa(t.lost))
		if err := t.sink.Write(note); err == nil {
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
		logf("audit: cannot write %s record %q: %v", r.Event(), r.Message, err)
	}
	return err
}

func (t *trail) Close() error { return t.sink.Close() }
