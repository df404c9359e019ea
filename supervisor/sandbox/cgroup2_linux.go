package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/containerd/cgroups/v3/cgroup2"
	"golang.org/x/sys/unix"
)

// cgroupV2 places runs in the unified hierarchy mounted at mount.
//
// It writes cgroup.subtree_control only inside its root: in the root (for
// the agent cgroups) and in each agent cgroup (for the runs), once per
// controller and cgroup, when a run first needs it. Nothing above the root
// is written: the controllers the root itself has are its parent's to
// give, and a limit whose controller the root lacks fails the run.
type cgroupV2 struct {
	mount, root string
	available   map[string]bool // cgroup.controllers of the mount's root

	mu      sync.Mutex                 // makes the directories below the root
	enabled map[string]map[string]bool // dir -> controllers enabled for its children
}

func newCgroupV2(mount, root string) (*cgroupV2, error) {
	b, err := os.ReadFile(path.Join(mount, "cgroup.controllers"))
	if err != nil {
		return nil, fmt.Errorf("cgroup v2: %s is not a cgroup2 mount: %w", mount, err)
	}
	c := &cgroupV2{mount: mount, root: root, available: map[string]bool{}, enabled: map[string]map[string]bool{}}
	for _, name := range strings.Fields(string(b)) {
		c.available[name] = true
	}
	return c, nil
}

func (c *cgroupV2) version() int { return 2 }

func (c *cgroupV2) procsDir(rel string) string { return path.Join(c.mount, rel) }

func (c *cgroupV2) create(agent, id string, lim Limits) (runCgroup, error) {
	rel := path.Join(c.root, agent, id)
	res, controllers, err := c.resources(lim)
	if err != nil {
		return nil, err
	}
	dir := path.Join(c.mount, rel)
	if err := c.makeRun(agent, dir, controllers); errors.Is(err, unix.EEXIST) {
		return nil, fmt.Errorf("cgroup v2: run cgroup %s already exists", rel)
	} else if err != nil {
		return nil, fmt.Errorf("cgroup v2: create %s: %w", rel, err)
	}
	r := &v2Run{path: rel, dir: dir}
	// The library only writes the limits here: it never touches a
	// cgroup.subtree_control (its NewManager does, up from the mount).
	if r.m, err = cgroup2.Load(rel, cgroup2.WithMountpoint(c.mount)); err == nil {
		err = r.m.Update(res)
	}
	if err != nil {
		_ = rmdir(dir)
		return nil, fmt.Errorf("cgroup v2: create %s: %w", rel, err)
	}
	if lim.Memory > 0 {
		// No swap beyond the memory limit; the file is absent without swap
		// accounting (and must not be created).
		if err := writeExisting(path.Join(dir, "memory.swap.max"), "0"); err != nil && !errors.Is(err, os.ErrNotExist) {
			_ = r.remove()
			return nil, fmt.Errorf("cgroup v2: %s: memory.swap.max: %w", rel, err)
		}
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		_ = r.remove()
		return nil, fmt.Errorf("cgroup v2: open %s: %w", dir, err)
	}
	r.fd = os.NewFile(uintptr(fd), dir)
	return r, nil
}

// resources turns lim into the library's resources and the controllers
// they need, refusing a limit whose controller the hierarchy lacks.
func (c *cgroupV2) resources(lim Limits) (*cgroup2.Resources, []string, error) {
	res := &cgroup2.Resources{}
	var need []string
	add := func(name string) error {
		if !c.available[name] {
			return fmt.Errorf("cgroup v2: a %s limit is set but the %s controller is not available in %s", name, name, c.mount)
		}
		need = append(need, name)
		return nil
	}
	if lim.Memory > 0 {
		if err := add("memory"); err != nil {
			return nil, nil, err
		}
		m := lim.Memory
		res.Memory = &cgroup2.Memory{Max: &m}
	}
	if lim.Pids > 0 {
		if err := add("pids"); err != nil {
			return nil, nil, err
		}
		res.Pids = &cgroup2.Pids{Max: lim.Pids + initPidsReserve}
	}
	if lim.CPU > 0 {
		if err := add("cpu"); err != nil {
			return nil, nil, err
		}
		q, p := cpuQuota(lim.CPU)
		res.CPU = &cgroup2.CPU{Max: cgroup2.NewCPUMax(&q, &p)}
	}
	return res, need, nil
}

