package sandbox

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// startedWriter closes ready once the output contains mark.
func startedWriter(mark string, ready chan struct{}) *markWriter {
	return &markWriter{mark: mark, ready: ready}
}

type markWriter struct {
	syncBuffer
	mark  string
	ready chan struct{}
	once  sync.Once
}

func (w *markWriter) Write(p []byte) (int, error) {
	w.syncBuffer.Write(p)
	if strings.Contains(w.String(), w.mark) {
		w.once.Do(func() { close(w.ready) })
	}
	return len(p), nil
}

// runUntil starts spec, waits for mark on stdout, calls stop, and returns
// the result and how long the run took after stop.
func runUntil(t *testing.T, r *Runner, ctx context.Context, spec Spec, stop func()) (Result, time.Duration) {
	t.Helper()
	ready := make(chan struct{})
	spec.Stdout = startedWriter("started", ready)
	type out struct {
		res Result
		err error
	}
	done := make(chan out, 1)
	go func() {
		res, err := r.Run(ctx, spec)
		done <- out{res, err}
	}()
	select {
	case <-ready:
	case o := <-done:
		t.Fatalf("run ended before it started: %+v %v", o.res, o.err)
	case <-time.After(30 * time.Second):
		t.Fatal("run did not start")
	}
	stopped := time.Now()
	stop()
	select {
	case o := <-done:
		if o.err != nil {
			t.Fatalf("Run: %v", o.err)
		}
		return o.res, time.Since(stopped)
	case <-time.After(30 * time.Second):
		t.Fatal("run not stopped")
	}
	return Result{}, 0
}

func TestCancelKillsBackground(t *testing.T) {
	r := newRunner(t)
	d := workdir(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	spec := newSpec(t, d, `sleep 1001 & (sleep 1002 &) ; setsid sleep 1003 & echo started; wait`)
	res, took := runUntil(t, r, ctx, spec, cancel)
	if !res.Killed || res.TimedOut {
		t.Errorf("Killed %v TimedOut %v", res.Killed, res.TimedOut)
	}
	if took > 10*time.Second {
		t.Errorf("cancel took %v", took)
	}
	for _, a := range []string{"1001", "1002", "1003"} {
		if p := procsWithArg(a); len(p) > 0 {
			t.Errorf("background child survived the cancel: %v", p)
		}
	}
	nothingLeft(t, res)
}

func TestKillByIDAndAgent(t *testing.T) {
	r := newRunner(t)
	d := workdir(t)
	spec := newSpec(t, d, `sleep 1011 & echo started; wait`)
	res, _ := runUntil(t, r, context.Background(), spec, func() {
		if !r.Kill(spec.ID) {
			t.Error("Kill did not find the run")
		}
	})
	if !res.Killed || res.Signal != 9 {
		t.Errorf("Killed %v signal %d", res.Killed, res.Signal)
	}
	if r.Kill(spec.ID) {
		t.Error("Kill found a finished run")
	}
	nothingLeft(t, res)

	spec = newSpec(t, d, `sleep 1012 & echo started; wait`)
	res, _ = runUntil(t, r, context.Background(), spec, func() {
		if n := r.KillAgent(agent); n != 1 {
			t.Errorf("KillAgent killed %d runs", n)
		}
	})
	if !res.Killed {
		t.Errorf("KillAgent: Killed %v", res.Killed)
	}
	nothingLeft(t, res)
}

// The run ends with the shell: background processes do not outlive it.
func TestShellExitEndsRun(t *testing.T) {
	r := newRunner(t)
	d := workdir(t)
	start := time.Now()
	res, out, _ := runIt(t, r, newSpec(t, d, `sleep 1021 & nohup sleep 1022 >/dev/null 2>&1 & echo bye; exit 3`))
	if el := time.Since(start); el > 10*time.Second {
		t.Errorf("run took %v: it waited for background processes", el)
	}
	if res.Exit != 3 || out != "bye\n" || res.Killed || res.TimedOut {
		t.Errorf("exit %d out %q %+v", res.Exit, out, res)
	}
	for _, a := range []string{"1021", "1022"} {
		if p := procsWithArg(a); len(p) > 0 {
			t.Errorf("background process outlived the run: %v", p)
		}
	}
	nothingLeft(t, res)
}

func TestExitStatus(t *testing.T) {
	r := newRunner(t)
	d := workdir(t)
	for _, c := range []struct {
		name, script string
		exit, signal int
	}{
		{"exit 0", "exit 0", 0, 0},
		{"exit 42", "exit 42", 42, 0},
		{"SIGTERM", "kill -TERM $$", 143, 15},
		{"SIGKILL", "kill -KILL $$", 137, 9},
		{"args", "echo $0 $1 $2 | grep -q 'name a b'", 0, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			spec := newSpec(t, d, c.script)
			spec.Args = []string{"name", "a", "b"}
			spec.Limits = Limits{} // no timeout, no cgroup limits
			res, out, errs := runIt(t, r, spec)
			if res.Exit != c.exit || res.Signal != c.signal {
				t.Errorf("%q: exit %d signal %d, want %d %d (%s %s)", c.script, res.Exit, res.Signal, c.exit, c.signal, out, errs)
			}
		})
	}
	// Signals sent to the init by the run itself are dropped.
	t.Run("signals to the init", func(t *testing.T) {
		res, out, _ := runIt(t, r, newSpec(t, d, `for s in TERM INT HUP QUIT USR1 USR2 SEGV BUS ABRT PIPE ALRM SYS KILL STOP; do kill -$s 1; done; sleep 0.5; echo alive`))
		if res.Exit != 0 || out != "alive\n" {
			t.Errorf("signalling the init: exit %d out %q", res.Exit, out)
		}
	})
}

