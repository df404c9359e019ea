package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/execgate/execgate/supervisor/execwatch"
	"github.com/execgate/execgate/supervisor/sandbox/netcapture"
)

// outputGrace bounds how long output is drained after the run's last
// process died. Only a process outside the sandbox that was handed a copy
// of the pipe (over a unix socket) could keep it open longer.
const outputGrace = 2 * time.Second

// Run runs spec to its end and reports how it ended. Cancelling ctx kills
// the whole run (Result.Killed). The returned error is for a sandbox that
// could not be set up or torn down; the script's own failure is in Result.
//
// Run returns once every process of the run is dead and its cgroup is
// removed. It does not wait for a read from spec.Stdin to return.
func (r *Runner) Run(ctx context.Context, spec Spec) (Result, error) {
	j, err := r.begin(ctx, spec)
	if err != nil {
		return Result{}, err
	}
	defer j.close()
	if err := j.prepare(); err != nil {
		return j.res, err
	}
	if err := j.launch(ctx); err != nil {
		return j.res, err
	}
	j.supervise()
	return j.finish()
}

// job is one call of Run, through its stages: begin, prepare, launch,
// supervise, finish. Each holds what it made until a later stage takes it
// over; close releases whatever is still held.
type job struct {
	r        *Runner
	spec     Spec
	a        *run            // the run as Kill, KillAgent and Close see it
	watchCtx context.Context // the exec check's; a.endDecisions ends it
	res      Result

	// prepare
	blob     []byte     // the initConfig, encoded
	extra    []*os.File // the init's files from initFirstFD on
	notify   int        // our end of the exec-notification pair, or -1
	ownNetns *os.File   // the run's own network namespace (Spec.Egress)
	theirs   *os.File   // the init's end, held until the init started

	// launch
	cg        runCgroup // the run's cgroup until finish removes it
	p         *spawned
	disarm    func() // stops the timeout and the watch on ctx
	watchDone chan error

	// supervise
	end ending
}

// begin checks spec and registers the run: from here Kill, KillAgent and
// Close reach it.
func (r *Runner) begin(ctx context.Context, spec Spec) (*job, error) {
	if err := r.check(&spec); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("sandbox: run %s: %w", spec.ID, err)
	}
	// The exec check's decisions end with the run: when it is stopped,
	// when ctx ends, and when its last process is gone.
	watchCtx, endDecisions := context.WithCancelCause(ctx)
	j := &job{r: r, spec: spec, watchCtx: watchCtx, notify: -1,
		a: &run{id: spec.ID, agent: spec.Agent, endDecisions: endDecisions}}
	if err := r.register(j.a); err != nil {
		endDecisions(errors.New("the run ended"))
		return nil, err
	}
	return j, nil
}

// close releases what the job still holds, whichever stage it reached:
// the timers, our ends of the pipes, the cgroup (killing anything left in
// it), the exec-notification pair and the registration; and it ends the
// exec check's decisions.
func (j *job) close() {
	if j.disarm != nil {
		j.disarm()
	}
	if j.p != nil {
		j.p.closeParentEnds()
	}
	if j.cg != nil {
		_ = j.cg.remove()
	}
	if j.theirs != nil {
		j.theirs.Close()
	}
	if j.notify >= 0 {
		unix.Close(j.notify)
	}
	if j.ownNetns != nil {
		// The namespace lives on while the Egress's sockets are open.
		j.ownNetns.Close()
	}
	j.r.unregister(j.a)
	j.a.endDecisions(errors.New("the run ended"))
}

// fail says which run failed.
func (j *job) fail(err error) error {
	return fmt.Errorf("sandbox: run %s: %w", j.spec.ID, err)
}