// makeRun makes the run's directory dir below its agent's, with the
// controllers it needs enabled in the root and the agent cgroup first.
func (c *cgroupV2) makeRun(agent, dir string, controllers []string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	root := path.Join(c.mount, c.root)
	if err := os.MkdirAll(path.Dir(root), 0o755); err != nil {
		return err
	}
	for _, d := range []string{root, path.Join(root, agent)} {
		if err := c.mkdir(d); err != nil {
			return err
		}
		if err := c.enable(d, controllers); err != nil {
			return err
		}
	}
	return unix.Mkdir(dir, 0o755) // EEXIST: a leftover is never reused
}

// mkdir makes dir if it is missing. A new one has no controllers enabled,
// whatever its predecessor of the same name had.
func (c *cgroupV2) mkdir(dir string) error {
	err := unix.Mkdir(dir, 0o755)
	switch {
	case err == nil:
		delete(c.enabled, dir)
	case !errors.Is(err, unix.EEXIST):
		return fmt.Errorf("mkdir %s: %w", dir, err)
	}
	return nil
}

// enable turns controllers on for dir's children, those this Runner has
// not turned on there yet.
func (c *cgroupV2) enable(dir string, controllers []string) error {
	var add []string
	for _, name := range controllers {
		if !c.enabled[dir][name] {
			add = append(add, "+"+name)
		}
	}
	if len(add) == 0 {
		return nil
	}
	if err := writeExisting(path.Join(dir, "cgroup.subtree_control"), strings.Join(add, " ")); err != nil {
		return fmt.Errorf("enable %s for the children of %s: %w", strings.Join(add, " "), dir, err)
	}
	if c.enabled[dir] == nil {
		c.enabled[dir] = map[string]bool{}
	}
	for _, name := range controllers {
		c.enabled[dir][name] = true
	}
	return nil
}

func (c *cgroupV2) load(agent, id string) (runCgroup, error) {
	rel := path.Join(c.root, agent, id)
	dir := path.Join(c.mount, rel)
	if _, err := os.Lstat(dir); err != nil {
		return nil, fmt.Errorf("cgroup v2: load %s: %w", rel, err)
	}
	m, err := cgroup2.Load(rel, cgroup2.WithMountpoint(c.mount))
	if err != nil {
		return nil, fmt.Errorf("cgroup v2: load %s: %w", rel, err)
	}
	return &v2Run{path: rel, dir: dir, m: m}, nil
}

func (c *cgroupV2) list() ([]Leftover, error) {
	return listRuns(path.Join(c.mount, c.root), c.root)
}

func (c *cgroupV2) prune() {
	c.mu.Lock()
	defer c.mu.Unlock()
	pruneDir(path.Join(c.mount, c.root))
}

func writeExisting(file, value string) error {
	f, err := os.OpenFile(file, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(value)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

type v2Run struct {
	path, dir string
	m         *cgroup2.Manager
	fd        *os.File // for CLONE_INTO_CGROUP
	closeOnce sync.Once
}

func (r *v2Run) rel() string         { return r.path }
func (r *v2Run) cloneInto() *os.File { return r.fd }

// add is for processes started outside the cgroup (not used by Run, which
// clones straight into it).
func (r *v2Run) add(pid int) error {
	if err := r.m.AddProc(uint64(pid)); err != nil {
		return fmt.Errorf("cgroup v2: add pid %d to %s: %w", pid, r.path, err)
	}
	return nil
}

// kill writes cgroup.kill (the library falls back to freeze, kill, thaw
// before Linux 5.14).
func (r *v2Run) kill() error {
	if err := r.m.Kill(); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("cgroup v2: kill %s: %w", r.path, err)
	}
	return nil
}

func (r *v2Run) freeze(on bool) error {
	v := "0"
	if on {
		v = "1"
	}
	if err := os.WriteFile(path.Join(r.dir, "cgroup.freeze"), []byte(v), 0); err != nil {
		return fmt.Errorf("cgroup v2: freeze=%s %s: %w", v, r.path, err)
	}
	return nil
}

func (r *v2Run) stats() cgroupStats {
	return cgroupStats{
		cpu:         time.Duration(readKey(path.Join(r.dir, "cpu.stat"), "usage_usec")) * time.Microsecond,
		memPeak:     readInt(path.Join(r.dir, "memory.peak")), // Linux 5.19+
		oomKilled:   readKey(path.Join(r.dir, "memory.events"), "oom_kill") > 0,
		pidsLimited: readKey(path.Join(r.dir, "pids.events"), "max") > 0,
	}
}

// remove uses rmdir directly, as v1 does, rather than the library's
// Delete (which reads the cgroup's type and every process in it first):
// the kernel refuses to remove a cgroup that still has processes anyway.
func (r *v2Run) remove() error {
	r.closeOnce.Do(func() {
		if r.fd != nil {
			r.fd.Close()
		}
	})
	return removeWithRetry(r, func() error { return rmdir(r.dir) })
}
