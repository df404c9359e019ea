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
type cgroupV2 struct {
	mount, root string
	available   map[string]bool // cgroup.controllers of the mount's root
}

func newCgroupV2(mount, root string) (*cgroupV2, error) {
	b, err := os.ReadFile(path.Join(mount, "cgroup.controllers"))
	if err != nil {
		return nil, fmt.Errorf("cgroup v2: %s is not a cgroup2 mount: %w", mount, err)
	}
	c := &cgroupV2{mount: mount, root: root, available: map[string]bool{}}
	for _, name := range strings.Fields(string(b)) {
		c.available[name] = true
	}
	return c, nil
}

func (c *cgroupV2) version() int { return 2 }

func (c *cgroupV2) create(agent, id string, lim Limits) (runCgroup, error) {
	rel := path.Join(c.root, agent, id)
	res := &cgroup2.Resources{}
	need := func(name string) error {
		if !c.available[name] {
			return fmt.Errorf("cgroup v2: a %s limit is set but the %s controller is not available in %s", name, name, c.mount)
		}
		return nil
	}
	if lim.Memory > 0 {
		if err := need("memory"); err != nil {
			return nil, err
		}
		m := lim.Memory
		res.Memory = &cgroup2.Memory{Max: &m}
	}
	if lim.Pids > 0 {
		if err := need("pids"); err != nil {
			return nil, err
		}
		res.Pids = &cgroup2.Pids{Max: lim.Pids + initPidsReserve}
	}
	if lim.CPU > 0 {
		if err := need("cpu"); err != nil {
			return nil, err
		}
		q, p := cpuQuota(lim.CPU)
		res.CPU = &cgroup2.CPU{Max: cgroup2.NewCPUMax(&q, &p)}
	}
	dir := path.Join(c.mount, rel)
	if _, err := os.Lstat(dir); err == nil {
		return nil, fmt.Errorf("cgroup v2: run cgroup %s already exists", rel)
	}
	m, err := cgroup2.NewManager(c.mount, rel, res)
	if err != nil {
		_ = os.Remove(dir)
		return nil, fmt.Errorf("cgroup v2: create %s: %w", rel, err)
	}
	r := &v2Run{path: rel, dir: dir, m: m}
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

func (c *cgroupV2) prune() { pruneDir(path.Join(c.mount, c.root)) }

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

func (r *v2Run) remove() error {
	r.closeOnce.Do(func() {
		if r.fd != nil {
			r.fd.Close()
		}
	})
	return removeWithRetry(r, func() error {
		if _, err := os.Lstat(r.dir); errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return r.m.Delete()
	})
}
