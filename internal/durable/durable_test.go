package durable

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWriteFileAndSyncDir(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := WriteFile(p, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(p); err != nil || string(b) != "x" {
		t.Errorf("read back %q, %v", b, err)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode())
	}
	if err := SyncDir(dir); err != nil {
		t.Error(err)
	}
	if err := WriteFile(filepath.Join(dir, "no", "f"), nil); err == nil {
		t.Error("a write into a missing directory succeeded")
	}
	if err := SyncDir(filepath.Join(dir, "no")); err == nil {
		t.Error("a sync of a missing directory succeeded")
	}
}
