package sandbox

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/execgate/execgate/pathglob"
)

const python3 = "/usr/bin/python3"

func needPython(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(python3); err != nil {
		t.Skipf("no %s: %v", python3, err)
	}
}

// runErr runs spec and returns its error and everything it printed.
func runErr(r *Runner, spec Spec) (Result, string, error) {
	var out syncBuffer
	spec.Stdout, spec.Stderr = &out, &out
	res, err := r.Run(context.Background(), spec)
	return res, out.String(), err
}

// A path component swapped between the daemon's plan and the init's mount
// (by another process of the agent: here, the OnStart hook, which runs
// after planning and before the init reads its config) must not move a
// read_only bind or a mask off the inode it was planned for.
func TestMountTargetSwapped(t *testing.T) {
	r := newRunner(t)
	const (
		secret  = "API_KEY=sw4pped-s3cret"
		orig    = "original protected content\n"
		decoyRO = "decoy file\n"
	)
	type layout struct{ d, x, sub, real, decoy string }
	setup := func(t *testing.T) layout {
		d := workdir(t)
		l := layout{d: d, x: filepath.Join(d, "X"), sub: filepath.Join(d, "X", "sub"),
			real: filepath.Join(d, "X", "real"), decoy: filepath.Join(d, "decoy")}
		writeFile(t, filepath.Join(l.sub, "file"), orig, 0o644)
		writeFile(t, filepath.Join(l.sub, ".env"), secret+"\n", 0o644)
		writeFile(t, filepath.Join(l.sub, "other.txt"), "unprotected\n", 0o644)
		writeFile(t, filepath.Join(l.decoy, "file"), decoyRO, 0o644)
		writeFile(t, filepath.Join(l.decoy, ".env"), "DECOY=1\n", 0o644)
		for _, p := range []string{l.x, l.sub, l.decoy} {
			os.Chown(p, agentUID, agentGID)
		}
		return l
	}
	// What the agent would do once it runs: write the read_only file and
	// read the secret, wherever the swap put them.
	const script = `
echo RAN
echo evil > X/sub/file || echo WRITE-REFUSED
cat X/sub/.env X/real/.env 2>/dev/null
{ echo evil > X/real/file; } 2>/dev/null
echo changed > X/sub/other.txt && cat X/sub/other.txt
echo "inode $(stat -c %i X/sub/file)"
echo "envsize $(wc -c < X/sub/.env)"`
	spec := func(t *testing.T, l layout, swap func()) Spec {
		s := newSpec(t, l.d, script)
		s.ReadOnly = []string{filepath.Join(l.sub, "file")}
		set, err := pathglob.NewSet([]string{"**/.env"}, l.d)
		if err != nil {
			t.Fatal(err)
		}
		s.DenyRead, s.DenyReadPatterns = set, []string{"**/.env"}
		s.WalkRoots = []string{l.x} // not the decoy: it is not a secret
		if swap != nil {
			s.OnStart = func(int, string) error { swap(); return nil }
		}
		return s
	}
	// The protected file is at X/sub/file, or at X/real/file once the swap
	// moved it; what the swap put at X/sub is the decoy's.
	protected := func(t *testing.T, l layout, out string) {
		t.Helper()
		p := filepath.Join(l.real, "file")
		if _, err := os.Stat(p); err != nil {
			p = filepath.Join(l.sub, "file")
		} else if b, _ := os.ReadFile(filepath.Join(l.sub, "file")); string(b) != decoyRO {
			t.Errorf("decoy changed: %q", b)
		}
		if b, err := os.ReadFile(p); err != nil || string(b) != orig {
			t.Errorf("%s changed: %q %v", p, b, err)
		}
		if strings.Contains(out, "sw4pped") {
			t.Errorf("secret leaked:\n%s", out)
		}
	}

	t.Run("unchanged", func(t *testing.T) {
		// The allowed half: without a swap the run starts, the read_only
		// file is the same inode and read-only, the secret reads empty and
		// the unprotected sibling behaves normally.
		l := setup(t)
		var st unix.Stat_t
		if err := unix.Stat(filepath.Join(l.sub, "file"), &st); err != nil {
			t.Fatal(err)
		}
		var info StartInfo
		s := spec(t, l, nil)
		s.StartInfo = &info
		res, out, err := runErr(r, s)
		if err != nil {
			t.Fatalf("run: %v\n%s", err, out)
		}
		for _, want := range []string{"RAN", "WRITE-REFUSED", "changed\n", "inode " + strconv.FormatUint(st.Ino, 10) + "\n", "envsize 0\n"} {
			if !strings.Contains(out, want) {
				t.Errorf("missing %q:\n%s", want, out)
			}
		}
		protected(t, l, out)
		if b, _ := os.ReadFile(filepath.Join(l.sub, "other.txt")); string(b) != "changed\n" {
			t.Errorf("unprotected file not written: %q", b)
		}
		if info.Masked != 1 || info.MaskCut || len(res.Masked) != 1 {
			t.Errorf("StartInfo %+v, Masked %v", info, res.Masked)
		}
	})

	cases := []struct {
		name, want string
		swap       func(l layout) error
	}{
		{"sub becomes a symlink", "read_only " + "%s/X/sub/file: a component of the path became a symlink",
			func(l layout) error {
				if err := os.Rename(l.sub, l.real); err != nil {
					return err
				}
				return os.Symlink(l.decoy, l.sub)
			}},
		{"sub is replaced by another directory", "read_only %s/X/sub/file: not the file the daemon checked",
			func(l layout) error {
				if err := os.Rename(l.sub, l.real); err != nil {
					return err
				}
				return os.Rename(l.decoy, l.sub)
			}},
		{"the secret is moved away", "deny_read %s/X/sub/.env: changed after the daemon checked it (no such file or directory)",
			func(l layout) error { return os.Rename(filepath.Join(l.sub, ".env"), filepath.Join(l.sub, "moved")) }},
		{"the secret is replaced by a symlink", "deny_read %s/X/sub/.env: a component of the path became a symlink",
			func(l layout) error {
				if err := os.Rename(filepath.Join(l.sub, ".env"), filepath.Join(l.sub, "moved")); err != nil {
					return err
				}
				return os.Symlink(filepath.Join(l.decoy, ".env"), filepath.Join(l.sub, ".env"))
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l := setup(t)
			var swapErr error
			res, out, err := runErr(r, spec(t, l, func() { swapErr = c.swap(l) }))
			if swapErr != nil {
				t.Fatal(swapErr)
			}
			want := strings.ReplaceAll(c.want, "%s", l.d)
			if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "refusing to run") {
				t.Errorf("want a refusal with %q, got %v\n%s", want, err, out)
			}
			if strings.Contains(out, "RAN") {
				t.Errorf("the script ran:\n%s", out)
			}
			protected(t, l, out)
			if res.Pid == 0 {
				t.Error("refused before the init started: the swap was not between plan and mount")
			}
		})
	}
}

