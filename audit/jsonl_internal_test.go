package audit

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestFileSinkRemovedDuringWrite: a file unlinked between the write and
// the end of Write means the record went nowhere: Write must say so.
func TestFileSinkRemovedDuringWrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	s, err := NewFileSink(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.afterSync = func() { os.Remove(path) }
	err = s.Write(New(EventRequest, PriInfo, "lost"))
	s.afterSync = nil
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Write into a removed file: %v, want an error wrapping ErrNotExist", err)
	}
	// The next record goes to a new file at the path.
	if err := s.Write(New(EventRequest, PriInfo, "kept")); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	r, err := ParseLine(b[:len(b)-1])
	if err != nil || r.Message != "kept" {
		t.Fatalf("new file holds %q (%v)", b, err)
	}
}