// prepare decides everything the init is told, before anything starts:
// the masks (a cut walk refuses the run: no bound fails open), the
// read-only paths, the network namespace and the exec-notification pair.
func (j *job) prepare() error {
	spec := &j.spec
	plan := planMasks(spec.DenyRead, spec.WalkRoots, &j.r.cfg)
	j.res.Masked, j.res.MaskCut = plan.all(), plan.cut
	if err := plan.refusal(spec.DenyReadPatterns, spec.Home); err != nil {
		return j.fail(err)
	}
	readOnly, err := resolveReadOnly(spec.ReadOnly)
	if err != nil {
		return j.fail(err)
	}
	if spec.StartInfo != nil {
		*spec.StartInfo = StartInfo{Masked: len(j.res.Masked), MaskCut: j.res.MaskCut}
	}
	cfg := initConfig{
		Shell: spec.Shell, Argv: append([]string{spec.Shell, "-c", spec.Script}, spec.Args...),
		Env: scrubEnv(spec.Env), Dir: spec.Dir, UID: spec.UID, GID: spec.GID,
		ReadOnly: readOnly, MaskFiles: plan.files, MaskDirs: plan.dirs,
		NetNSFD: -1, NotifyFD: -1, Seccomp: j.r.seccomp,
	}
	if err := j.network(&cfg); err != nil {
		return j.fail(err)
	}
	for _, o := range spec.Overlays {
		cfg.Overlays = append(cfg.Overlays, mountTarget{Path: o.Lower, Dev: o.Dev, Ino: o.Ino})
		cfg.Uppers, cfg.Works = append(cfg.Uppers, o.Upper), append(cfg.Works, o.Work)
	}
	if spec.ExecCheck != nil {
		// The init sends its exec listener back over this pair.
		pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return j.fail(fmt.Errorf("socketpair: %w", err))
		}
		j.notify, j.theirs = pair[0], os.NewFile(uintptr(pair[1]), "exec-notify")
		cfg.NotifyFD, cfg.NotifyProg = j.pass(j.theirs), j.r.notify
	}
	j.blob = cfg.marshal()
	return nil
}

// network gives the init its network namespace: none to join (the host's),
// the agent's empty one, or, for a captured network, a fresh one set up by
// netcapture with the Egress serving its endpoints and the run's
// resolv.conf and hosts replaced.
func (j *job) network(cfg *initConfig) error {
	spec := &j.spec
	switch {
	case spec.Egress != nil && spec.Network:
		return errors.New("a captured network (Egress) and the host's network (Network) exclude each other")
	case spec.Egress != nil:
		targets, data, err := planNetFiles()
		if err != nil {
			return err
		}
		if cfg.MaskDirs, err = planNetHidden(cfg.MaskDirs); err != nil {
			return err
		}
		ns, err := newEmptyNetns()
		if err != nil {
			return err
		}
		j.ownNetns = ns
		ep, err := netcapture.Open(int(ns.Fd()), netcapture.DefaultPorts)
		if err != nil {
			return fmt.Errorf("network.mode = \"proxy\" unavailable: %w", err)
		}
		if err := spec.Egress.Serve(ep); err != nil {
			return fmt.Errorf("egress: %w", err)
		}
		cfg.NetNSFD, cfg.NetFiles, cfg.NetData = j.pass(ns), targets, data
	case !spec.Network:
		ns, err := j.r.agentNetns(spec.Agent)
		if err != nil {
			return err
		}
		cfg.NetNSFD = j.pass(ns)
	}
	return nil
}

// pass adds f to the init's files and returns the number it has there.
func (j *job) pass(f *os.File) int {
	j.extra = append(j.extra, f)
	return initFirstFD + len(j.extra) - 1
}

// launch starts the init and lets it go. The init waits for its config,
// so nothing of the agent's runs before the timers are armed, the init is
// in its cgroup and OnStart has returned.
func (j *job) launch(ctx context.Context) error {
	cg, p, err := j.r.spawn(&j.spec, j.extra)
	if err != nil {
		return j.fail(err)
	}
	j.cg, j.p = cg, p
	j.res.Cgroup, j.res.Pid = cg.rel(), p.proc.Pid
	j.a.started(p.proc, cg)
	// The timeout and cancellation hold from here: nothing below, not the
	// listener hand-over nor a decision, may keep the run past them.
	j.arm(ctx)
	if err := j.admit(); err != nil {
		return err
	}
	// A failed write means the init already died; its status says why.
	_, _ = p.config.Write(j.blob)
	p.config.Close()
	j.watch()
	return nil
}

// arm stops the run when its timeout expires or ctx ends.
func (j *job) arm(ctx context.Context) {
	var timer *time.Timer
	if t := j.spec.Limits.Timeout; t > 0 {
		timer = time.AfterFunc(t, func() { j.a.stop(stopTimeout) })
	}
	stopCancel := context.AfterFunc(ctx, func() { j.a.stop(stopKilled) })
	j.disarm = func() {
		if timer != nil {
			timer.Stop()
		}
		stopCancel()
	}
}

