package journaltest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	sdjournal "github.com/coreos/go-systemd/v22/journal"

	"github.com/execgate/execgate/audit"
)

const (
	// envKey tells a re-executed test binary what it is: "main" (the
	// whole package, with journald), "test:NAME" (one test, with
	// journald) or "mounts:NAME" (one test, mounts only).
	envKey = "EXECGATE_JOURNALTEST"

	// Socket is journald's native socket inside the namespace.
	Socket = "/run/systemd/journal/socket"
	// Dir is where the private journald keeps its journal files.
	Dir = "/run/log/journal"

	confDropIn = "/run/systemd/journald.conf.d/zz-execgate-journaltest.conf"
	conf       = `# written by execgate's internal/journaltest
[Journal]
Storage=volatile
RuntimeMaxUse=512M
RateLimitIntervalSec=0
RateLimitBurst=0
ReadKMsg=no
ForwardToSyslog=no
ForwardToKMsg=no
ForwardToConsole=no
ForwardToWall=no
MaxLevelStore=debug
`
	probeIdentifier = "execgate-journaltest"
	probeField      = "JOURNALTEST_PROBE"
)

// Timeouts, generous for a loaded 2-core machine.
var (
	startTimeout = 30 * time.Second
	stopTimeout  = 10 * time.Second
	queryTimeout = 30 * time.Second
	// WaitTimeout bounds WaitFor.
	WaitTimeout = 60 * time.Second
)

var (
	mu       sync.Mutex
	inside   bool // in our private mount namespace
	withJD   bool // ... with journald set up
	jd       *process
	lastLogs string
)

type process struct {
	cmd    *exec.Cmd
	done   chan struct{} // closed when it has exited
	logs   *tailBuffer
	paused bool
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Main runs the package's tests inside a private mount namespace with
// its own journald (see the package doc). It does not return.
func Main(m *testing.M) {
	os.Exit(mainCode(m))
}

func mainCode(m *testing.M) int {
	switch v := os.Getenv(envKey); v {
	case "main":
		if err := enter(true); err != nil {
			fmt.Fprintf(os.Stderr, "journaltest: %v\n", err)
			return 1
		}
		code := m.Run()
		if err := Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "journaltest: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
		return code
	case "":
		if err := supported(); err != nil {
			fmt.Fprintf(os.Stderr, "journaltest: %v\n", err)
			return 1
		}
		code, err := reexec(os.Args[1:], "main", os.Stdout, os.Stderr)
		if err != nil {
			fmt.Fprintf(os.Stderr, "journaltest: %v\n", err)
			return 1
		}
		return code
	default:
		return m.Run()
	}
}

// Isolate runs the calling top-level test in a child process inside a
// fresh private mount namespace with its own journald. In the child (and
// when the whole package already runs under Main) it returns true: go on
// with the test. In the parent it waits for the child, logs the child's
// output (always when it failed, else with -v), fails or skips t as the
// child did, and returns false: return from the test.
func Isolate(t *testing.T) bool {
	t.Helper()
	return isolate(t, true)
}

// IsolateMounts is Isolate without journald: the test runs in a private
// mount namespace, so what it mounts is never seen by the host.
func IsolateMounts(t *testing.T) bool {
	t.Helper()
	return isolate(t, false)
}

func isolate(t *testing.T, journald bool) bool {
	t.Helper()
	mode := "mounts:"
	if journald {
		mode = "test:"
	}
	want := mode + t.Name()
	mu.Lock()
	in, jdSetUp := inside, withJD
	mu.Unlock()
	if in {
		if journald && !jdSetUp {
			t.Fatalf("journaltest: %s wants journald inside a mounts-only child", t.Name())
		}
		return true
	}
	switch v := os.Getenv(envKey); {
	case v == want:
		if err := enter(journald); err != nil {
			t.Fatalf("journaltest: %v", err)
		}
		if journald {
			t.Cleanup(func() {
				if err := Stop(); err != nil {
					t.Errorf("journaltest: %v", err)
				}
			})
		}
		return true
	case v != "":
		t.Fatalf("journaltest: %s called Isolate inside the child running %q", t.Name(), v)
	}
	if strings.Contains(t.Name(), "/") {
		t.Fatalf("journaltest: Isolate must be called by a top-level test, not the subtest %s", t.Name())
	}
	if err := supported(); err != nil {
		t.Fatalf("journaltest: %v", err)
	}
	args := []string{"-test.run=^" + regexp.QuoteMeta(t.Name()) + "$", "-test.count=1", "-test.v=true"}
	if testing.Short() {
		args = append(args, "-test.short")
	}
	if d, ok := t.Deadline(); ok {
		// Let the child time out (with its goroutine dump) first.
		left := time.Until(d) - 5*time.Second
		if left < time.Second {
			left = time.Second
		}
		args = append(args, "-test.timeout="+left.String())
	}
	var out LockedBuffer
	code, err := reexec(args, want, &out, &out)
	output := out.String()
	if err != nil {
		t.Fatalf("journaltest: %v", err)
	}
	quoted := indent(output)
	if code != 0 {
		t.Fatalf("journaltest: isolated run of %s failed (exit %d):\n%s", t.Name(), code, quoted)
	}
	if testing.Verbose() {
		t.Logf("isolated run of %s:\n%s", t.Name(), quoted)
	}
	switch {
	case strings.Contains(output, "--- PASS: "+t.Name()+" "):
	case strings.Contains(output, "--- SKIP: "+t.Name()+" "):
		t.Skipf("skipped in the isolated run:\n%s", quoted)
	default:
		t.Fatalf("journaltest: the isolated run did not run %s:\n%s", t.Name(), quoted)
	}
	return false
}

// indent marks a child's output so that test2json does not take its
// "--- PASS" lines for the parent's.
func indent(s string) string {
	var b strings.Builder
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		b.WriteString("│ ")
		b.WriteString(sc.Text())
		b.WriteByte('\n')
	}
	return b.String()
}

