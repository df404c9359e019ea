package changes

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCompute(t *testing.T) {
	cases := []struct {
		name   string
		setup  string // in the real tree, as the agent, before Prepare
		script string // in the overlay
		asRoot bool
		want   []string
		check  func(t *testing.T, s *Set)
	}{{
		name:   "created files, dirs and symlinks",
		script: "echo hi > new.txt && mkdir -p d/e && echo x > d/e/f && ln -s new.txt link && mkdir empty",
		want: []string{"created dir d", "+created dir d/e", "+created file d/e/f", "created dir empty",
			"created symlink link", "created file new.txt"},
		check: func(t *testing.T, s *Set) {
			if got := s.Totals; got.Created != 6 || got.Bytes != 5 || got.Paths != 6 {
				t.Errorf("totals %+v", got)
			}
			if c := find(s, "link"); c.Target != "new.txt" || c.UID != agentUID {
				t.Errorf("link: %+v", c)
			}
		},
	}, {
		name:   "modified content",
		setup:  "echo old > f.txt && mkdir sub && echo a > sub/a",
		script: "echo newer > f.txt && echo b >> sub/a",
		want:   []string{"modified file f.txt", "modified file sub/a"},
		check: func(t *testing.T, s *Set) {
			if c := find(s, "f.txt"); c.OldSize != 4 || c.Size != 6 {
				t.Errorf("sizes %d -> %d", c.OldSize, c.Size)
			}
			if s.Totals.Modified != 2 || s.Totals.Bytes != 6+4 {
				t.Errorf("totals %+v", s.Totals)
			}
		},
	}, {
		name:   "unchanged copy-ups are dropped",
		setup:  "echo same > f && echo same > g && mkdir d && echo x > d/h",
		script: ": 1<>f && touch g d/h && cp f f.tmp && mv f.tmp f",
		want:   nil,
	}, {
		name:   "chmod",
		setup:  "echo x > run.sh && mkdir private && chmod 0644 run.sh",
		script: "chmod 0755 run.sh && chmod 0700 private",
		want:   []string{"metadata dir private", "metadata file run.sh"},
		check: func(t *testing.T, s *Set) {
			if c := find(s, "run.sh"); c.OldMode != 0o644 || c.Mode != 0o755 {
				t.Errorf("mode %o -> %o", c.OldMode, c.Mode)
			}
		},
	}, {
		name:   "chown",
		setup:  "echo x > f && ln -s f l",
		script: "chown 1000:1001 f && chown -h 1002:1003 l",
		asRoot: true,
		want:   []string{"metadata file f", "metadata symlink l"},
		check: func(t *testing.T, s *Set) {
			if c := find(s, "f"); c.OldUID != agentUID || c.UID != 1000 || c.GID != 1001 {
				t.Errorf("owner %d:%d -> %d:%d", c.OldUID, c.OldGID, c.UID, c.GID)
			}
		},
	}, {
		name:   "extended attributes",
		setup:  "echo x > f",
		script: `"$EXE" f user.note hello`,
		asRoot: true,
		want:   []string{"metadata file f"},
		check: func(t *testing.T, s *Set) {
			if !find(s, "f").Xattrs {
				t.Error("Xattrs not set")
			}
		},
	}, {
		name:   "deleted file",
		setup:  "echo x > f && echo y > keep",
		script: "rm f",
		want:   []string{"deleted file f"},
	}, {
		name:   "deleted directory of 100 files",
		setup:  "mkdir big && i=0; while [ $i -lt 100 ]; do echo $i > big/$i; i=$((i+1)); done",
		script: "rm -rf big",
		check: func(t *testing.T, s *Set) {
			if s.Totals.Deleted != 101 || s.Totals.Paths != 101 {
				t.Errorf("totals %+v", s.Totals)
			}
			if c := s.Changes[0]; c.Path != "big" || c.Implied || c.Kind != Deleted || c.OldType != Dir {
				t.Errorf("first change %+v", c)
			}
		},
	}, {
		name:   "replaced directory (opaque)",
		setup:  "mkdir d && echo a > d/a && echo b > d/b",
		script: "rm -rf d && mkdir d && echo n > d/n",
		want:   []string{"replaced dir d", "+deleted file d/a", "+deleted file d/b", "+created file d/n"},
	}, {
		name:   "directory rename falls back to copy and delete",
		setup:  "mkdir src && echo a > src/a",
		script: "mv src dst",
		want:   []string{"created dir dst", "+created file dst/a", "deleted dir src", "+deleted file src/a"},
	}, {
		name:   "file rename",
		setup:  "echo a > a",
		script: "mv a b",
		want:   []string{"deleted file a", "created file b"},
	}, {
		name:   "symlink target",
		setup:  "ln -s a link",
		script: "ln -sfn b link",
		want:   []string{"modified symlink link"},
		check: func(t *testing.T, s *Set) {
			if c := find(s, "link"); c.OldTgt != "a" || c.Target != "b" {
				t.Errorf("target %q -> %q", c.OldTgt, c.Target)
			}
		},
	}, {
		name:   "file replaced by a directory",
		setup:  "echo x > p",
		script: "rm p && mkdir p && echo y > p/q",
		want:   []string{"replaced dir p", "+created file p/q"},
	}, {
		name:   "created then deleted leaves nothing",
		script: "echo x > tmp && rm tmp && mkdir t && rmdir t",
	}, {
		name:   "fifo",
		script: "mkfifo pipe",
		want:   []string{"created fifo pipe"},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.host(tc.setup)
			r := e.prepare("c1")
			defer r.Discard()
			e.overlay(r, tc.asRoot, strings.Replace(tc.script, `"$EXE"`, `EXECGATE_CHANGES_TOOL=setxattr "$EXE"`, 1))
			s := compute(t, r)
			if tc.want != nil || tc.check == nil {
				if got := describe(s); strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
					t.Errorf("changes:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
				}
			}
			for _, c := range s.Changes {
				if c.Abs != filepath.Join(e.lower, c.Path) {
					t.Errorf("Abs %q for %q", c.Abs, c.Path)
				}
			}
			if tc.check != nil {
				tc.check(t, s)
			}
		})
	}
}

