package sandbox

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func readTrim(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Errorf("read %s: %v", p, err)
	}
	return strings.TrimSpace(string(b))
}

// The v2 limits land in the right files. The host has no v2 controllers,
// so a plain directory stands in for the mount (the library writes files).
func TestCgroupV2LimitFiles(t *testing.T) {
	mnt := t.TempDir()
	os.WriteFile(filepath.Join(mnt, "cgroup.controllers"), []byte("cpuset cpu io memory pids\n"), 0o644)
	for _, d := range []string{"", "execgate", "execgate/flow"} {
		os.MkdirAll(filepath.Join(mnt, d), 0o755)
		os.WriteFile(filepath.Join(mnt, d, "cgroup.subtree_control"), nil, 0o644)
	}
	m, err := newCgroupV2(mnt, "/execgate")
	if err != nil {
		t.Fatal(err)
	}
	rc, err := m.create("flow", "run1", Limits{Memory: 2 << 30, Pids: 512, CPU: 1.5})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(mnt, "execgate", "flow", "run1")
	for file, want := range map[string]string{
		"memory.max": "2147483648",
		"pids.max":   "520", // 512 + initPidsReserve
		"cpu.max":    "150000 100000",
	} {
		if got := readTrim(t, filepath.Join(dir, file)); got != want {
			t.Errorf("%s = %q, want %q", file, got, want)
		}
	}
	// Controllers are enabled for the run's cgroup inside the root only:
	// in the root and the agent cgroup, never above the root.
	for _, d := range []string{"execgate", "execgate/flow"} {
		got := readTrim(t, filepath.Join(mnt, d, "cgroup.subtree_control"))
		for _, c := range []string{"+memory", "+pids", "+cpu"} {
			if !strings.Contains(got, c) {
				t.Errorf("%s/cgroup.subtree_control = %q, missing %s", d, got, c)
			}
		}
	}
	if got := readTrim(t, filepath.Join(mnt, "cgroup.subtree_control")); got != "" {
		t.Errorf("the mount's root, above the cgroup root, was written: %q", got)
	}
	// Once per cgroup: the next run of the agent writes nothing, a new
	// agent's cgroup gets only what its run needs, and the root only what
	// it did not have yet.
	for _, d := range []string{"execgate", "execgate/flow"} {
		os.WriteFile(filepath.Join(mnt, d, "cgroup.subtree_control"), nil, 0o644)
	}
	os.MkdirAll(filepath.Join(mnt, "execgate", "other"), 0o755)
	os.WriteFile(filepath.Join(mnt, "execgate", "other", "cgroup.subtree_control"), nil, 0o644)
	for _, c := range []struct {
		agent, id string
		lim       Limits
	}{{"flow", "run3", Limits{Memory: 1 << 20, Pids: 10, CPU: 1}}, {"other", "run4", Limits{Pids: 10}}} {
		rc, err := m.create(c.agent, c.id, c.lim)
		if err != nil {
			t.Fatal(err)
		}
		rc.cloneInto().Close()
	}
	for d, want := range map[string]string{"execgate": "", "execgate/flow": "", "execgate/other": "+pids"} {
		if got := readTrim(t, filepath.Join(mnt, d, "cgroup.subtree_control")); got != want {
			t.Errorf("%s/cgroup.subtree_control = %q, want %q", d, got, want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "memory.swap.max")); err == nil {
		t.Error("memory.swap.max was created rather than written")
	}
	if rc.rel() != "/execgate/flow/run1" || rc.cloneInto() == nil {
		t.Errorf("rel %q cloneInto %v", rc.rel(), rc.cloneInto())
	}
	rc.cloneInto().Close()
	if _, err := m.create("flow", "run1", Limits{}); err == nil {
		t.Error("an existing run cgroup was reused")
	}

	// A limit whose controller is missing is an error, not a silent no-op.
	os.WriteFile(filepath.Join(mnt, "cgroup.controllers"), []byte("cpu pids\n"), 0o644)
	m, _ = newCgroupV2(mnt, "/execgate")
	if _, err := m.create("flow", "run2", Limits{Memory: 1 << 20}); err == nil || !strings.Contains(err.Error(), "memory") {
		t.Errorf("missing memory controller: %v", err)
	}
}

func TestCgroupV1LimitFiles(t *testing.T) {
	mnt := t.TempDir()
	for _, c := range []string{"memory", "pids", "cpu", "cpuacct", "freezer"} {
		os.MkdirAll(filepath.Join(mnt, c), 0o755)
	}
	m, err := newCgroupV1(mnt, "/execgate")
	if err != nil {
		t.Fatal(err)
	}
	rc, err := m.create("flow", "run1", Limits{Memory: 64 << 20, Pids: 100, CPU: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string]string{
		"memory/execgate/flow/run1/memory.limit_in_bytes": "67108864",
		"pids/execgate/flow/run1/pids.max":                "108",
		"cpu/execgate/flow/run1/cpu.cfs_quota_us":         "50000",
		"cpu/execgate/flow/run1/cpu.cfs_period_us":        "100000",
	} {
		if got := readTrim(t, filepath.Join(mnt, file)); got != want {
			t.Errorf("%s = %q, want %q", file, got, want)
		}
	}
	if rc.cloneInto() != nil {
		t.Error("v1 cannot clone into a cgroup")
	}
	if _, err := newCgroupV1(t.TempDir(), "/execgate"); err == nil {
		t.Error("no freezer: want an error")
	}
}

// unifiedMount returns the host's cgroup2 mount to drive the v2 code on a
// hybrid host (the v2 code is also what a unified host runs).
func unifiedMount(t *testing.T) string {
	needRoot(t)
	for _, p := range []string{"/sys/fs/cgroup/unified", "/sys/fs/cgroup"} {
		var st unix.Statfs_t
		if unix.Statfs(p, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
			if _, err := os.Stat(filepath.Join(p, "cgroup.kill")); err == nil || p != "/sys/fs/cgroup" {
				return p
			}
		}
	}
	t.Fatal("no cgroup2 mount: the v2 path must be tested")
	return ""
}

// The v2 path for real: CLONE_INTO_CGROUP, cgroup.kill, stats, removal.
func TestCgroupV2Runs(t *testing.T) {
	mnt := unifiedMount(t)
	r := newRunner(t, WithCgroupV2(mnt))
	if r.CgroupVersion() != 2 {
		t.Fatalf("version %d", r.CgroupVersion())
	}
	d := workdir(t)

	// Placement: the init is in the run cgroup from its first instruction
	// (there is no add on v2: without CLONE_INTO_CGROUP it would sit in the
	// test's own cgroup), and the cgroup namespace is rooted there.
	spec := newSpec(t, d, `cat /proc/self/cgroup; sleep 1051 & sleep 1052 & echo started; wait`)
	dir := filepath.Join(mnt, testRoot, agent, spec.ID)
	var procs []int
	var initCg string
	res, _ := runUntil(t, r, context.Background(), spec, func() {
		procs, _ = readPids(filepath.Join(dir, "cgroup.procs"))
		initCg = readTrim(t, "/proc/"+strconv.Itoa(firstPid(procs))+"/cgroup")
		if !r.Kill(spec.ID) { // cgroup.kill
			t.Error("Kill: not found")
		}
	})
	if len(procs) < 4 { // init, shell, two sleeps
		t.Errorf("run cgroup held %v", procs)
	}
	if !strings.Contains(initCg, "0::"+filepath.Join(testRoot, agent, spec.ID)) {
		t.Errorf("init's cgroup: %q", initCg)
	}
	if !res.Killed || res.Signal != 9 || res.CPU <= 0 {
		t.Errorf("killed run: %+v", res)
	}
	for _, a := range []string{"1051", "1052"} {
		if p := procsWithArg(a); len(p) > 0 {
			t.Errorf("survived cgroup.kill: %v", p)
		}
	}
	if _, err := os.Stat(dir); err == nil {
		t.Errorf("%s not removed", dir)
	}

	// Exit status, namespace root, timeout, and nothing left after many runs.
	res, out, _ := runIt(t, r, newSpec(t, d, `grep '^0::' /proc/self/cgroup; exit 3`))
	if res.Exit != 3 || out != "0::/\n" {
		t.Errorf("exit %d out %q", res.Exit, out)
	}
	spec = newSpec(t, d, `sleep 100`)
	spec.Limits.Timeout = time.Second
	start := time.Now()
	res, _, _ = runIt(t, r, spec)
	if !res.TimedOut || time.Since(start) > 5*time.Second {
		t.Errorf("timeout: %+v after %v", res, time.Since(start))
	}
	for i := 0; i < 20; i++ {
		runIt(t, r, newSpec(t, d, "true"))
	}
	if ents, _ := os.ReadDir(filepath.Join(mnt, testRoot, agent)); len(ents) > 0 {
		var names []string
		for _, e := range ents {
			if e.IsDir() {
				names = append(names, e.Name())
			}
		}
		if len(names) > 0 {
			t.Errorf("left in %s: %v", mnt, names)
		}
	}
	if p := agentProcs(); len(p) > 0 {
		t.Errorf("processes left: %v", p)
	}
}

func firstPid(p []int) int {
	m := 0
	for _, x := range p {
		if m == 0 || x < m {
			m = x
		}
	}
	return m
}

// The v2 path writes nothing above its cgroup root: with the root nested
// in a cgroup the Runner was handed (as under systemd's delegation), every
// ancestor's cgroup.subtree_control is as it was, and each run's cgroup is
// gone when Run returns, whether the run ran or was refused at its start.
func TestCgroupV2StaysInItsSubtree(t *testing.T) {
	mnt := unifiedMount(t)
	given := filepath.Join(mnt, testRoot+"-given")
	if err := os.Mkdir(given, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(given) })
	ancestors := []string{mnt, given}
	before := map[string]string{}
	for _, d := range ancestors {
		before[d] = readTrim(t, filepath.Join(d, "cgroup.subtree_control"))
	}
	r := newRunner(t, WithCgroupV2(mnt), WithCgroupRoot(testRoot+"-given/runs"))
	d := workdir(t)
	for i, script := range []string{"true", "exit 7", "sleep 100"} {
		spec := newSpec(t, d, script)
		if i == 2 {
			spec.OnStart = func(int, string) error { return errors.New("no start record") }
		}
		res, err := r.Run(context.Background(), spec)
		if (err != nil) != (i == 2) {
			t.Errorf("%q: %v", script, err)
		}
		if res.Cgroup == "" {
			t.Fatalf("%q: no cgroup in %+v", script, res)
		}
		if _, err := os.Lstat(filepath.Join(mnt, res.Cgroup)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%q: %s is still there after Run: %v", script, res.Cgroup, err)
		}
	}
	r.Close() // prunes the root
	for _, d := range ancestors {
		if got := readTrim(t, filepath.Join(d, "cgroup.subtree_control")); got != before[d] {
			t.Errorf("%s/cgroup.subtree_control changed from %q to %q", d, before[d], got)
		}
	}
}