func supported() error {
	if os.Geteuid() != 0 {
		return errors.New("needs root (a private mount namespace and a real systemd-journald); run the tests as root")
	}
	return nil
}

// reexec runs this test binary again with args in a new mount namespace
// and envKey=mode, and returns its exit code. SIGINT, SIGTERM and SIGQUIT
// are passed on to it.
func reexec(args []string, mode string, stdout, stderr io.Writer) (int, error) {
	cmd := exec.Command("/proc/self/exe", args...)
	cmd.Args[0] = os.Args[0]
	cmd.Env = append(os.Environ(), envKey+"="+mode)
	cmd.Stdin = nil
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS, Pdeathsig: syscall.SIGKILL}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGQUIT)
	defer signal.Stop(sigs)
	if err := spawn(cmd); err != nil {
		return 0, fmt.Errorf("re-run the test binary in a new mount namespace: %w", err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	for {
		select {
		case s := <-sigs:
			cmd.Process.Signal(s)
		case err := <-waited:
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
					return 128 + int(ws.Signal()), nil
				}
				return ee.ExitCode(), nil
			}
			if err != nil {
				return 0, fmt.Errorf("wait for the re-run test binary: %w", err)
			}
			return 0, nil
		}
	}
}

// spawn starts cmd from one OS thread that lives as long as the process,
// so that PR_SET_PDEATHSIG (which fires when the parent *thread* exits)
// fires only when this process dies.
func spawn(cmd *exec.Cmd) error {
	spawnOnce.Do(func() {
		go func() {
			runtime.LockOSThread() // never unlocked: the thread never exits
			for req := range spawnReqs {
				req.done <- req.cmd.Start()
			}
		}()
	})
	done := make(chan error, 1)
	spawnReqs <- spawnReq{cmd, done}
	return <-done
}

type spawnReq struct {
	cmd  *exec.Cmd
	done chan error
}

var (
	spawnOnce sync.Once
	spawnReqs = make(chan spawnReq)
)