// openTarget itself, without mounting: the same inode opens, anything else
// is refused with a clear error.
func TestOpenTarget(t *testing.T) {
	d := varTmp(t)
	sub := filepath.Join(d, "a", "sub")
	os.MkdirAll(sub, 0o755)
	os.WriteFile(filepath.Join(sub, "f"), []byte("x"), 0o644)
	os.MkdirAll(filepath.Join(d, "b"), 0o755)
	os.WriteFile(filepath.Join(d, "b", "f"), []byte("y"), 0o644)
	root, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(root)
	tgt, isDir, err := statTarget(root, filepath.Join(sub, "f"))
	if err != nil || isDir {
		t.Fatalf("statTarget: %v dir %v", err, isDir)
	}
	fd, err := openTarget(root, "read_only", tgt)
	if err != nil {
		t.Fatalf("unchanged: %v", err)
	}
	unix.Close(fd)
	if dt, isDir, err := statTarget(root, "/"); err != nil || !isDir {
		t.Errorf("statTarget(/): %v %v", err, isDir)
	} else if fd, err := openTarget(root, "read_only", dt); err != nil {
		t.Errorf("openTarget(/): %v", err)
	} else {
		unix.Close(fd)
	}
	// A symlink in an ancestor, and in the target itself.
	os.Rename(sub, sub+".orig")
	os.Symlink(filepath.Join(d, "b"), sub)
	if _, err := openTarget(root, "read_only", tgt); err == nil || !strings.Contains(err.Error(), "became a symlink") {
		t.Errorf("symlinked ancestor: %v", err)
	}
	os.Remove(sub)
	os.Rename(sub+".orig", sub)
	os.Rename(filepath.Join(sub, "f"), filepath.Join(sub, "f.orig"))
	os.Symlink(filepath.Join(sub, "f.orig"), filepath.Join(sub, "f"))
	if _, err := openTarget(root, "deny_read", tgt); err == nil || !strings.Contains(err.Error(), "deny_read "+tgt.Path+": a component of the path became a symlink") {
		t.Errorf("symlinked target: %v", err)
	}
	// A different inode at the same path.
	os.Remove(filepath.Join(sub, "f"))
	os.WriteFile(filepath.Join(sub, "f"), []byte("x"), 0o644)
	if _, err := openTarget(root, "read_only", tgt); err == nil || !strings.Contains(err.Error(), "not the file the daemon checked") {
		t.Errorf("replaced target: %v", err)
	}
	// Magic links are not followed either.
	if _, err := openNoSymlinks(root, "/proc/self/cwd"); !errors.Is(err, unix.ELOOP) {
		t.Errorf("/proc/self/cwd: %v", err)
	}
}

