package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/cgroups/v3/cgroup1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// cgroupV1 places runs in the freezer, pids, memory, cpu and cpuacct
// hierarchies mounted under mount (/sys/fs/cgroup/<controller>).
type cgroupV1 struct {
	mount, root string
	subsystems  []cgroup1.Subsystem
	has         map[cgroup1.Name]bool
	swap        bool // memory.memsw.* exists: limit memory+swap too
}

func newCgroupV1(mount, root string) (*cgroupV1, error) {
	c := &cgroupV1{mount: mount, root: root, has: map[cgroup1.Name]bool{}}
	for _, s := range []cgroup1.Subsystem{
		cgroup1.NewFreezer(mount), cgroup1.NewPids(mount), cgroup1.NewMemory(mount),
		cgroup1.NewCpu(mount), cgroup1.NewCpuacct(mount),
	} {
		if fi, err := os.Stat(path.Join(mount, string(s.Name()))); err == nil && fi.IsDir() {
			c.subsystems = append(c.subsystems, s)
			c.has[s.Name()] = true
		}
	}
	if !c.has[cgroup1.Freezer] {
		return nil, fmt.Errorf("cgroup v1: no freezer hierarchy under %s: runs could not be killed reliably", mount)
	}
	_, err := os.Stat(path.Join(mount, "memory", "memory.memsw.limit_in_bytes"))
	c.swap = err == nil
	return c, nil
}

func (c *cgroupV1) version() int { return 1 }

// procsDir is in the freezer hierarchy, which every run has.
func (c *cgroupV1) procsDir(rel string) string { return c.dir(cgroup1.Freezer, rel) }

func (c *cgroupV1) hierarchy() ([]cgroup1.Subsystem, error) { return c.subsystems, nil }

func (c *cgroupV1) dir(n cgroup1.Name, rel string) string {
	return path.Join(c.mount, string(n), rel)
}

func (c *cgroupV1) create(agent, id string, lim Limits) (runCgroup, error) {
	rel := path.Join(c.root, agent, id)
	res := &specs.LinuxResources{}
	need := func(n cgroup1.Name) error {
		if !c.has[n] {
			return fmt.Errorf("cgroup v1: a %s limit is set but there is no %s hierarchy under %s", n, n, c.mount)
		}
		return nil
	}
	if lim.Memory > 0 {
		if err := need(cgroup1.Memory); err != nil {
			return nil, err
		}
		m := lim.Memory
		res.Memory = &specs.LinuxMemory{Limit: &m}
		if c.swap {
			res.Memory.Swap = &m // memsw counts memory+swap: no swap beyond the limit
		}
	}
	if lim.Pids > 0 {
		if err := need(cgroup1.Pids); err != nil {
			return nil, err
		}
		p := lim.Pids + initPidsReserve
		res.Pids = &specs.LinuxPids{Limit: &p}
	}
	if lim.CPU > 0 {
		if err := need(cgroup1.Cpu); err != nil {
			return nil, err
		}
		q, p := cpuQuota(lim.CPU)
		res.CPU = &specs.LinuxCPU{Quota: &q, Period: &p}
	}
	// A leftover with the same id would be silently reused by New.
	if _, err := os.Lstat(c.dir(cgroup1.Freezer, rel)); err == nil {
		return nil, fmt.Errorf("cgroup v1: run cgroup %s already exists", rel)
	}
	cg, err := cgroup1.New(cgroup1.StaticPath(rel), res, cgroup1.WithHierarchy(c.hierarchy))
	if err != nil {
		r := &v1Run{c: c, path: rel}
		if cg2, lerr := cgroup1.Load(cgroup1.StaticPath(rel), cgroup1.WithHierarchy(c.hierarchy)); lerr == nil {
			r.cg = cg2
			_ = r.remove()
		}
		return nil, fmt.Errorf("cgroup v1: create %s: %w", rel, err)
	}
	return &v1Run{c: c, path: rel, cg: cg}, nil
}