// enter sets up the namespace this re-executed process was cloned into.
func enter(journald bool) error {
	mu.Lock()
	if inside {
		mu.Unlock()
		return errors.New("namespace set up twice")
	}
	if err := syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
		mu.Unlock()
		return fmt.Errorf("make mounts private: %w", err)
	}
	inside = true
	os.Unsetenv(envKey) // what this process starts is not a harness child
	if !journald {
		mu.Unlock()
		return nil
	}
	mounts := []struct{ dir, opts string }{
		{"/run", "mode=0755"},
		{"/var/log/journal", "mode=2755"},
		{"/etc/systemd/journald.conf.d", "mode=0755"},
	}
	for i, m := range mounts {
		if i > 0 {
			if st, err := os.Stat(m.dir); err != nil || !st.IsDir() {
				continue // absent: nothing of the host's to hide
			}
		}
		if err := syscall.Mount("tmpfs", m.dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, m.opts); err != nil {
			mu.Unlock()
			return fmt.Errorf("mount a tmpfs on %s: %w", m.dir, err)
		}
	}
	if err := os.MkdirAll(Dir, 0o755); err != nil {
		mu.Unlock()
		return err
	}
	if err := os.MkdirAll(strings.TrimSuffix(confDropIn, "/zz-execgate-journaltest.conf"), 0o755); err != nil {
		mu.Unlock()
		return err
	}
	if err := os.WriteFile(confDropIn, []byte(conf), 0o644); err != nil {
		mu.Unlock()
		return err
	}
	withJD = true
	mu.Unlock()
	return Start()
}

// Inside reports whether this process runs in the harness's namespace
// with journald set up (under Main, or in an Isolate child).
func Inside() bool {
	mu.Lock()
	defer mu.Unlock()
	return inside && withJD
}

// Require fails t unless it runs inside the harness with journald.
func Require(t testing.TB) {
	t.Helper()
	if !Inside() {
		t.Fatal("journaltest: not inside the private journald namespace: call journaltest.Main from TestMain, or journaltest.Isolate first")
	}
}

func journaldPath() (string, error) {
	cands := []string{"/lib/systemd/systemd-journald", "/usr/lib/systemd/systemd-journald"}
	if p := os.Getenv("EXECGATE_JOURNALD"); p != "" {
		cands = []string{p}
	}
	for _, p := range cands {
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p, nil
		}
	}
	return "", fmt.Errorf("systemd-journald not found (looked for %s)", strings.Join(cands, ", "))
}

// Start starts journald (again) and waits until it stores records. It is
// a no-op when journald is running.
func Start() error {
	mu.Lock()
	defer mu.Unlock()
	if !inside || !withJD {
		return errors.New("journaltest: Start outside the harness namespace")
	}
	if jd != nil && !jd.exited() {
		return nil
	}
	bin, err := journaldPath()
	if err != nil {
		return err
	}
	p := &process{cmd: exec.Command(bin), done: make(chan struct{}), logs: &tailBuffer{max: 64 << 10}}
	p.cmd.Env = append(cleanEnv(), "SYSTEMD_LOG_TARGET=console", "SYSTEMD_LOG_LEVEL=info", "SYSTEMD_COLORS=0")
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := spawn(p.cmd); err != nil {
		return fmt.Errorf("journaltest: start %s: %w", bin, err)
	}
	go func() {
		p.cmd.Wait()
		close(p.done)
	}()
	jd = p
	if err := waitReady(p); err != nil {
		p.cmd.Process.Kill()
		<-p.done
		lastLogs = p.logs.String()
		return fmt.Errorf("journaltest: %s did not become ready: %w\njournald's log:\n%s", bin, err, lastLogs)
	}
	return nil
}

// cleanEnv drops what would make journald think systemd started it.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET", "WATCHDOG_PID", "WATCHDOG_USEC", "JOURNAL_STREAM", envKey:
			continue
		}
		env = append(env, kv)
	}
	return env
}

