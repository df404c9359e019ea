package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFuncLen(t *testing.T) {
	dir := t.TempDir()
	src := `package p

// Short is three lines.
func Short() {
}

type T struct{}

func (t *T) Long() {
	f := func() {
		_ = 1
	}
	f()
}
`
	os.WriteFile(filepath.Join(dir, "p.go"), []byte(src), 0o644)
	// Test files are not counted.
	os.WriteFile(filepath.Join(dir, "p_test.go"), []byte("package p\n\nfunc helper() {\n\n\n\n\n\n\n\n}\n"), 0o644)
	fns, err := collect([]string{dir})
	if err != nil {
		t.Fatal(err)
	}
	var out, errs bytes.Buffer
	if code := report(&out, &errs, fns, 5, 6); code != 0 {
		t.Errorf("under the limit: exit %d: %s", code, errs.String())
	}
	first := strings.SplitN(out.String(), "\n", 2)[0]
	if want := "longest: " + filepath.ToSlash(filepath.Join(dir, "p.go")) + ":9 (*T).Long 6 lines"; first != want {
		t.Errorf("got %q, want %q\n%s", first, want, out.String())
	}
	if !strings.Contains(out.String(), "2. ") || strings.Contains(out.String(), "helper") {
		t.Errorf("top list: %s", out.String())
	}
	out.Reset()
	if code := report(&out, &errs, fns, 5, 5); code != 1 || !strings.Contains(errs.String(), "(*T).Long (6)") {
		t.Errorf("over the limit: exit %d: %s", code, errs.String())
	}
}
