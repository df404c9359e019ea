package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/execgate/execgate/supervisor/execwatch"
)

// outputGrace bounds how long output is drained after the run's last
// process died. Only a process outside the sandbox that was handed a copy
// of the pipe (over a unix socket) could keep it open longer.
const outputGrace = 2 * time.Second

// Runner starts sandboxed runs. It is safe for concurrent use.
type Runner struct {
	cfg     config
	cg      cgroupManager
	seccomp []byte   // raw BPF program, compiled once
	notify  []byte   // the exec-notification program, compiled once
	devNull *os.File // stdin of runs without Stdin

	mu     sync.Mutex
	netns  map[string]*os.File // agent -> empty network namespace
	active map[string]*run     // run id -> run
	closed bool
	wg     sync.WaitGroup
}

type stopReason int

const (
	notStopped stopReason = iota
	stopTimeout
	stopKilled
)

func (r stopReason) String() string {
	return [...]string{"not stopped", "timed out", "killed"}[r]
}

// run is one live run, as Kill and KillAgent see it.
type run struct {
	id, agent string
	cg        runCgroup
	// endDecisions ends the exec check's context: a decision waiting for
	// a human does not outlive its run.
	endDecisions context.CancelCauseFunc

	mu     sync.Mutex
	proc   *os.Process
	reason stopReason
}

// stop ends the run: SIGKILL to its init makes the kernel kill the whole
// pid namespace, and the cgroup kill catches anything else in the cgroup.
func (a *run) stop(why stopReason) {
	a.mu.Lock()
	if a.reason == notStopped {
		a.reason = why
	}
	p, cg := a.proc, a.cg
	a.mu.Unlock()
	a.endDecisions(fmt.Errorf("the run %s", why))
	if p != nil {
		_ = p.Signal(syscall.SIGKILL)
		_ = cg.kill()
	}
}

func (a *run) started(p *os.Process) {
	a.mu.Lock()
	a.proc = p
	stopped := a.reason != notStopped
	a.mu.Unlock()
	if stopped {
		a.stop(a.reason)
	}
}

func (a *run) stopReason() stopReason {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.reason
}

// NewRunner prepares what every run shares: the cgroup layout (v1 or v2,
// decided once), the compiled seccomp filter and /dev/null.
func NewRunner(opts ...Option) (*Runner, error) {
	c := defaultConfig()
	for _, o := range opts {
		if err := o(&c); err != nil {
			return nil, err
		}
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("sandbox: the runner must run as root")
	}
	cg, err := newCgroupManager(&c)
	if err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	prog, err := buildSeccomp()
	if err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	notify, err := execwatch.Filter()
	if err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	devNull, err := os.Open(os.DevNull)
	if err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	return &Runner{
		cfg: c, cg: cg, seccomp: prog, notify: notify, devNull: devNull,
		netns: map[string]*os.File{}, active: map[string]*run{},
	}, nil
}

// CgroupVersion is 1 or 2.
func (r *Runner) CgroupVersion() int { return r.cg.version() }

// agentNetns returns the agent's empty network namespace, made on first use.
// One per agent rather than one for all: runs of different agents never
// share a namespace (abstract unix sockets are per network namespace).
func (r *Runner) agentNetns(agent string) (*os.File, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if f := r.netns[agent]; f != nil {
		return f, nil
	}
	f, err := newEmptyNetns()
	if err != nil {
		return nil, err
	}
	r.netns[agent] = f
	return f, nil
}

func (r *Runner) register(a *run) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return errors.New("sandbox: runner is closed")
	}
	if r.active[a.id] != nil {
		return fmt.Errorf("sandbox: run %s is already running", a.id)
	}
	r.active[a.id] = a
	r.wg.Add(1)
	return nil
}

func (r *Runner) unregister(a *run) {
	r.mu.Lock()
	delete(r.active, a.id)
	r.mu.Unlock()
	r.wg.Done()
}

