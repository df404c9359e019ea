package execwatch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The test binary doubles as the watched process: in child mode it loads
// the filter, hands the listener to the parent over fd 3, and then runs
// what EXECWATCH_CHILD says.
func TestMain(m *testing.M) {
	if mode := os.Getenv("EXECWATCH_CHILD"); mode != "" {
		os.Exit(child(mode))
	}
	os.Exit(m.Run())
}

func child(mode string) int {
	runtime.LockOSThread()
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		fmt.Println("nnp:", err)
		return 2
	}
	prog, err := Filter()
	if err != nil {
		fmt.Println(err)
		return 2
	}
	fd, err := Install(prog)
	if err != nil {
		fmt.Println(err)
		return 2
	}
	if err := SendFD(3, fd); err != nil {
		fmt.Println(err)
		return 2
	}
	unix.Close(fd)
	unix.Close(3)
	switch mode {
	case "sh":
		// A grandchild of the test, as the daemon's runs are: a traced
		// child's exec stop would also be reported to the test's own Wait
		// (the tracer and the parent are one thread group).
		cmd := exec.Command("/bin/sh", "-c", os.Getenv("EXECWATCH_SCRIPT"))
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			if _, ok := err.(*exec.ExitError); !ok {
				fmt.Println("exec sh:", err)
				return 2
			}
		}
		return 0
	case "memfd":
		mfd, _ := unix.MemfdCreate("payload", 0)
		b, _ := os.ReadFile("/bin/true")
		unix.Write(mfd, b)
		empty, _ := unix.BytePtrFromString("")
		argv0, _ := unix.BytePtrFromString("true")
		argv := []*byte{argv0, nil}
		envp := []*byte{nil}
		_, _, errno := unix.Syscall6(unix.SYS_EXECVEAT, uintptr(mfd), uintptr(unsafe.Pointer(empty)),
			uintptr(unsafe.Pointer(&argv[0])), uintptr(unsafe.Pointer(&envp[0])), unix.AT_EMPTY_PATH, 0)
		fmt.Println("memfd exec:", errno.Error())
		return 0
	case "go-execs":
		// A Go program's execs are interrupted by its own preemption
		// signals (SIGURG); they must not restart forever.
		for i := 0; i < 5; i++ {
			if err := exec.Command("/bin/true").Run(); err != nil {
				fmt.Println("exec:", err)
			}
		}
		fmt.Println("done")
		return 0
	case "long-argv":
		args := make([]string, MaxArgs+10)
		for i := range args {
			args[i] = "x"
		}
		err := syscall.Exec("/bin/true", append([]string{"true"}, args...), nil)
		fmt.Println("long exec:", err)
		return 0
	}
	return 2
}

type seen struct {
	mu    sync.Mutex
	execs []*Exec
}

func (s *seen) add(e *Exec) {
	s.mu.Lock()
	s.execs = append(s.execs, e)
	s.mu.Unlock()
}

func (s *seen) resolved() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, e := range s.execs {
		out = append(out, e.Resolved)
	}
	return out
}

// watched runs the test binary in child mode under Watch with decide, and
// returns its combined output.
func watched(t *testing.T, mode, script string, decide func(*Exec) error) string {
	return watchedBy(t, mode, script, DecideFunc(func(_ context.Context, e *Exec) error { return decide(e) }))
}

// watchedBy is watched with a whole Checker.
func watchedBy(t *testing.T, mode, script string, c Checker) string {
	t.Helper()
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	theirs := os.NewFile(uintptr(pair[1]), "child-end")
	defer theirs.Close()
	defer unix.Close(pair[0])
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "EXECWATCH_CHILD="+mode, "EXECWATCH_SCRIPT="+script)
	cmd.ExtraFiles = []*os.File{theirs}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	theirs.Close()
	listener, err := RecvFD(pair[0])
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("%v (child said %q)", err, out.String())
	}
	defer listener.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- Watch(ctx, listener, c) }()
	cmd.Wait()
	if err := <-done; err != nil {
		t.Fatalf("Watch: %v", err)
	}
	return out.String()
}

func TestAllowAndDeny(t *testing.T) {
	var s seen
	deny := func(e *Exec) error {
		s.add(e)
		if filepath.Base(e.Resolved) == "git" {
			return errors.New("no git")
		}
		return nil
	}
	out := watched(t, "sh", `/bin/echo hi; git --version; echo "rc=$?"; /bin/true; /nonexistent/x; echo "missing=$?"`, deny)
	if !strings.Contains(out, "hi\n") || !strings.Contains(out, "rc=126") || strings.Contains(out, "git version") || !strings.Contains(out, "missing=127") {
		t.Errorf("output %q: want echo to run and git to be refused", out)
	}
	got := strings.Join(s.resolved(), " ")
	for _, want := range []string{"/usr/bin/dash", "/usr/bin/echo", "/usr/bin/git", "/usr/bin/true"} {
		if !strings.Contains(got, want) {
			t.Errorf("saw %q, missing %s", got, want)
		}
	}
}

func TestResolveInCallersNamespace(t *testing.T) {
	dir := t.TempDir()
	os.Symlink("/usr/bin/git", filepath.Join(dir, "g"))
	var s seen
	var argv []string
	out := watched(t, "sh", "cd "+dir+" && ./g --version >/dev/null; PATH="+dir+":$PATH g status 2>/dev/null; exit 0", func(e *Exec) error {
		s.add(e)
		if e.Path == "./g" || strings.HasSuffix(e.Path, "/g") {
			argv = e.Argv
			if e.Resolved != "/usr/bin/git" || e.Alias != "" || e.Cwd != dir {
				t.Errorf("exec %q: resolved %q alias %q cwd %q", e.Path, e.Resolved, e.Alias, e.Cwd)
			}
		}
		return nil
	})
	if argv == nil {
		t.Fatalf("the symlink's execs were not seen (%q): %q", out, s.resolved())
	}
	// /bin/sh is a root-owned link to dash: its name is a trusted alias.
	for _, e := range s.execs {
		if e.Path == "/bin/sh" && (e.Resolved != "/usr/bin/dash" || e.Alias != "sh") {
			t.Errorf("/bin/sh: resolved %q alias %q", e.Resolved, e.Alias)
		}
	}
}

func TestFexecveDenied(t *testing.T) {
	var sawErr error
	out := watched(t, "memfd", "", func(e *Exec) error {
		if e.Err != nil {
			sawErr = e.Err
			return e.Err
		}
		return nil
	})
	if !strings.Contains(out, "memfd exec: permission denied") || sawErr == nil {
		t.Errorf("memfd exec: %q, decide saw %v", out, sawErr)
	}
}

func TestLongArgvDenied(t *testing.T) {
	called := false
	out := watched(t, "long-argv", "", func(e *Exec) error {
		called = true
		if e.Err == nil {
			t.Errorf("an argv past MaxArgs was read whole")
		}
		return e.Err
	})
	if !called || !strings.Contains(out, "long exec: permission denied") {
		t.Errorf("long argv: %q", out)
	}
}

// A slow decision while the Go child's runtime sends itself preemption
// signals must neither loop nor lose execs: exactly five /bin/true.
func TestGoPreemptionDoesNotRestart(t *testing.T) {
	var s seen
	out := watched(t, "go-execs", "", func(e *Exec) error {
		s.add(e)
		time.Sleep(30 * time.Millisecond)
		return nil
	})
	n := 0
	for _, r := range s.resolved() {
		if r == "/usr/bin/true" {
			n++
		}
	}
	if !strings.Contains(out, "done") || n != 5 {
		t.Errorf("output %q, %d trapped /bin/true (want 5)", out, n)
	}
}
