package sandbox

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/cgroups/v3"
	"golang.org/x/sys/unix"
)

// cgroupManager is one cgroup hierarchy layout (v1 or v2) under the
// Runner's root: <root>/<agent>/<id>.
type cgroupManager interface {
	// create makes the run cgroup with lim applied.
	create(agent, id string, lim Limits) (runCgroup, error)
	// load opens an existing run cgroup (for leftovers).
	load(agent, id string) (runCgroup, error)
	// list returns every run cgroup under the root.
	list() ([]Leftover, error)
	// prune removes empty agent cgroups and the root, best effort.
	prune()
	// procsDir is the directory of the cgroup rel (relative to the
	// hierarchy root) where every process of a run is listed.
	procsDir(rel string) string
	version() int
}

// runCgroup is one run's cgroup.
type runCgroup interface {
	rel() string
	// cloneInto returns a directory fd for CLONE_INTO_CGROUP, or nil when
	// the child must be added after it starts (v1).
	cloneInto() *os.File
	// add puts pid (and all its threads) in the cgroup.
	add(pid int) error
	// kill SIGKILLs every process in the cgroup.
	kill() error
	// freeze stops (true) or resumes (false) every process in the cgroup.
	freeze(on bool) error
	// stats reads the accounting; call it before remove.
	stats() cgroupStats
	// remove kills what is left, waits for the cgroup to empty, removes it.
	remove() error
}

type cgroupStats struct {
	cpu         time.Duration
	memPeak     int64
	oomKilled   bool
	pidsLimited bool
}

// newCgroupManager decides v1 or v2 once, with cgroups.Mode() unless an
// option forces one.
func newCgroupManager(c *config) (cgroupManager, error) {
	switch {
	case c.v2Mount != "":
		return newCgroupV2(c.v2Mount, c.cgroupRoot)
	case c.v1Mount != "":
		return newCgroupV1(c.v1Mount, c.cgroupRoot)
	}
	switch cgroups.Mode() {
	case cgroups.Unified:
		return newCgroupV2("/sys/fs/cgroup", c.cgroupRoot)
	case cgroups.Legacy, cgroups.Hybrid:
		return newCgroupV1("/sys/fs/cgroup", c.cgroupRoot)
	}
	return nil, errors.New("cgroup: no cgroup file system mounted at /sys/fs/cgroup")
}

// removeWithRetry kills and removes until the cgroup is gone: a process that
// was just killed can take a moment to leave it.
func removeWithRetry(rc runCgroup, tryRemove func() error) error {
	var err error
	delay := time.Millisecond
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err = tryRemove(); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroup %s: remove: %w", rc.rel(), err)
		}
		_ = rc.kill()
		time.Sleep(delay)
		if delay < 100*time.Millisecond {
			delay *= 2
		}
	}
}

// rmdir removes a cgroup directory, which the kernel refuses while a
// process is in it; one already gone is no error.
func rmdir(dir string) error {
	if err := unix.Rmdir(dir); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("rmdir %s: %w", dir, err)
	}
	return nil
}

// listRuns finds <dir>/<agent>/<id> directories; dir is the root in one
// hierarchy.
func listRuns(dir, root string) ([]Leftover, error) {
	agents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cgroup: list %s: %w", dir, err)
	}
	var out []Leftover
	for _, a := range agents {
		if !a.IsDir() {
			continue
		}
		runs, err := os.ReadDir(path.Join(dir, a.Name()))
		if err != nil {
			continue
		}
		for _, r := range runs {
			if r.IsDir() {
				out = append(out, Leftover{Agent: a.Name(), ID: r.Name(), Cgroup: path.Join(root, a.Name(), r.Name())})
			}
		}
	}
	return out, nil
}

// pruneDir removes empty agent cgroups under dir and then dir itself.
func pruneDir(dir string) {
	agents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, a := range agents {
		if a.IsDir() {
			_ = os.Remove(path.Join(dir, a.Name())) // fails while it has runs
		}
	}
	_ = os.Remove(dir)
}

// readInt reads a file holding one integer; missing or odd files give 0.
func readInt(file string) int64 {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0
	}
	v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0
	}
	return v
}

// readKey reads "key value" lines (cpu.stat, memory.events, ...).
func readKey(file, key string) int64 {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if ok && k == key {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}

// readPids reads a cgroup.procs file.
func readPids(file string) ([]int, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		if p, err := strconv.Atoi(f); err == nil && p > 0 {
			pids = append(pids, p)
		}
	}
	return pids, nil
}

// initPidsReserve is added to Limits.Pids for the init's own threads (the
// Go runtime's, about five with GOMAXPROCS=1), which count against pids.max
// like the run's processes: without it a small limit would stop the init
// from starting rather than the run from forking.
const initPidsReserve = 8

// cpuQuota turns cores into a CFS quota over a 100ms period.
func cpuQuota(cores float64) (quota int64, period uint64) {
	period = 100000
	quota = int64(cores * float64(period))
	if quota < 1000 {
		quota = 1000 // the kernel's minimum is 1ms
	}
	return quota, period
}
