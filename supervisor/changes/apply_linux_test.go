package changes

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// A mix of every kind of change, run as the agent.
const (
	mixSetup = "echo old > mod.txt && echo x > gone.txt && mkdir -p tree/sub && echo t > tree/sub/t && " +
		"mkdir repl && echo r > repl/r && echo m > mode.sh && ln -s mod.txt link && mkdir keep && echo k > keep/k"
	mixScript = "echo new > mod.txt && rm gone.txt && rm -rf tree && rm -rf repl && mkdir repl && echo n > repl/n && " +
		"chmod 0755 mode.sh && ln -sfn keep/k link && mkdir -p fresh/a/b && echo f > fresh/a/b/f && echo k2 > keep/k2 && " +
		"mkdir keep/locked && echo l > keep/locked/l && chmod 0500 keep/locked && mkfifo keep/pipe"
)

// TestApply: the real tree ends up as the same script run directly on it
// would leave it, owners and modes included, and the layers are gone.
func TestApply(t *testing.T) {
	for _, placement := range []string{"state dir", "mount root", "copy"} {
		t.Run(placement, func(t *testing.T) {
			e := placed(t, placement)
			e.host(mixSetup)
			want := e.copyTree("want")
			direct(t, want, false, mixScript)
			r := e.prepare("a1")
			checkPlacement(t, e, r, placement)
			e.overlay(r, false, mixScript)
			s := compute(t, r)
			if err := r.Apply(s); err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if d := diffSnap(snapshot(t, want), snapshot(t, e.lower)); d != "" {
				t.Errorf("the real tree is not what the script makes:\n%s", d)
			}
			if left := e.leftovers(); len(left) != 0 {
				t.Errorf("left in the state dir: %v", left)
			}
			for _, l := range r.Layers {
				for _, p := range []string{l.Upper, l.Dir} {
					if _, err := os.Lstat(p); !os.IsNotExist(err) {
						t.Errorf("%s is still there (%v)", p, err)
					}
				}
			}
		})
	}
}

