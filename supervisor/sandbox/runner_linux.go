package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/execgate/execgate/supervisor/execwatch"
)

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

// started gives the run its init and cgroup; a run stopped before it had
// them is stopped again now.
func (a *run) started(p *os.Process, cg runCgroup) {
	a.mu.Lock()
	a.proc, a.cg = p, cg
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

// CgroupDir is the directory of a run's cgroup (Result.Cgroup,
// Leftover.Cgroup) in the hierarchy where every process of the run is
// listed (its cgroup.procs): under the cgroup2 mount, or in the freezer
// hierarchy on v1.
func (r *Runner) CgroupDir(cgroup string) string { return r.cg.procsDir(cgroup) }

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