// waitReady waits for the socket, then sends a probe record and waits
// until journalctl reads it back: then journald receives, stores and
// serves records.
func waitReady(p *process) error {
	deadline := time.Now().Add(startTimeout)
	var token [8]byte
	rand.Read(token[:])
	probe := hex.EncodeToString(token[:])
	sent := false
	for {
		if p.exited() {
			return fmt.Errorf("journald exited: %v", p.cmd.ProcessState)
		}
		if !sent {
			if st, err := os.Stat(Socket); err == nil && st.Mode().Type() == os.ModeSocket {
				err := sdjournal.Send("journaltest probe "+probe, sdjournal.PriInfo, map[string]string{
					"SYSLOG_IDENTIFIER": probeIdentifier,
					probeField:          probe,
				})
				sent = err == nil
			}
		}
		if sent {
			ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
			out, err := journalctl(ctx, "-q", "-o", "json", probeField+"="+probe)
			cancel()
			if err == nil && bytes.Contains(out, []byte(probe)) {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no probe record after %v (socket sent: %v)", startTimeout, sent)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// signalJournald sends sig and, unless keep, waits for journald to exit.
func signalJournald(sig syscall.Signal, wait bool) error {
	mu.Lock()
	defer mu.Unlock()
	if jd == nil || jd.exited() {
		return nil
	}
	if jd.paused && wait {
		jd.cmd.Process.Signal(syscall.SIGCONT)
	}
	if err := jd.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("journaltest: signal journald: %w", err)
	}
	if !wait {
		return nil
	}
	select {
	case <-jd.done:
	case <-time.After(stopTimeout):
		jd.cmd.Process.Kill()
		<-jd.done
		lastLogs = jd.logs.String()
		return fmt.Errorf("journaltest: journald ignored %v for %v and was killed", sig, stopTimeout)
	}
	lastLogs = jd.logs.String()
	return nil
}

// Stop stops journald with SIGTERM and waits for it to exit (SIGKILL
// after 10s). journald leaves its socket files behind, so senders get
// ECONNREFUSED; remove Socket too to test "no journald at all" (ENOENT).
func Stop() error { return signalJournald(syscall.SIGTERM, true) }

// Kill kills journald with SIGKILL and waits, like a crash: no clean
// shutdown, the journal file is left marked in use (the next journald
// puts it aside and starts a new one; journalctl reads both).
func Kill() error { return signalJournald(syscall.SIGKILL, true) }

// Pause stops journald with SIGSTOP: the socket stays, its queue fills
// and senders block. Resume (or Stop) lets it go on.
func Pause() error {
	mu.Lock()
	if jd != nil {
		jd.paused = true
	}
	mu.Unlock()
	return signalJournald(syscall.SIGSTOP, false)
}

// Resume continues a paused journald.
func Resume() error {
	mu.Lock()
	if jd != nil {
		jd.paused = false
	}
	mu.Unlock()
	return signalJournald(syscall.SIGCONT, false)
}

// Running reports whether the harness's journald process is alive.
func Running() bool {
	mu.Lock()
	defer mu.Unlock()
	return jd != nil && !jd.exited()
}

// PID returns the journald process's pid, or 0.
func PID() int {
	mu.Lock()
	defer mu.Unlock()
	if jd == nil || jd.exited() {
		return 0
	}
	return jd.cmd.Process.Pid
}

// Logs returns the tail of journald's own log (its stderr), of the
// running process or the last one.
func Logs() string {
	mu.Lock()
	defer mu.Unlock()
	if jd != nil && !jd.exited() {
		return jd.logs.String()
	}
	return lastLogs
}

// Sync asks journald to write out everything it has received
// (journalctl --sync). It returns once records sent before the call
// can be read.
func Sync() error {
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	if _, err := journalctl(ctx, "--sync"); err != nil {
		return err
	}
	return nil
}

func journalctl(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "journalctl", append([]string{"--no-pager"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("journalctl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// Query returns the records matching the journal field matches
// ("FIELD=value"; the same field twice means either value), read with
// journalctl -o json --all after a Sync (skipped when journald is not
// running). It fails t on errors.
func Query(t testing.TB, matches ...string) []*audit.Record {
	t.Helper()
	recs, err := query(matches)
	if err != nil {
		t.Fatalf("journaltest: %v", err)
	}
	return recs
}

func query(matches []string) ([]*audit.Record, error) {
	if Running() {
		mu.Lock()
		paused := jd.paused
		mu.Unlock()
		if !paused {
			if err := Sync(); err != nil {
				return nil, err
			}
		}
	}
	return ReadJournal(matches...)
}

// WaitFor polls Query until at least n records match, and returns them;
// it fails t after WaitTimeout.
func WaitFor(t testing.TB, n int, matches ...string) []*audit.Record {
	t.Helper()
	deadline := time.Now().Add(WaitTimeout)
	for {
		recs, err := query(matches)
		if err != nil {
			t.Fatalf("journaltest: %v", err)
		}
		if len(recs) >= n {
			return recs
		}
		if time.Now().After(deadline) {
			t.Fatalf("journaltest: %d records match %q after %v, want at least %d\njournald's log:\n%s", len(recs), matches, WaitTimeout, n, Logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

// LockedBuffer is a bytes.Buffer that a process's output may be copied
// into while the test reads it.
type LockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *LockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