// check validates spec and fills defaults.
func (r *Runner) check(spec *Spec) error {
	if err := validName("run id", spec.ID); err != nil {
		return err
	}
	if err := validName("agent", spec.Agent); err != nil {
		return err
	}
	if spec.Shell == "" {
		spec.Shell = "/bin/sh"
	}
	if !filepath.IsAbs(spec.Shell) {
		return fmt.Errorf("sandbox: shell %q is not an absolute path", spec.Shell)
	}
	if spec.UID == 0 || spec.GID == 0 {
		return fmt.Errorf("sandbox: run %s: refusing uid %d gid %d: agents never run as root", spec.ID, spec.UID, spec.GID)
	}
	if !filepath.IsAbs(spec.Dir) {
		return fmt.Errorf("sandbox: working directory %q is not an absolute path", spec.Dir)
	}
	spec.Dir = filepath.Clean(spec.Dir)
	if underAny(spec.Dir, privatePaths) {
		return fmt.Errorf("sandbox: working directory %q is under /tmp, /dev/shm or /proc, which each run gets fresh", spec.Dir)
	}
	if fi, err := os.Stat(spec.Dir); err != nil {
		return fmt.Errorf("sandbox: working directory: %w", err)
	} else if !fi.IsDir() {
		return fmt.Errorf("sandbox: working directory %q is not a directory", spec.Dir)
	}
	for _, p := range spec.ReadOnly {
		if !filepath.IsAbs(p) {
			return fmt.Errorf("sandbox: read-only path %q is not absolute", p)
		}
	}
	l := spec.Limits
	if l.Timeout < 0 || l.Memory < 0 || l.Pids < 0 || l.CPU < 0 || l.Output < 0 {
		return fmt.Errorf("sandbox: run %s: negative limit", spec.ID)
	}
	return nil
}