func (c *cgroupV1) load(agent, id string) (runCgroup, error) {
	rel := path.Join(c.root, agent, id)
	cg, err := cgroup1.Load(cgroup1.StaticPath(rel), cgroup1.WithHierarchy(c.hierarchy))
	if err != nil {
		return nil, fmt.Errorf("cgroup v1: load %s: %w", rel, err)
	}
	return &v1Run{c: c, path: rel, cg: cg}, nil
}

// list takes the union over the hierarchies: a half-removed run may be
// left in only some of them.
func (c *cgroupV1) list() ([]Leftover, error) {
	seen := map[string]bool{}
	var out []Leftover
	for _, s := range c.subsystems {
		runs, err := listRuns(c.dir(s.Name(), c.root), c.root)
		if err != nil {
			return nil, err
		}
		for _, r := range runs {
			if !seen[r.Cgroup] {
				seen[r.Cgroup] = true
				out = append(out, r)
			}
		}
	}
	return out, nil
}

func (c *cgroupV1) prune() {
	for _, s := range c.subsystems {
		pruneDir(c.dir(s.Name(), c.root))
	}
}

type v1Run struct {
	c    *cgroupV1
	path string
	cg   cgroup1.Cgroup
}

func (r *v1Run) rel() string                          { return r.path }
func (r *v1Run) cloneInto() *os.File                  { return nil }
func (r *v1Run) freezer() string                      { return r.c.dir(cgroup1.Freezer, r.path) }
func (r *v1Run) file(n cgroup1.Name, f string) string { return path.Join(r.c.dir(n, r.path), f) }

// add is the parent's half of the v1 handshake: the child waits for its
// configuration, which is sent only after this.
func (r *v1Run) add(pid int) error {
	if err := r.cg.AddProc(uint64(pid)); err != nil {
		return fmt.Errorf("cgroup v1: add pid %d to %s: %w", pid, r.path, err)
	}
	return nil
}

// kill freezes the cgroup so nothing can fork, SIGKILLs every process and
// thaws it so the signals are delivered. The freeze is bounded: a process
// in uninterruptible sleep can keep the cgroup FREEZING.
func (r *v1Run) kill() error {
	state := path.Join(r.freezer(), "freezer.state")
	frozen := os.WriteFile(state, []byte("FROZEN"), 0) == nil
	for i := 0; frozen && i < 200; i++ {
		b, err := os.ReadFile(state)
		if err != nil || strings.TrimSpace(string(b)) == "FROZEN" {
			break
		}
		time.Sleep(500 * time.Microsecond)
	}
	pids, err := readPids(path.Join(r.freezer(), "cgroup.procs"))
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	if frozen {
		_ = os.WriteFile(state, []byte("THAWED"), 0)
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("cgroup v1: kill %s: %w", r.path, err)
	}
	return nil
}

func (r *v1Run) freeze(on bool) error {
	state := "THAWED"
	if on {
		state = "FROZEN"
	}
	if err := os.WriteFile(path.Join(r.freezer(), "freezer.state"), []byte(state), 0); err != nil {
		return fmt.Errorf("cgroup v1: %s %s: %w", strings.ToLower(state), r.path, err)
	}
	return nil
}

func (r *v1Run) stats() cgroupStats {
	return cgroupStats{
		cpu:         time.Duration(readInt(r.file(cgroup1.Cpuacct, "cpuacct.usage"))),
		memPeak:     readInt(r.file(cgroup1.Memory, "memory.max_usage_in_bytes")),
		oomKilled:   readKey(r.file(cgroup1.Memory, "memory.oom_control"), "oom_kill") > 0,
		pidsLimited: readKey(r.file(cgroup1.Pids, "pids.events"), "max") > 0,
	}
}

// remove uses rmdir directly rather than the library's Delete, which walks
// every hierarchy for processes first (about 0.5ms a run); the kernel
// refuses to remove a cgroup that still has processes anyway.
func (r *v1Run) remove() error {
	return removeWithRetry(r, func() error {
		var errs []error
		for _, s := range r.c.subsystems {
			errs = append(errs, rmdir(r.c.dir(s.Name(), r.path)))
		}
		return errors.Join(errs...)
	})
}