// admit puts the init in its cgroup (v1; on v2 it was cloned into it) and
// calls OnStart. On failure the init, which has run nothing of the
// agent's yet, is killed and reaped.
func (j *job) admit() error {
	pid := j.p.proc.Pid
	var err error
	if j.cg.cloneInto() == nil {
		err = j.cg.add(pid)
	}
	if err == nil && j.spec.OnStart != nil {
		if err = j.spec.OnStart(pid, j.res.Cgroup); err != nil {
			err = fmt.Errorf("not started: %w", err)
		}
	}
	if err != nil {
		j.a.stop(stopKilled)
		j.p.proc.Wait()
		return j.fail(err)
	}
	return nil
}

// watch serves the exec listener the init sends back. It must be served
// before the init forks the shell: the shell's own exec is the first it
// sees. watchDone gets Watch's error.
func (j *job) watch() {
	j.watchDone = make(chan error, 1)
	if j.notify < 0 {
		j.watchDone <- nil
		return
	}
	j.theirs.Close() // only the init may hold the other end now
	j.theirs = nil
	listener, err := execwatch.RecvFD(j.notify)
	if err != nil {
		// The init reports why it could not send: supervise collects
		// that status.
		j.a.stop(stopKilled)
		j.watchDone <- nil
		return
	}
	go func() {
		defer listener.Close()
		j.watchDone <- execwatch.Watch(j.watchCtx, listener, j.spec.ExecCheck)
	}()
}

// supervise feeds the run its stdin and streams its output until it ends:
// EOF on the status pipe says the init is gone, and Wait returns once the
// kernel has killed and reaped everything in its pid namespace. Then the
// decisions end and the output is drained.
func (j *job) supervise() {
	drain := j.pumpOutput()
	if w := j.p.stdin; w != nil {
		go func() {
			_, _ = io.Copy(w, j.spec.Stdin)
			w.Close()
		}()
	}
	raw, _ := io.ReadAll(j.p.status)
	state, werr := j.p.proc.Wait()
	j.res.Duration = time.Since(j.p.startedAt)
	j.disarm() // nothing is left to kill
	j.a.endDecisions(errors.New("the run ended"))
	if err := <-j.watchDone; err != nil {
		werr = errors.Join(werr, err)
	}
	j.end.status, j.end.waitErr = parseStatus(raw), werr
	if state != nil {
		j.end.wait, _ = state.Sys().(syscall.WaitStatus)
	}
	drain()
}

// pumpOutput streams stdout and stderr to the spec's writers. drain waits
// for both once everything that held the pipes is dead, for at most
// outputGrace, and counts what they carried.
func (j *job) pumpOutput() (drain func()) {
	var wg sync.WaitGroup
	var mu sync.Mutex // one writer may serve both streams
	var out, errOut streamResult
	p, limit := j.p, j.spec.Limits.Output
	wg.Add(2)
	go func() {
		defer wg.Done()
		out = pump(j.spec.Stdout, &mu, p.stdout, limit, make([]byte, 32<<10))
	}()
	go func() {
		defer wg.Done()
		errOut = pump(j.spec.Stderr, &mu, p.stderr, limit, make([]byte, 32<<10))
	}()
	return func() {
		deadline := time.Now().Add(outputGrace)
		p.stdout.SetReadDeadline(deadline)
		p.stderr.SetReadDeadline(deadline)
		wg.Wait()
		j.res.StdoutBytes, j.res.StderrBytes = out.total, errOut.total
		j.res.Truncated = out.truncated || errOut.truncated
	}
}

// finish reads the cgroup's accounting, removes the cgroup and says how
// the run ended.
func (j *job) finish() (Result, error) {
	st := j.cg.stats()
	j.res.CPU, j.res.MemPeak, j.res.OOMKilled, j.res.PidsLimited = st.cpu, st.memPeak, st.oomKilled, st.pidsLimited
	cg := j.cg
	j.cg = nil // removed here, not by close
	j.end.rmErr = cg.remove()
	j.end.stopped = j.a.stopReason()
	o, err := classify(j.spec.ID, j.end)
	j.res.Exit, j.res.Signal, j.res.TimedOut, j.res.Killed = o.exit, o.signal, o.timedOut, o.killed
	return j.res, err
}

// ending is what classify decides on.
type ending struct {
	status  initStatus         // the init's report, if it made one
	wait    syscall.WaitStatus // how the init itself ended
	waitErr error              // from Wait, joined with the exec check's
	stopped stopReason         // why the Runner stopped the run, if it did
	rmErr   error              // from removing the run's cgroup
}

// outcome is how a run ended, as its Result tells it.
type outcome struct {
	exit, signal     int
	timedOut, killed bool
}