// Run runs spec to its end and reports how it ended. Cancelling ctx kills
// the whole run (Result.Killed). The returned error is for a sandbox that
// could not be set up or torn down; the script's own failure is in Result.
//
// Run returns once every process of the run is dead and its cgroup is
// removed. It does not wait for a read from spec.Stdin to return.
func (r *Runner) Run(ctx context.Context, spec Spec) (Result, error) {
	var res Result
	if err := r.check(&spec); err != nil {
		return res, err
	}
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("sandbox: run %s: %w", spec.ID, err)
	}
	// The exec check's decisions end with the run: when it is stopped,
	// when ctx ends, and when its last process is gone.
	watchCtx, endDecisions := context.WithCancelCause(ctx)
	defer endDecisions(errors.New("the run ended"))
	a := &run{id: spec.ID, agent: spec.Agent, endDecisions: endDecisions}
	if err := r.register(a); err != nil {
		return res, err
	}
	defer r.unregister(a)

	plan := planMasks(spec.DenyRead, spec.WalkRoots, &r.cfg)
	res.Masked, res.MaskCut = plan.all(), plan.cut
	if err := plan.refusal(spec.DenyReadPatterns, spec.Home); err != nil {
		return res, fmt.Errorf("sandbox: run %s: %w", spec.ID, err) // no bound fails open
	}
	readOnly, err := resolveReadOnly(spec.ReadOnly)
	if err != nil {
		return res, fmt.Errorf("sandbox: run %s: %w", spec.ID, err)
	}
	if spec.StartInfo != nil {
		*spec.StartInfo = StartInfo{Masked: len(res.Masked), MaskCut: res.MaskCut}
	}

	cfg := initConfig{
		Shell:     spec.Shell,
		Argv:      append([]string{spec.Shell, "-c", spec.Script}, spec.Args...),
		Env:       scrubEnv(spec.Env),
		Dir:       spec.Dir,
		UID:       spec.UID,
		GID:       spec.GID,
		ReadOnly:  readOnly,
		MaskFiles: plan.files,
		MaskDirs:  plan.dirs,
		NetNSFD:   -1,
		NotifyFD:  -1,
		Seccomp:   r.seccomp,
	}
	var extra []*os.File
	if !spec.Network {
		ns, err := r.agentNetns(spec.Agent)
		if err != nil {
			return res, fmt.Errorf("sandbox: run %s: %w", spec.ID, err)
		}
		cfg.NetNSFD = initFirstFD + len(extra)
		extra = append(extra, ns)
	}
	// The exec check: the init sends its listener back over this pair.
	notifySock := -1
	var theirs *os.File
	if spec.ExecCheck != nil {
		pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return res, fmt.Errorf("sandbox: run %s: socketpair: %w", spec.ID, err)
		}
		notifySock = pair[0]
		defer unix.Close(notifySock)
		theirs = os.NewFile(uintptr(pair[1]), "exec-notify")
		defer theirs.Close()
		cfg.NotifyFD = initFirstFD + len(extra)
		cfg.NotifyProg = r.notify
		extra = append(extra, theirs)
	}
	blob := cfg.marshal()

	cg, p, err := r.spawn(&spec, extra)
	if err != nil {
		return res, fmt.Errorf("sandbox: run %s: %w", spec.ID, err)
	}
	a.mu.Lock()
	a.cg = cg
	a.mu.Unlock()
	res.Cgroup = cg.rel()
	// Whatever happens below, the cgroup goes, with anything in it.
	removed := false
	defer func() {
		if !removed {
			_ = cg.remove()
		}
	}()
	defer p.closeParentEnds()
	res.Pid = p.proc.Pid
	a.started(p.proc)
	// The timeout and cancellation hold from here: nothing below, not the
	// listener hand-over nor a decision, may keep the run past them.
	var timer *time.Timer
	if spec.Limits.Timeout > 0 {
		timer = time.AfterFunc(spec.Limits.Timeout, func() { a.stop(stopTimeout) })
	}
	stopCancel := context.AfterFunc(ctx, func() { a.stop(stopKilled) })
	disarm := func() {
		if timer != nil {
			timer.Stop()
		}
		stopCancel()
	}
	defer disarm()

	// v1: the child blocks reading its config until it is in the cgroup.
	if cg.cloneInto() == nil {
		if err := cg.add(p.proc.Pid); err != nil {
			a.stop(stopKilled)
			p.proc.Wait()
			return res, fmt.Errorf("sandbox: run %s: %w", spec.ID, err)
		}
	}
	// Nothing of the agent's has run yet: the init waits for its config.
	if spec.OnStart != nil {
		if err := spec.OnStart(p.proc.Pid, res.Cgroup); err != nil {
			a.stop(stopKilled)
			p.proc.Wait()
			return res, fmt.Errorf("sandbox: run %s: not started: %w", spec.ID, err)
		}
	}
	// A failed write means the init already died; its status says why.
	_, _ = p.config.Write(blob)
	p.config.Close()

	// The exec check must serve the listener before the init forks the
	// shell: the shell's own exec is the first it sees.
	watchDone := make(chan error, 1)
	if notifySock >= 0 {
		theirs.Close() // only the init may hold the other end now
		listener, err := execwatch.RecvFD(notifySock)
		if err != nil {
			a.stop(stopKilled)
			// The init reports why it could not send; fall through to
			// collect that status below.
			watchDone <- nil
		} else {
			go func() {
				defer listener.Close()
				watchDone <- execwatch.Watch(watchCtx, listener, spec.ExecCheck)
			}()
		}
	} else {
		watchDone <- nil
	}

	var wg sync.WaitGroup
	var wmu sync.Mutex
	var out, errOut streamResult
	wg.Add(2)
	go func() {
		defer wg.Done()
		out = pump(spec.Stdout, &wmu, p.stdout, spec.Limits.Output, make([]byte, 32<<10))
	}()
	go func() {
		defer wg.Done()
		errOut = pump(spec.Stderr, &wmu, p.stderr, spec.Limits.Output, make([]byte, 32<<10))
	}()
	if p.stdin != nil {
		go func(w *os.File) {
			_, _ = io.Copy(w, spec.Stdin)
			w.Close()
		}(p.stdin)
	}

	// EOF on the status pipe: the init is gone. Wait then returns once the
	// kernel has killed and reaped everything in its pid namespace.
	statusRaw, _ := io.ReadAll(p.status)
	state, werr := p.proc.Wait()
	res.Duration = time.Since(p.startedAt)
	disarm() // nothing is left to kill
	endDecisions(errors.New("the run ended"))
	if err := <-watchDone; err != nil {
		werr = errors.Join(werr, err)
	}

	// Output: everything that held the pipes is dead; drain what is left.
	deadline := time.Now().Add(outputGrace)
	p.stdout.SetReadDeadline(deadline)
	p.stderr.SetReadDeadline(deadline)
	wg.Wait()
	res.StdoutBytes, res.StderrBytes = out.total, errOut.total
	res.Truncated = out.truncated || errOut.truncated

	st := cg.stats()
	res.CPU, res.MemPeak, res.OOMKilled, res.PidsLimited = st.cpu, st.memPeak, st.oomKilled, st.pidsLimited
	removed = true
	rmErr := cg.remove()

	switch a.stopReason() {
	case stopTimeout:
		res.TimedOut = true
	case stopKilled:
		res.Killed = true
	}
	status := parseStatus(statusRaw)
	switch {
	case status.Done:
		res.Exit, res.Signal = status.Exit, status.Signal
	case status.Error != "":
		return res, errors.Join(fmt.Errorf("sandbox: run %s: init: %s", spec.ID, status.Error), rmErr)
	case werr != nil:
		return res, errors.Join(fmt.Errorf("sandbox: run %s: wait: %w", spec.ID, werr), rmErr)
	default:
		// The init died before the shell ended: killed by us, by the OOM
		// killer, or crashed.
		ws, _ := state.Sys().(syscall.WaitStatus)
		switch {
		case ws.Signaled():
			res.Signal = int(ws.Signal())
			res.Exit = 128 + res.Signal
		default:
			res.Exit = ws.ExitStatus()
			if !res.TimedOut && !res.Killed {
				return res, errors.Join(fmt.Errorf("sandbox: run %s: init exited with status %d without a report", spec.ID, res.Exit), rmErr)
			}
		}
	}
	if rmErr != nil {
		return res, fmt.Errorf("sandbox: run %s: %w", spec.ID, rmErr)
	}
	return res, nil
}