// deepTree makes depth nested directories under d and returns the last.
func deepTree(t *testing.T, d string, depth int) string {
	p := d
	for i := 1; i <= depth; i++ {
		p = filepath.Join(p, "l"+strconv.Itoa(i))
	}
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// The script that hunts for the secret without naming it literally, so no
// static check could see it.
const huntSecret = `echo RAN
` + python3 + ` -c '
import os
name = "." + "e" + "nv"
for top, dirs, files in os.walk("."):
    if name in files:
        p = os.path.join(top, name)
        print("found", p, repr(open(p).read()))
'`

// No bound fails open: a .env deeper than the walk's depth bound, or past
// its entry bound, refuses the run; within the bounds it is masked.
func TestMaskWalkBoundsRefuse(t *testing.T) {
	needPython(t)
	r := newRunner(t) // the default bounds: 20000 entries, depth 16
	const secret = "DEEP_SECRET=d33p-v4lue"
	set, err := pathglob.NewSet([]string{"**/.env", "~/.ssh"}, "/nonexistent-home")
	if err != nil {
		t.Fatal(err)
	}
	run := func(t *testing.T, d string) (Result, StartInfo, bool, string, error) {
		s := newSpec(t, d, huntSecret)
		s.DenyRead, s.DenyReadPatterns = set, []string{"**/.env", "~/.ssh"}
		s.Home = "/nonexistent-home"
		var info StartInfo
		started := false
		s.StartInfo = &info
		s.OnStart = func(int, string) error { started = true; return nil }
		res, out, err := runErr(r, s)
		if strings.Contains(out, "d33p") {
			t.Errorf("secret printed:\n%s", out)
		}
		return res, info, started, out, err
	}

	t.Run("depth 20", func(t *testing.T) {
		d := workdir(t)
		writeFile(t, filepath.Join(deepTree(t, d, 19), ".env"), secret+"\n", 0o644) // the 20th level
		res, _, started, out, err := run(t, d)
		want := `deny_read "**/.env": walk of ` + d + ` stopped at depth 16 (bound): ` + filepath.Join(deepTree(t, d, 16), "l17") + ` not searched; refusing to run`
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want %q\ngot %v", want, err)
		}
		if started || strings.Contains(out, "RAN") || !res.MaskCut {
			t.Errorf("refused run started (OnStart %v, MaskCut %v):\n%s", started, res.MaskCut, out)
		}
	})

	t.Run("wider than the entry bound", func(t *testing.T) {
		d := workdir(t)
		wide := filepath.Join(d, "wide")
		os.MkdirAll(wide, 0o755)
		// On a tmpfs: creating 20,000 files on this disk takes seconds.
		if err := unix.Mount("tmpfs", wide, "tmpfs", 0, "mode=0755"); err != nil {
			t.Fatalf("mount test tmpfs: %v", err)
		}
		t.Cleanup(func() { unix.Unmount(wide, unix.MNT_DETACH) })
		for i := 0; i < 20050; i++ {
			fd, err := unix.Open(filepath.Join(wide, "f"+strconv.Itoa(i)), unix.O_CREAT|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			unix.Close(fd)
		}
		writeFile(t, filepath.Join(wide, "zz", ".env"), secret+"\n", 0o644)
		res, _, started, out, err := run(t, d)
		want := `deny_read "**/.env": walk of ` + d + ` stopped after 20000 entries (bound) in ` + wide + `; refusing to run`
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want %q\ngot %v", want, err)
		}
		if started || strings.Contains(out, "RAN") || !res.MaskCut {
			t.Errorf("refused run started (OnStart %v, MaskCut %v):\n%s", started, res.MaskCut, out)
		}
	})

	t.Run("within the bounds", func(t *testing.T) {
		d := workdir(t)
		env := filepath.Join(deepTree(t, d, 16), ".env") // 17 levels: the deepest the walk reads
		writeFile(t, env, secret+"\n", 0o644)
		writeFile(t, filepath.Join(d, ".env"), secret+"-top\n", 0o644)
		res, info, started, out, err := run(t, d)
		if err != nil {
			t.Fatalf("run: %v\n%s", err, out)
		}
		if !started || res.MaskCut || info.MaskCut || info.Masked != 2 || len(res.Masked) != 2 {
			t.Errorf("OnStart %v, MaskCut %v, StartInfo %+v, Masked %v", started, res.MaskCut, info, res.Masked)
		}
		// Both found by the hunt, both empty.
		if !strings.Contains(out, "RAN") || strings.Count(out, "found ") != 2 || strings.Count(out, "''") != 2 {
			t.Errorf("want both masked files found empty:\n%s", out)
		}
	})
}