// placed makes an env whose workdir gets the given layer placement:
// the state dir's mount, a mount root's .execgate-changes (the workdir
// on a tmpfs below its root), or copy mode (the workdir is the tmpfs's
// root, so nothing on that mount lies outside it).
func placed(t *testing.T, placement string) *env {
	e := newEnv(t)
	switch placement {
	case "mount root":
		mnt := filepath.Join(e.dir, "mnt")
		tmpfs(t, mnt)
		e.lower = filepath.Join(mnt, "work")
		e.mkWorkdir(e.lower)
	case "copy":
		e.lower = filepath.Join(e.dir, "mnt")
		tmpfs(t, e.lower)
		if err := os.Chown(e.lower, agentUID, agentUID); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

func checkPlacement(t *testing.T, e *env, r *Run, placement string) {
	t.Helper()
	l := r.Layers[0]
	switch {
	case placement == "state dir" && (l.Copy || l.Dir != r.Dir),
		placement == "mount root" && (l.Copy || l.Dir != filepath.Join(e.dir, "mnt", rootDirName, r.ID)),
		placement == "copy" && (!l.Copy || l.Dir != r.Dir),
		l.Upper != filepath.Join(l.Dir, "0-upper") || l.Work != filepath.Join(l.Dir, "0-work"):
		t.Fatalf("%s: layer %+v", placement, l)
	}
	fi, err := os.Stat(l.Upper)
	if err != nil {
		t.Fatal(err)
	}
	wi, _ := os.Stat(e.lower)
	us, ws := fi.Sys().(*syscall.Stat_t), wi.Sys().(*syscall.Stat_t)
	if us.Mode != ws.Mode || us.Uid != ws.Uid || us.Gid != ws.Gid {
		t.Errorf("upper mode %o %d:%d, workdir %o %d:%d", us.Mode, us.Uid, us.Gid, ws.Mode, ws.Uid, ws.Gid)
	}
}

func TestApplyConflict(t *testing.T) {
	cases := []struct {
		name, setup, script, meanwhile string
		conflict                       []string // relative; nil: no conflict
	}{
		{"edited file", "echo a > f", "echo b > f", "echo c >> f", []string{"f"}},
		{"deleted file edited", "echo a > f", "rm f", "echo c >> f", []string{"f"}},
		{"created path appeared", "", "echo b > new", "echo c > new", []string{"new"}},
		{"parent replaced", "mkdir d", "echo x > d/x", "rm -rf d && mkdir d", []string{"d"}},
		{"file under a deleted dir edited", "mkdir d && echo a > d/a", "rm -rf d", "echo c >> d/a", []string{"d/a"}},
		{"file added under a deleted dir", "mkdir d && echo a > d/a", "rm -rf d", "echo c > d/new", []string{"d", "d/new"}},
		{"parent became a symlink", "mkdir d", "echo x > d/x", "mv d d2 && ln -s d2 d", []string{"d"}},
		{"sibling added: no conflict", "mkdir d && echo a > d/a", "echo x > d/x", "echo s > d/s && echo r > root", nil},
		{"edited before the run: no conflict", "echo a > f", "echo b > f", "", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.host(tc.setup)
			r := e.prepare("k1")
			e.overlay(r, false, tc.script)
			e.host(tc.meanwhile)
			before := snapshot(t, e.lower)
			s := compute(t, r)
			err := r.Apply(s)
			if tc.conflict == nil {
				if err != nil {
					t.Fatalf("Apply: %v", err)
				}
				return
			}
			var ce *ConflictError
			if !errors.As(err, &ce) {
				t.Fatalf("Apply: %v, want a conflict", err)
			}
			var want []string
			for _, p := range tc.conflict {
				want = append(want, filepath.Join(e.lower, p))
			}
			if strings.Join(ce.Paths, " ") != strings.Join(want, " ") {
				t.Errorf("conflicts %v, want %v", ce.Paths, want)
			}
			if d := diffSnap(before, snapshot(t, e.lower)); d != "" {
				t.Errorf("the real tree changed:\n%s", d)
			}
			if err := r.Discard(); err != nil {
				t.Fatal(err)
			}
			if left := e.leftovers(); len(left) != 0 {
				t.Errorf("left: %v", left)
			}
		})
	}
}

// crashAt makes Apply stop dead at one step, as a crash would.
func crashAt(t *testing.T, step string, n int) {
	applyHook = func(s string, i int) error {
		if s == step && i == n {
			return errCrash
		}
		return nil
	}
	t.Cleanup(func() { applyHook = nil })
}

// TestApplyCrash cuts an apply short at every step and checks that
// Recover rolls it back to exactly the old tree, or, once committed,
// finishes it to exactly the new one.
func TestApplyCrash(t *testing.T) {
	for _, placement := range []string{"state dir", "copy"} {
		t.Run(placement, func(t *testing.T) {
			e := placed(t, placement)
			e.host(mixSetup)
			want := e.copyTree("want")
			direct(t, want, false, mixScript)
			old := snapshot(t, e.lower)
			r := e.prepare("probe")
			e.overlay(r, false, mixScript)
			s := compute(t, r)
			ops, err := r.ops(s)
			if err != nil {
				t.Fatal(err)
			}
			if err := r.Discard(); err != nil {
				t.Fatal(err)
			}
			var steps [][2]any
			steps = append(steps, [2]any{"intent", 0})
			for i := 0; i < len(ops); i++ {
				if ops[i].Op == opSwap && ops[i].OldType != "" {
					steps = append(steps, [2]any{"aside", i})
				}
				steps = append(steps, [2]any{"op", i + 1})
			}
			steps = append(steps, [2]any{"committed", len(ops)})
			for _, st := range steps {
				crashOnce(t, e, st[0].(string), st[1].(int), old, snapshot(t, want))
			}
		})
	}
}

func crashOnce(t *testing.T, e *env, step string, n int, old, want map[string]string) {
	t.Helper()
	r := e.prepare("crash")
	e.overlay(r, false, mixScript)
	s := compute(t, r)
	crashAt(t, step, n)
	err := r.Apply(s)
	applyHook = nil
	if !errors.Is(err, errCrash) {
		t.Fatalf("%s %d: Apply: %v", step, n, err)
	}
	recs, err := Recover(e.state)
	if err != nil {
		t.Fatalf("%s %d: Recover: %v", step, n, err)
	}
	action, wantTree := "rolled back", old
	if step == "committed" {
		action, wantTree = "finished", want
	}
	if len(recs) != 1 || recs[0].Action != action || recs[0].RunID != "crash" {
		t.Errorf("%s %d: Recover: %+v, want %s", step, n, recs, action)
	}
	if d := diffSnap(wantTree, snapshot(t, e.lower)); d != "" {
		t.Fatalf("%s %d: after Recover the tree is not %s:\n%s", step, n, map[bool]string{true: "the new one", false: "the old one"}[step == "committed"], d)
	}
	if left := e.leftovers(); len(left) != 0 {
		t.Errorf("%s %d: left: %v", step, n, left)
	}
}

// An error in the middle of an apply rolls back in place.
func TestApplyFailureRollsBack(t *testing.T) {
	e := newEnv(t)
	e.host(mixSetup)
	old := snapshot(t, e.lower)
	r := e.prepare("f1")
	e.overlay(r, false, mixScript)
	s := compute(t, r)
	boom := errors.New("disk on fire")
	applyHook = func(step string, n int) error {
		if step == "op" && n == 4 {
			return boom
		}
		return nil
	}
	defer func() { applyHook = nil }()
	if err := r.Apply(s); !errors.Is(err, boom) {
		t.Fatalf("Apply: %v", err)
	}
	if d := diffSnap(old, snapshot(t, e.lower)); d != "" {
		t.Fatalf("not rolled back:\n%s", d)
	}
	applyHook = nil
	// Moving the old entries back changed their ctimes: no second try.
	if err := r.Apply(s); err == nil || !strings.Contains(err.Error(), "discard it") {
		t.Fatalf("Apply again: %v", err)
	}
	if err := r.Discard(); err != nil {
		t.Fatal(err)
	}
	if left := e.leftovers(); len(left) != 0 {
		t.Errorf("left: %v", left)
	}
}

func TestDiscard(t *testing.T) {
	t.Run("after a run with locked directories", func(t *testing.T) {
		e := newEnv(t)
		e.host("mkdir d && echo a > d/a")
		r := e.prepare("d1")
		e.overlay(r, false, "mkdir -p x/y && echo z > x/y/z && chmod 0 x/y x && echo b > d/b && chmod 0 d")
		if err := r.Discard(); err != nil {
			t.Fatal(err)
		}
		if left := e.leftovers(); len(left) != 0 {
			t.Errorf("left: %v", left)
		}
		if err := r.Discard(); err != nil {
			t.Errorf("a second Discard: %v", err)
		}
	})
	t.Run("immutable file", func(t *testing.T) {
		e := newEnv(t)
		r := e.prepare("d2")
		e.overlay(r, false, "echo x > f")
		f := filepath.Join(r.Layers[0].Upper, "f")
		run(t, "chattr", "+i", f)
		err := r.Discard()
		if err == nil || !strings.Contains(err.Error(), "chattr -ia "+f) || !strings.Contains(err.Error(), "immutable") {
			t.Fatalf("Discard: %v", err)
		}
		run(t, "chattr", "-i", f)
		if err := r.Discard(); err != nil {
			t.Fatal(err)
		}
		if left := e.leftovers(); len(left) != 0 {
			t.Errorf("left: %v", left)
		}
	})
}

func TestRecoverRemovesIdleRuns(t *testing.T) {
	e := placed(t, "mount root")
	r := e.prepare("idle")
	e.overlay(r, false, "echo x > f")
	// a run directory without a manifest (a crash inside Prepare)
	if err := os.Mkdir(filepath.Join(e.state, changesDir, "torn"), 0o700); err != nil {
		t.Fatal(err)
	}
	recs, err := Recover(e.state)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || recs[0].Action != "removed" || recs[1].Action != "removed" {
		t.Errorf("Recover: %+v", recs)
	}
	if left := e.leftovers(); len(left) != 0 {
		t.Errorf("left: %v", left)
	}
	root := filepath.Join(e.dir, "mnt", rootDirName)
	if ents, _ := os.ReadDir(root); len(ents) != 0 {
		t.Errorf("left in %s: %v", root, ents)
	}
	if _, err := os.Lstat(filepath.Join(e.lower, "f")); !os.IsNotExist(err) {
		t.Errorf("the run's file reached the real tree: %v", err)
	}
}

func TestPrepareRefuses(t *testing.T) {
	e := newEnv(t)
	tmpfs(t, filepath.Join(e.lower, "cache"))
	if _, err := Prepare(e.state, "p1", []string{e.lower}); err == nil || !strings.Contains(err.Error(), "mount point") {
		t.Errorf("a workdir holding a mount: %v", err)
	}
	if _, err := Prepare(e.state, "../x", []string{e.dir}); err == nil {
		t.Error("a run id with a slash was accepted")
	}
	if left := e.leftovers(); len(left) != 0 {
		t.Errorf("left: %v", left)
	}
	// The workdir is its mount's root, and the state dir lies inside it:
	// no place on that mount is outside the lower layer.
	mnt := filepath.Join(e.dir, "mnt")
	tmpfs(t, mnt)
	inner := filepath.Join(mnt, "state")
	if _, err := Prepare(inner, "p2", []string{mnt}); err == nil || !strings.Contains(err.Error(), "inside the workdir") {
		t.Errorf("a state dir inside the workdir: %v", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(inner, changesDir)); len(ents) != 0 {
		t.Errorf("left: %v", ents)
	}
}

// Recover also removes a root's run that no manifest lists any more.
func TestRecoverSweepsRoots(t *testing.T) {
	e := placed(t, "mount root")
	a, b := e.prepare("ra"), e.prepare("rb")
	e.overlay(b, false, "echo x > f")
	if err := os.RemoveAll(b.Dir); err != nil {
		t.Fatal(err)
	}
	recs, err := Recover(e.state)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || recs[0].RunID != a.ID || recs[1].RunID != b.ID || recs[1].Action != "removed" {
		t.Errorf("Recover: %+v", recs)
	}
	if ents, _ := os.ReadDir(filepath.Join(e.dir, "mnt", rootDirName)); len(ents) != 0 {
		t.Errorf("left in the root: %v", ents)
	}
}

func TestPrepareNestedWorkdirs(t *testing.T) {
	e := newEnv(t)
	e.host("mkdir -p sub/deeper")
	r, err := Prepare(e.state, "n1", []string{filepath.Join(e.lower, "sub"), e.lower, e.lower + "/sub/deeper"})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Discard()
	if len(r.Layers) != 1 || r.Layers[0].Lower != e.lower {
		t.Errorf("layers %+v", r.Layers)
	}
}

// Two workdirs: two layers, one set, one apply.
func TestApplyTwoWorkdirs(t *testing.T) {
	e := newEnv(t)
	other := filepath.Join(e.dir, "other")
	e.mkWorkdir(other)
	r, err := Prepare(e.state, "w2", []string{e.lower, other})
	if err != nil {
		t.Fatal(err)
	}
	e.overlay(r, false, "echo a > a && echo b > "+quote(other)+"/b")
	s := compute(t, r)
	// Layers come in the order of the workdirs' sorted paths.
	if got := describe(s); strings.Join(got, ",") != "created file b,created file a" || r.Layers[0].Lower != other ||
		s.Changes[0].Abs != filepath.Join(other, "b") || s.Changes[1].Layer != 1 {
		t.Fatalf("changes %v", got)
	}
	if err := r.Apply(s); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(e.lower, "a"), filepath.Join(other, "b")} {
		if _, err := os.Stat(p); err != nil {
			t.Error(err)
		}
	}
	if left := e.leftovers(); len(left) != 0 {
		t.Errorf("left: %v", left)
	}
}