// spawn creates the run's cgroup and starts the init. On v2 the cgroup
// comes first, for CLONE_INTO_CGROUP. On v1 the init only waits for its
// config until the caller adds it to the cgroup, so the cgroup is made
// while the init execs (it saves the mkdirs and writes from the latency).
func (r *Runner) spawn(spec *Spec, extra []*os.File) (runCgroup, *spawned, error) {
	if r.cg.version() == 2 {
		cg, err := r.cg.create(spec.Agent, spec.ID, spec.Limits)
		if err != nil {
			return nil, nil, err
		}
		p, err := r.start(spec, cg.cloneInto(), extra)
		if err != nil {
			_ = cg.remove()
			return nil, nil, err
		}
		return cg, p, nil
	}
	type created struct {
		cg  runCgroup
		err error
	}
	ch := make(chan created, 1)
	go func() {
		cg, err := r.cg.create(spec.Agent, spec.ID, spec.Limits)
		ch <- created{cg, err}
	}()
	p, err := r.start(spec, nil, extra)
	c := <-ch
	switch {
	case err != nil && c.err == nil:
		_ = c.cg.remove()
	case err == nil && c.err != nil:
		_ = p.proc.Kill() // still waiting for its config: nothing ran
		_, _ = p.proc.Wait()
		p.closeParentEnds()
	}
	if c.err != nil {
		return nil, nil, c.err
	}
	if err != nil {
		return nil, nil, err
	}
	return c.cg, p, nil
}

// spawned holds the init process and the parent's ends of its pipes.
type spawned struct {
	proc      *os.Process
	startedAt time.Time
	config    *os.File // write
	status    *os.File // read
	stdout    *os.File // read
	stderr    *os.File // read
	stdin     *os.File // write, nil when stdin is /dev/null
}

func (p *spawned) closeParentEnds() {
	for _, f := range []*os.File{p.config, p.status, p.stdout, p.stderr, p.stdin} {
		if f != nil {
			f.Close()
		}
	}
}

// start creates the pipes and starts the init in its new namespaces (and,
// with cgroupDir, directly in that cgroup: v2's CLONE_INTO_CGROUP).
func (r *Runner) start(spec *Spec, cgroupDir *os.File, extra []*os.File) (*spawned, error) {
	p := &spawned{}
	var child []*os.File // the child's ends, closed here once it started
	defer func() {
		for _, f := range child {
			f.Close()
		}
	}()
	pipe := func() (rd, wr *os.File, err error) {
		rd, wr, err = os.Pipe()
		if err != nil {
			return nil, nil, fmt.Errorf("pipe: %w", err)
		}
		return rd, wr, nil
	}
	fail := func(err error) (*spawned, error) {
		p.closeParentEnds()
		return nil, err
	}
	stdin := r.devNull
	if spec.Stdin != nil {
		rd, wr, err := pipe()
		if err != nil {
			return fail(err)
		}
		stdin, p.stdin = rd, wr
		child = append(child, rd)
	}
	outR, outW, err := pipe()
	if err != nil {
		return fail(err)
	}
	p.stdout = outR
	child = append(child, outW)
	errR, errW, err := pipe()
	if err != nil {
		return fail(err)
	}
	p.stderr = errR
	child = append(child, errW)
	cfgR, cfgW, err := pipe()
	if err != nil {
		return fail(err)
	}
	p.config = cfgW
	child = append(child, cfgR)
	stR, stW, err := pipe()
	if err != nil {
		return fail(err)
	}
	p.status = stR
	child = append(child, stW)

	files := append([]*os.File{stdin, outW, errW, cfgR, stW}, extra...)
	// Pdeathsig: if the daemon dies, so does the init and with it the run
	// (restart cleanup then removes the cgroup). It fires when the forking
	// thread exits; Go ends a thread only when a goroutine exits while
	// locked to it, which the daemon must not do (newEmptyNetns unlocks).
	sys := &syscall.SysProcAttr{
		Cloneflags: unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWIPC | unix.CLONE_NEWUTS,
		Setsid:     true, // no controlling terminal to push input into
		Pdeathsig:  syscall.SIGKILL,
	}
	if cgroupDir != nil {
		sys.UseCgroupFD, sys.CgroupFD = true, int(cgroupDir.Fd())
	}
	p.startedAt = time.Now()
	// The init is small and lives only as long as the run: one P and no
	// GC keep its thread count low (each credential change is broadcast
	// to every thread) and mean it never needs a new thread once the
	// shell runs, which a run at its pids limit could deny it.
	proc, err := os.StartProcess(r.cfg.initPath, []string{initArgv0}, &os.ProcAttr{
		Env:   append([]string{initEnv + "=" + initMarker, "GOMAXPROCS=1", "GOGC=off"}, initExtraEnv...),
		Files: files,
		Sys:   sys,
	})
	if err != nil {
		return fail(fmt.Errorf("start init %s: %w", r.cfg.initPath, err))
	}
	p.proc = proc
	return p, nil
}

