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
type trail struct {
	sink audit.Sink

	mu      sync.Mutex
	lost    int
	lastErr error
}

func (t *trail) Write(r *audit.Record) error {
	t.mu.Lock()
	lost, lastErr := t.lost, t.lastErr
	t.mu.Unlock()
	if lost > 0 {
		note := audit.New(audit.EventError, audit.PriErr, fmt.Sprintf("AUDIT %d record(s) could not be written: %v", lost, lastErr)).
			Set(audit.FieldReason, lastErr.Error()).Set(audit.FieldLost, strconv.Itoa(lost))
		if err := t.sink.Write(note); err == nil {
			t.mu.Lock()
			t.lost -= lost
			t.mu.Unlock()
		}
	}
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
