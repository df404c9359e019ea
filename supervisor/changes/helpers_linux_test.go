package changes

import (
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestMain doubles as a small tool the tests run inside an overlay
// (EXECGATE_CHANGES_TOOL): what sh alone cannot do.
func TestMain(m *testing.M) {
	if tool := os.Getenv("EXECGATE_CHANGES_TOOL"); tool != "" {
		if err := runTool(tool, os.Args[1:]); err != nil {
			fmt.Fprintln(os.Stderr, tool+":", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func runTool(tool string, args []string) error {
	switch tool {
	case "setxattr": // PATH NAME VALUE
		return unix.Lsetxattr(args[0], args[1], []byte(args[2]), 0)
	case "write": // DIR FILES SIZE DIRS: FILES files of SIZE bytes spread over DIRS subdirectories
		n, _ := strconv.Atoi(args[1])
		size, _ := strconv.Atoi(args[2])
		dirs, _ := strconv.Atoi(args[3])
		return writeFiles(args[0], n, size, dirs)
	case "rename-exdev": // OLD NEW: succeeds only if rename(2) fails with EXDEV
		if err := unix.Rename(args[0], args[1]); err != unix.EXDEV {
			return fmt.Errorf("rename: %v, want EXDEV", err)
		}
		return nil
	case "mountbench": // OPTIONS LOWER N: the median time of an overlay mount
		n, _ := strconv.Atoi(args[2])
		d, err := mountBench(args[0], args[1], n)
		if err == nil {
			fmt.Print(d)
		}
		return err
	}
	return fmt.Errorf("unknown tool")
}

func writeFiles(dir string, n, size, dirs int) error {
	buf := make([]byte, size)
	for i := range buf {
		buf[i] = byte('a' + i%26)
	}
	for i := 0; i < n; i++ {
		sub := filepath.Join(dir, fmt.Sprintf("d%03d", i%dirs))
		if err := os.MkdirAll(sub, 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(sub, fmt.Sprintf("f%05d", i)), buf, 0o644); err != nil {
			return err
		}
	}
	return nil
}

const agentUID = 65534 // nobody: the run writes as an unprivileged uid

func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("needs root: overlayfs, mount namespaces and ownership are tested for real (make test runs as root)")
	}
}

// env is a workdir and a state dir in a fresh temporary directory that
// the agent uid can reach.
type env struct {
	t     testing.TB
	dir   string
	lower string
	state string
}

func newEnv(t testing.TB) *env {
	t.Helper()
	needRoot(t)
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	e := &env{t: t, dir: dir, lower: filepath.Join(dir, "work"), state: filepath.Join(dir, "state")}
	e.mkWorkdir(e.lower)
	return e
}

func (e *env) mkWorkdir(p string) {
	e.t.Helper()
	if err := os.Mkdir(p, 0o755); err != nil {
		e.t.Fatal(err)
	}
	if err := os.Chown(p, agentUID, agentUID); err != nil {
		e.t.Fatal(err)
	}
}

// host runs script in the real workdir as the agent.
func (e *env) host(script string) string {
	e.t.Helper()
	if script == "" {
		return ""
	}
	return run(e.t, "setpriv", "--reuid", fmt.Sprint(agentUID), "--regid", fmt.Sprint(agentUID), "--clear-groups",
		"sh", "-ec", "cd "+quote(e.lower)+" && "+script)
}

// overlay runs script in the run's overlays, in a mount namespace of its
// own (the host never sees the mounts), as the agent or as root.
func (e *env) overlay(r *Run, asRoot bool, script string) {
	e.t.Helper()
	overlayRun(e.t, r, asRoot, e.lower, script, nil)
}

func overlayRun(t testing.TB, r *Run, asRoot bool, cwd, script string, env []string) {
	t.Helper()
	var b strings.Builder
	for _, l := range r.Layers {
		fmt.Fprintf(&b, "mount -t overlay overlay -o %s %s && ", quote(l.MountOptions()), quote(l.Lower))
	}
	user := ""
	if !asRoot {
		user = fmt.Sprintf("setpriv --reuid %d --regid %d --clear-groups ", agentUID, agentUID)
	}
	fmt.Fprintf(&b, "cd %s && exec %ssh -ec %s", quote(cwd), user, quote(script))
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-ec", b.String())
	cmd.Env = append(append(os.Environ(), "HOME=/tmp", "EXE="+os.Args[0]), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("in the overlay: %s: %v\n%s", script, err, out)
	}
}

func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "HOME=/tmp")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func (e *env) prepare(id string) *Run {
	e.t.Helper()
	// A change made in the same clock tick just before Prepare reads as
	// made at the start (a conflict, on the safe side): the tests' own
	// set-up must not be.
	time.Sleep(10 * time.Millisecond)
	r, err := Prepare(e.state, id, []string{e.lower})
	if err != nil {
		e.t.Fatalf("Prepare: %v", err)
	}
	return r
}

func compute(t testing.TB, r *Run) *Set {
	t.Helper()
	s, err := r.Compute()
	if err != nil {
		t.Fatalf("Compute: %v", err)
	}
	return s
}

// snapshot describes a tree: type, mode, owner and content or target of
// every entry (times and inode numbers aside).
func snapshot(t testing.TB, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		st := fi.Sys().(*syscall.Stat_t)
		desc := fmt.Sprintf("%s %04o %d:%d", fi.Mode().Type(), st.Mode&0o7777, st.Uid, st.Gid)
		switch {
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			desc += fmt.Sprintf(" %x", sha256.Sum256(b))
		case fi.Mode()&os.ModeSymlink != 0:
			tgt, _ := os.Readlink(p)
			desc += " -> " + tgt
		}
		out[rel] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func diffSnap(a, b map[string]string) string {
	var keys []string
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var d strings.Builder
	for _, k := range keys {
		if a[k] != b[k] {
			fmt.Fprintf(&d, "  %s: %q != %q\n", k, a[k], b[k])
		}
	}
	return d.String()
}

// copyTree copies the workdir for an oracle: the same script run on the
// copy directly gives the tree an apply must produce.
func (e *env) copyTree(name string) string {
	e.t.Helper()
	dst := filepath.Join(e.dir, name)
	run(e.t, "cp", "-a", e.lower, dst)
	return dst
}

func direct(t testing.TB, dir string, asRoot bool, script string) {
	t.Helper()
	args := []string{"sh", "-ec", "cd " + quote(dir) + " && " + script}
	if !asRoot {
		args = append([]string{"setpriv", "--reuid", fmt.Sprint(agentUID), "--regid", fmt.Sprint(agentUID), "--clear-groups"}, args...)
	}
	run(t, args[0], args[1:]...)
}

// describe lists a set as "kind type path" lines, "+" marking implied
// paths.
func describe(s *Set) []string {
	var out []string
	for _, c := range s.Changes {
		typ := c.Type
		if c.Kind == Deleted {
			typ = c.OldType
		}
		line := fmt.Sprintf("%s %s %s", c.Kind, typ, c.Path)
		if c.Implied {
			line = "+" + line
		}
		out = append(out, line)
	}
	return out
}

// leftovers lists what is left under the state dir's changes/.
func (e *env) leftovers() []string {
	ents, err := os.ReadDir(filepath.Join(e.state, changesDir))
	if err != nil && !os.IsNotExist(err) {
		e.t.Fatal(err)
	}
	var out []string
	for _, d := range ents {
		out = append(out, d.Name())
	}
	return out
}

// tmpfs mounts a tmpfs for the test on the host (another mount, for the
// root and copy placements) and unmounts it at the end.
func tmpfs(t testing.TB, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "mode=0755,size=64m"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
}
