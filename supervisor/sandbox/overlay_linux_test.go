package sandbox

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/execgate/execgate/pathglob"
)

// TestOverlay: with Spec.Overlays the run writes into the upper layer and
// sees its own writes; the real tree is untouched; a deny_read mask under
// the overlaid workdir still hides the secret.
func TestOverlay(t *testing.T) {
	r := newRunner(t)
	d := workdir(t)
	if err := os.WriteFile(filepath.Join(d, "old.txt"), []byte("old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d, ".env"), []byte("TOKEN=s3cret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(filepath.Join(d, "old.txt"), agentUID, agentGID); err != nil {
		t.Fatal(err)
	}
	layers, err := os.MkdirTemp("/var/tmp", "execgate-ovl-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(layers)
	upper, work := filepath.Join(layers, "upper"), filepath.Join(layers, "work")
	for _, p := range []string{upper, work} {
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(upper, agentUID, agentGID); err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(d, &st); err != nil {
		t.Fatal(err)
	}
	spec := newSpec(t, d, `echo new > new.txt && echo more >> old.txt && rm old.txt && cat new.txt && ls; cat .env; echo end`)
	spec.Overlays = []Overlay{{Lower: d, Upper: upper, Work: work, Dev: st.Dev, Ino: st.Ino}}
	set, err := pathglob.NewSet([]string{"**/.env"}, d)
	if err != nil {
		t.Fatal(err)
	}
	spec.DenyRead = set
	_, out, errs := runIt(t, r, spec)
	if !strings.Contains(out, "new\n") || strings.Contains(out, "old.txt") || strings.Contains(out, "s3cret") || !strings.HasSuffix(out, "end\n") {
		t.Errorf("the run saw:\n%s\nstderr: %s", out, errs)
	}
	if b, err := os.ReadFile(filepath.Join(d, "old.txt")); err != nil || string(b) != "old\n" {
		t.Errorf("the real old.txt: %q %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(d, "new.txt")); !os.IsNotExist(err) {
		t.Errorf("new.txt reached the real tree: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(upper, "new.txt")); err != nil || string(b) != "new\n" {
		t.Errorf("upper new.txt: %q %v", b, err)
	}
	var wh syscall.Stat_t
	if err := syscall.Lstat(filepath.Join(upper, "old.txt"), &wh); err != nil || wh.Mode&syscall.S_IFMT != syscall.S_IFCHR {
		t.Errorf("no whiteout for old.txt in the upper: %v %o", err, wh.Mode)
	}
}