// Kill kills the run with this id, if it is running, and reports whether it
// was. The run's Result has Killed set.
func (r *Runner) Kill(id string) bool {
	r.mu.Lock()
	a := r.active[id]
	r.mu.Unlock()
	if a == nil {
		return false
	}
	a.stop(stopKilled)
	return true
}

// KillAgent kills every run of agent and returns how many there were.
func (r *Runner) KillAgent(agent string) int {
	r.mu.Lock()
	var runs []*run
	for _, a := range r.active {
		if a.agent == agent {
			runs = append(runs, a)
		}
	}
	r.mu.Unlock()
	for _, a := range runs {
		a.stop(stopKilled)
	}
	return len(runs)
}

// FreezeAgent stops (on) or resumes every running run of agent, all the
// processes of each, and returns how many runs it changed. A run's timeout
// keeps counting while it is frozen.
func (r *Runner) FreezeAgent(agent string, on bool) (int, error) {
	r.mu.Lock()
	var cgs []runCgroup
	for _, a := range r.active {
		a.mu.Lock()
		if a.agent == agent && a.cg != nil {
			cgs = append(cgs, a.cg)
		}
		a.mu.Unlock()
	}
	r.mu.Unlock()
	var errs []error
	for _, cg := range cgs {
		errs = append(errs, cg.freeze(on))
	}
	return len(cgs), errors.Join(errs...)
}

// Leftovers lists run cgroups under the root that this Runner is not
// running, such as those of a daemon that died.
func (r *Runner) Leftovers() ([]Leftover, error) {
	all, err := r.cg.list()
	if err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Leftover
	for _, l := range all {
		if a := r.active[l.ID]; a != nil && a.agent == l.Agent {
			continue
		}
		out = append(out, l)
	}
	return out, nil
}

// RemoveLeftovers kills everything in each leftover run cgroup and removes
// it. It returns the ones removed, so the caller can journal an abort for
// each.
func (r *Runner) RemoveLeftovers() ([]Leftover, error) {
	left, err := r.Leftovers()
	if err != nil {
		return nil, err
	}
	var done []Leftover
	var errs []error
	for _, l := range left {
		rc, err := r.cg.load(l.Agent, l.ID)
		if err == nil {
			_ = rc.kill()
			err = rc.remove()
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		done = append(done, l)
	}
	r.cg.prune()
	if len(errs) > 0 {
		return done, fmt.Errorf("sandbox: leftovers: %w", errors.Join(errs...))
	}
	return done, nil
}

// Close kills the runs still going, waits for them to end, and releases
// the network namespaces and the cgroup root (when empty).
func (r *Runner) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	runs := make([]*run, 0, len(r.active))
	for _, a := range r.active {
		runs = append(runs, a)
	}
	r.mu.Unlock()
	for _, a := range runs {
		a.stop(stopKilled)
	}
	r.wg.Wait()
	r.mu.Lock()
	for agent, f := range r.netns {
		f.Close()
		delete(r.netns, agent)
	}
	r.mu.Unlock()
	r.devNull.Close()
	r.cg.prune()
	return nil
}
