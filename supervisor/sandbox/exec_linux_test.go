package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/execgate/execgate/supervisor/execwatch"
)

// The exec check sees every exec of the run, the shell's own first, and a
// refusal keeps the program from running while the rest of the script goes
// on.
func TestExecCheck(t *testing.T) {
	r := newRunner(t)
	dir := workdir(t)
	var mu sync.Mutex
	var seen []string
	spec := newSpec(t, dir, `/bin/echo allowed; git --version; echo "git=$?"; ln -s /usr/bin/git g; ./g --version; echo "link=$?"; cp /bin/true ./t; ./t; echo "copy=$?"`)
	spec.ExecCheck = execwatch.DecideFunc(func(_ context.Context, e *execwatch.Exec) error {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, e.Resolved)
		if filepath.Base(e.Resolved) == "git" {
			return errors.New("no git")
		}
		return nil
	})
	res, out, _ := runIt(t, r, spec)
	if res.Exit != 0 {
		t.Fatalf("exit %d: %s", res.Exit, out)
	}
	for _, want := range []string{"allowed\n", "git=126", "link=126", "copy=0"} {
		if !strings.Contains(out, want) {
			t.Errorf("output %q lacks %q", out, want)
		}
	}
	if strings.Contains(out, "git version") {
		t.Errorf("git ran: %q", out)
	}
	if len(seen) == 0 || seen[0] != spec.Shell && !strings.HasSuffix(seen[0], "/dash") && !strings.HasSuffix(seen[0], "/bash") {
		t.Errorf("the first exec must be the shell itself: %q", seen)
	}
	// The copy runs from the run's own view of the workdir.
	if !containsSuffix(seen, filepath.Join(dir, "t")) {
		t.Errorf("copied binary not seen under its path: %q", seen)
	}
}

func containsSuffix(xs []string, s string) bool {
	for _, x := range xs {
		if strings.HasSuffix(x, s) {
			return true
		}
	}
	return false
}

// A program in the run's private /tmp is resolved in the run's mount
// namespace, not the daemon's.
func TestExecCheckPrivateTmp(t *testing.T) {
	r := newRunner(t)
	dir := workdir(t)
	// A name of this test's own: a /tmp/x someone else left on the host
	// would otherwise read as a leak.
	name := fmt.Sprintf("/tmp/execgate-privtmp-%d", os.Getpid())
	if _, err := os.Lstat(name); err == nil {
		t.Fatalf("%s exists on the host before the run", name)
	}
	var got string
	spec := newSpec(t, dir, `cp /bin/true `+name+` && `+name+` && echo ran`)
	spec.ExecCheck = execwatch.DecideFunc(func(_ context.Context, e *execwatch.Exec) error {
		if e.Path == name {
			got = e.Resolved
		}
		return nil
	})
	_, out, _ := runIt(t, r, spec)
	if got != name || !strings.Contains(out, "ran") {
		t.Errorf("resolved %q, output %q", got, out)
	}
	if _, err := os.Lstat(name); err == nil {
		os.Remove(name)
		t.Error("the run's /tmp leaked to the host")
	}
}

// OnStart runs before any agent code; its error aborts the run.
func TestOnStart(t *testing.T) {
	r := newRunner(t)
	dir := workdir(t)
	spec := newSpec(t, dir, `touch ran`)
	var pid int
	var cg string
	spec.OnStart = func(p int, c string) error { pid, cg = p, c; return errors.New("audit is down") }
	if _, err := r.Run(withTimeout(t, 30e9), spec); err == nil || !strings.Contains(err.Error(), "audit is down") {
		t.Fatalf("Run: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "ran")); err == nil {
		t.Error("the script ran although OnStart refused")
	}
	if pid <= 0 || !strings.Contains(cg, spec.ID) {
		t.Errorf("OnStart got pid %d cgroup %q", pid, cg)
	}
	spec = newSpec(t, dir, `touch ran`)
	called := false
	spec.OnStart = func(int, string) error { called = true; return nil }
	runIt(t, r, spec)
	if _, err := os.Stat(filepath.Join(dir, "ran")); err != nil || !called {
		t.Errorf("with OnStart nil error the script must run (called=%v): %v", called, err)
	}
}