// classify says how a run ended and whether that is an error. The init's
// report counts when it made one. Without one, the init died before the
// shell ended (killed by the Runner or the OOM killer, or crashed): a
// signal is reported as the shell's would be, an exit is an error unless
// the Runner stopped the run. A cgroup that could not be removed is an
// error too.
func classify(id string, e ending) (outcome, error) {
	o := outcome{timedOut: e.stopped == stopTimeout, killed: e.stopped == stopKilled}
	var err error
	switch {
	case e.status.Done:
		o.exit, o.signal = e.status.Exit, e.status.Signal
	case e.status.Error != "":
		err = fmt.Errorf("sandbox: run %s: init: %s", id, e.status.Error)
	case e.waitErr != nil:
		err = fmt.Errorf("sandbox: run %s: wait: %w", id, e.waitErr)
	case e.wait.Signaled():
		o.signal = int(e.wait.Signal())
		o.exit = 128 + o.signal
	default:
		o.exit = e.wait.ExitStatus()
		if !o.timedOut && !o.killed {
			err = fmt.Errorf("sandbox: run %s: init exited with status %d without a report", id, o.exit)
		}
	}
	switch {
	case err != nil:
		return o, errors.Join(err, e.rmErr)
	case e.rmErr != nil:
		return o, fmt.Errorf("sandbox: run %s: %w", id, e.rmErr)
	}
	return o, nil
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
	p, files, err := r.pipes(spec.Stdin != nil)
	if err != nil {
		return nil, err
	}
	defer r.closeInitEnds(files) // the init has its own copies once started
	p.startedAt = time.Now()
	// The init is small and lives only as long as the run: one P and no
	// GC keep its thread count low (each credential change is broadcast
	// to every thread) and mean it never needs a new thread once the
	// shell runs, which a run at its pids limit could deny it.
	proc, err := os.StartProcess(r.cfg.initPath, []string{initArgv0}, &os.ProcAttr{
		Env:   append([]string{initEnv + "=" + initMarker, "GOMAXPROCS=1", "GOGC=off"}, initExtraEnv...),
		Files: append(files[:len(files):len(files)], extra...),
		Sys:   initSysProcAttr(cgroupDir),
	})
	if err != nil {
		p.closeParentEnds()
		return nil, fmt.Errorf("start init %s: %w", r.cfg.initPath, err)
	}
	p.proc = proc
	return p, nil
}

// pipes makes the init's pipes. It returns the parent's ends and the
// init's files 0-4: stdin (the Runner's /dev/null without spec.Stdin),
// stdout, stderr, config and status.
func (r *Runner) pipes(withStdin bool) (*spawned, []*os.File, error) {
	p := &spawned{}
	ends := []struct {
		ours   **os.File
		weRead bool
	}{{&p.stdin, false}, {&p.stdout, true}, {&p.stderr, true}, {&p.config, false}, {&p.status, true}}
	files := make([]*os.File, 0, len(ends))
	if !withStdin {
		ends, files = ends[1:], append(files, r.devNull)
	}
	for _, e := range ends {
		rd, wr, err := os.Pipe()
		if err != nil {
			p.closeParentEnds()
			r.closeInitEnds(files)
			return nil, nil, fmt.Errorf("pipe: %w", err)
		}
		if e.weRead {
			*e.ours, files = rd, append(files, wr)
		} else {
			*e.ours, files = wr, append(files, rd)
		}
	}
	return p, files, nil
}

// closeInitEnds closes the init's ends of its pipes (not /dev/null, which
// every run shares).
func (r *Runner) closeInitEnds(files []*os.File) {
	for _, f := range files {
		if f != r.devNull {
			f.Close()
		}
	}
}

// initSysProcAttr puts the init in new mount, pid, ipc and uts namespaces
// and, with cgroupDir, in that cgroup.
//
// Pdeathsig: if the daemon dies, so does the init and with it the run
// (restart cleanup then removes the cgroup). It fires when the forking
// thread exits; Go ends a thread only when a goroutine exits while locked
// to it, which the daemon must not do (newEmptyNetns unlocks).
func initSysProcAttr(cgroupDir *os.File) *syscall.SysProcAttr {
	sys := &syscall.SysProcAttr{
		Cloneflags: unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWIPC | unix.CLONE_NEWUTS,
		Setsid:     true, // no controlling terminal to push input into
		Pdeathsig:  syscall.SIGKILL,
	}
	if cgroupDir != nil {
		sys.UseCgroupFD, sys.CgroupFD = true, int(cgroupDir.Fd())
	}
	return sys
}