func find(s *Set, path string) Change {
	for _, c := range s.Changes {
		if c.Path == path {
			return c
		}
	}
	return Change{}
}

// The copy-ups the "unchanged" case relies on are really in the upper.
func TestComputeCopyUpIsReal(t *testing.T) {
	e := newEnv(t)
	e.host("echo same > f")
	r := e.prepare("c1")
	defer r.Discard()
	e.overlay(r, false, ": 1<>f")
	if _, err := os.Lstat(filepath.Join(r.Layers[0].Upper, "f")); err != nil {
		t.Fatalf("no copy-up: %v", err)
	}
	if s := compute(t, r); len(s.Changes) != 0 {
		t.Errorf("changes %v", describe(s))
	}
}

func TestComputeWorkdirRoot(t *testing.T) {
	e := newEnv(t)
	r := e.prepare("c1")
	defer r.Discard()
	e.overlay(r, false, "chmod 0750 .")
	s := compute(t, r)
	if got := describe(s); len(got) != 1 || got[0] != "metadata dir ." {
		t.Fatalf("changes %v", got)
	}
	if err := r.Apply(s); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(e.lower); fi.Mode().Perm() != 0o750 {
		t.Errorf("workdir mode %v", fi.Mode())
	}
}

// redirect_dir=off: renaming a directory of the lower layer is EXDEV
// (which mv turns into copy and delete); a new directory renames.
func TestDirRenameIsEXDEV(t *testing.T) {
	e := newEnv(t)
	e.host("mkdir src && echo a > src/a")
	r := e.prepare("x1")
	defer r.Discard()
	e.overlay(r, true, `EXECGATE_CHANGES_TOOL=rename-exdev "$EXE" src dst && mkdir fresh && mv fresh moved`)
	if got := describe(compute(t, r)); strings.Join(got, ",") != "created dir moved" {
		t.Errorf("changes %v", got)
	}
}