func TestBadSpecs(t *testing.T) {
	r := newRunner(t)
	d := workdir(t)
	ok := newSpec(t, d, "true")
	cases := map[string]func(*Spec){
		"missing dir":    func(s *Spec) { s.Dir = filepath.Join(d, "nope") },
		"relative dir":   func(s *Spec) { s.Dir = "rel" },
		"dir under /tmp": func(s *Spec) { s.Dir = os.TempDir() },
		"root uid":       func(s *Spec) { s.UID = 0 },
		"root gid":       func(s *Spec) { s.GID = 0 },
		"bad id":         func(s *Spec) { s.ID = "../x" },
		"bad agent":      func(s *Spec) { s.Agent = "a/b" },
		"relative shell": func(s *Spec) { s.Shell = "sh" },
		"relative ro":    func(s *Spec) { s.ReadOnly = []string{"x"} },
		"negative limit": func(s *Spec) { s.Limits.Memory = -1 },
	}
	for name, mut := range cases {
		t.Run(name, func(t *testing.T) {
			s := ok
			s.ID += "-" + strings.ReplaceAll(name, " ", "")
			mut(&s)
			if _, err := r.Run(context.Background(), s); err == nil {
				t.Errorf("%s: no error", name)
			} else if name == "missing dir" && !strings.Contains(err.Error(), "working directory") {
				t.Errorf("%s: unclear error %v", name, err)
			}
		})
	}
	// A shell that cannot start is a setup error, reported by the init.
	s := newSpec(t, d, "true")
	s.Shell = "/nonexistent/sh"
	if _, err := r.Run(context.Background(), s); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing shell: %v", err)
	}
	// A directory the agent cannot enter.
	locked := filepath.Join(d, "locked")
	os.Mkdir(locked, 0o700)
	s = newSpec(t, d, "true")
	s.Dir = locked
	if _, err := r.Run(context.Background(), s); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("unreadable dir: %v", err)
	}
	// One id runs once at a time.
	s = newSpec(t, d, "echo started; sleep 1031")
	res, _ := runUntil(t, r, context.Background(), s, func() {
		dup := s
		dup.Stdout = nil
		if _, err := r.Run(context.Background(), dup); err == nil || !strings.Contains(err.Error(), "already running") {
			t.Errorf("duplicate id: %v", err)
		}
		r.Kill(s.ID)
	})
	nothingLeft(t, res)
	// A cancelled context runs nothing.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := r.Run(ctx, newSpec(t, d, "true")); err == nil {
		t.Error("cancelled context: no error")
	}
}

// A daemon that died leaves run cgroups with processes; a new Runner finds,
// kills and removes them.
func TestLeftovers(t *testing.T) {
	r := newRunner(t)
	cg, err := r.cg.create("ghost", "old-run", Limits{Pids: 10})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sleep", "1041")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	if err := cg.add(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	left, err := r.Leftovers()
	if err != nil || len(left) != 1 || left[0].Agent != "ghost" || left[0].ID != "old-run" {
		t.Fatalf("Leftovers = %v, %v", left, err)
	}
	removed, err := r.RemoveLeftovers()
	if err != nil || len(removed) != 1 {
		t.Fatalf("RemoveLeftovers = %v, %v", removed, err)
	}
	select {
	case <-waited:
	case <-time.After(10 * time.Second):
		t.Fatal("the leftover's process was not killed")
	}
	if left, _ := r.Leftovers(); len(left) != 0 {
		t.Errorf("still left: %v", left)
	}
	cgroupGone(t, Result{Cgroup: cg.rel()})
}

func TestConcurrentRuns(t *testing.T) {
	r := newRunner(t)
	d := workdir(t)
	var wg sync.WaitGroup
	errs := make(chan string, 16)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		spec := newSpec(t, d, `echo $1; sleep 0.2`)
		spec.Args = []string{"x", spec.ID}
		if i%2 == 1 {
			spec.Agent = "other"
		}
		go func() {
			defer wg.Done()
			var out syncBuffer
			spec.Stdout = &out
			res, err := r.Run(context.Background(), spec)
			if err != nil || res.Exit != 0 || out.String() != spec.ID+"\n" {
				errs <- spec.ID + ": " + out.String()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

// Close kills the runs still going and refuses new ones.
func TestCloseKillsRuns(t *testing.T) {
	r := newRunner(t)
	d := workdir(t)
	spec := newSpec(t, d, `sleep 1061 & echo started; wait`)
	res, _ := runUntil(t, r, context.Background(), spec, func() { r.Close() })
	if !res.Killed {
		t.Errorf("Killed %v", res.Killed)
	}
	if p := procsWithArg("1061"); len(p) > 0 {
		t.Errorf("survived Close: %v", p)
	}
	if _, err := r.Run(context.Background(), newSpec(t, d, "true")); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Run after Close: %v", err)
	}
	nothingLeft(t, res)
}
