package changes

import (
	"strings"
	"testing"
)

const (
	gitC       = "git -c user.name=agent -c user.email=agent@example.invalid "
	gitSetup   = "git init -q -b main && echo readme > README && git add -A && " + gitC + "commit -qm init"
	gitCommit3 = "mkdir src && i=0; while [ $i -lt 300 ]; do echo \"file $i\" > src/f$i.txt; i=$((i+1)); done && " +
		"git add -A && " + gitC + "commit -qm 'sweep everything in'"
)

// TestGitCommit: `git add -A && git commit` of 300 new files in the
// overlay is a set with the new objects and the moved ref, which a
// protect of **/.git/** flags; discarding it leaves the repository as
// it was, applying it leaves a sound repository with the commit.
func TestGitCommit(t *testing.T) {
	e := newEnv(t)
	e.host(gitSetup)
	before := snapshot(t, e.lower)
	headBefore := e.host("git rev-parse HEAD")

	r := e.prepare("g1")
	e.overlay(r, false, gitCommit3)
	s := compute(t, r)
	objects := 0
	for _, c := range s.Changes {
		if c.Kind == Created && c.Type == File && strings.HasPrefix(c.Path, ".git/objects/") {
			objects++
		}
	}
	if objects < 303 { // 300 blobs, 2 trees, 1 commit
		t.Errorf("%d new objects, want at least 303", objects)
	}
	if c := find(s, ".git/refs/heads/main"); c.Kind != Modified || c.Type != File {
		t.Errorf("the ref: %+v", c)
	}
	if c := find(s, "src"); c.Kind != Created || c.Implied {
		t.Errorf("src: %+v", c)
	}
	v := s.Check(Caps{MaxFiles: 200, Protect: gitProtectRel(e.lower)})
	if len(v) != 2 || v[0].Cap != CapMaxFiles || v[1].Cap != CapProtect ||
		!strings.HasPrefix(v[1].Message, "writes under protected **/.git/**: .git/") || len(v[1].Paths) < 304 {
		t.Errorf("violations %+v", v)
	}

	t.Run("discarded", func(t *testing.T) {
		if err := r.Discard(); err != nil {
			t.Fatal(err)
		}
		if d := diffSnap(before, snapshot(t, e.lower)); d != "" {
			t.Errorf("the repository changed:\n%s", d)
		}
		if got := e.host("git rev-parse HEAD && git status --porcelain"); got != headBefore {
			t.Errorf("git says %q, want %q", got, headBefore)
		}
	})
	t.Run("applied", func(t *testing.T) {
		r := e.prepare("g2")
		e.overlay(r, false, gitCommit3)
		if err := r.Apply(compute(t, r)); err != nil {
			t.Fatal(err)
		}
		e.host("git fsck --strict --no-progress")
		if got := e.host("git log --format=%s && git status --porcelain"); got != "sweep everything in\ninit\n" {
			t.Errorf("git log and status: %q", got)
		}
	})
}

func gitProtectRel(root string) func(string) (string, bool) {
	return func(abs string) (string, bool) {
		if strings.HasPrefix(abs, root+"/.git/") || abs == root+"/.git" {
			return "**/.git/**", true
		}
		return "", false
	}
}
