package sandbox

import (
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/execgate/execgate/pathglob"
)

func TestPlanMasks(t *testing.T) {
	// Not t.TempDir: paths under /tmp are never masked (each run has its
	// own /tmp).
	root, other := varTmp(t), varTmp(t)
	mk := func(p string) {
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte("x"), 0o644)
	}
	mk(filepath.Join(root, ".env"))
	mk(filepath.Join(root, "a", "b", ".env.prod"))
	mk(filepath.Join(root, "node_modules", "pkg", ".env")) // skipped name
	mk(filepath.Join(root, "secrets", ".env"))             // under a masked dir
	mk(filepath.Join(other, ".env"))                       // reached by symlink only
	mk(filepath.Join(other, "dir", ".env"))                // under a symlinked dir: not followed
	os.Symlink(filepath.Join(other, ".env"), filepath.Join(root, "link"))
	os.Symlink(filepath.Join(other, "dir"), filepath.Join(root, "dirlink"))
	os.Symlink(filepath.Join(root, "loop"), filepath.Join(root, "loop")) // a loop
	os.Symlink("/nonexistent/.env", filepath.Join(root, "dangling"))
	os.MkdirAll(filepath.Join(root, "deep", "1", "2", "3", "4"), 0o755)
	mk(filepath.Join(root, "deep", "1", "2", "3", "4", ".env"))

	set, err := pathglob.NewSet([]string{"**/.env", "**/.env.*", "~/secrets"}, root)
	if err != nil {
		t.Fatal(err)
	}
	c := defaultConfig()
	c.walkDepth = 3
	p := planMasks(set, []string{root, root}, &c)
	wantFiles := []string{
		filepath.Join(other, ".env"), filepath.Join(root, ".env"), filepath.Join(root, "a", "b", ".env.prod"),
	}
	wantDirs := []string{filepath.Join(root, "secrets")}
	sort.Strings(wantFiles)
	if !reflect.DeepEqual(paths(p.files), wantFiles) || !reflect.DeepEqual(paths(p.dirs), wantDirs) {
		t.Errorf("files %v\nwant  %v\ndirs %v\nwant %v", p.files, wantFiles, p.dirs, wantDirs)
	}
	if !p.cut {
		t.Error("depth 3 should cut the deep tree")
	}
	// Each target carries the inode the init must find there.
	for _, m := range append(p.files, p.dirs...) {
		var st unix.Stat_t
		if err := unix.Lstat(m.Path, &st); err != nil || st.Dev != m.Dev || st.Ino != m.Ino {
			t.Errorf("%s: planned %d:%d, is %d:%d (%v)", m.Path, m.Dev, m.Ino, st.Dev, st.Ino, err)
		}
	}
	// The refusal names the patterns the walk was for and the bound.
	err = p.refusal([]string{"**/.env", "**/.env.*", "~/secrets", "/elsewhere/**"}, root)
	want := `deny_read "**/.env", "**/.env.*", "~/secrets": walk of ` + root + ` stopped at depth 3 (bound): ` +
		filepath.Join(root, "deep", "1", "2", "3") + ` not searched; refusing to run`
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("refusal:\n%v\nwant\n%s", err, want)
	}
	c.walkDepth = 16
	if p := planMasks(set, []string{root}, &c); p.cut || len(p.files) != 4 || p.refusal(nil, root) != nil {
		t.Errorf("depth 16: cut %v files %v", p.cut, p.files)
	}
	if p := planMasks(nil, []string{root}, &c); len(p.all()) != 0 {
		t.Errorf("nil set masked %v", p.all())
	}
	// Anchored patterns only: the walk roots are not searched.
	anchored, _ := pathglob.NewSet([]string{"~/secrets"}, root)
	if p := planMasks(anchored, []string{root}, &c); !reflect.DeepEqual(p.all(), wantDirs) {
		t.Errorf("anchored only: %v", p.all())
	}
}

func paths(ts []mountTarget) []string {
	var out []string
	for _, t := range ts {
		out = append(out, t.Path)
	}
	return out
}

func varTmp(t *testing.T) string {
	d, err := os.MkdirTemp("/var/tmp", "execgate-mask-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}