// /proc is read-only in the run: no process can write its own or another's
// memory through /proc/PID/mem; ordinary use of /proc, and writes to a
// file through /proc/self/fd/N, still work.
func TestProcReadOnly(t *testing.T) {
	needPython(t)
	r := newRunner(t)
	d := workdir(t)
	res, out, errs := runIt(t, r, newSpec(t, d, `
`+python3+` -c '
import errno, subprocess
def try_write(what, path):
    try:
        with open(path, "r+b", buffering=0) as f:
            f.seek(0)
            f.write(b"x")
        print(what, "WRITABLE")
    except OSError as e:
        print(what, "REFUSED", errno.errorcode.get(e.errno, e.errno))
try_write("self", "/proc/self/mem")
child = subprocess.Popen(["sleep", "30"])
try_write("child", "/proc/%d/mem" % child.pid)
child.kill()
child.wait()
'
exec 3>f3.txt
echo fd-ok > /proc/self/fd/3 && cat f3.txt
echo file-ok > f.txt && cat f.txt
grep -c '^Pid:' /proc/self/status | sed 's/^/status /'
echo x > /proc/self/comm 2>/dev/null || echo COMM-REFUSED
awk '$5 == "/proc" { print "proc opts", $6 }' /proc/self/mountinfo`))
	if res.Exit != 0 {
		t.Errorf("exit %d:\n%s\n%s", res.Exit, out, errs)
	}
	for _, want := range []string{"self REFUSED EROFS", "child REFUSED EROFS", "fd-ok\n", "file-ok\n",
		"status 1\n", "COMM-REFUSED", "proc opts ro,"} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q:\n%s\nstderr:\n%s", want, out, errs)
		}
	}
	if strings.Contains(out, "WRITABLE") {
		t.Errorf("/proc/PID/mem writable:\n%s", out)
	}
}
