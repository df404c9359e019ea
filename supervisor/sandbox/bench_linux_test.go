package sandbox

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"
)

// The benchmarks compare a sandboxed `sh -c true` with baselines started
// the same way from the same process:
//
//	go test -run '^$' -bench . ./supervisor/sandbox/
//
// TestBenchRatios prints the ratios from one run (see testdata/bench.sh).

// sandboxTrue returns an op that runs `sh -c true` in the sandbox.
// EXECGATE_BENCH_CGROUP2=MOUNT runs it on cgroup v2 at MOUNT (such as
// /sys/fs/cgroup/unified on a hybrid host) to see the v2 path's cost.
func sandboxTrue(tb testing.TB) func() error {
	var opts []Option
	if m := os.Getenv("EXECGATE_BENCH_CGROUP2"); m != "" {
		opts = append(opts, WithCgroupV2(m))
	}
	r := newRunner(tb, opts...)
	d := workdir(tb)
	spec := newSpec(tb, d, "true")
	ctx := context.Background()
	return func() error {
		spec.ID = fmt.Sprintf("bench-%d-%d", os.Getpid(), runSeq.Add(1))
		res, err := r.Run(ctx, spec)
		if err == nil && res.Exit != 0 {
			err = fmt.Errorf("exit %d", res.Exit)
		}
		return err
	}
}

// execTrue returns an op that runs argv directly, or nil if argv[0] is
// not installed.
func execTrue(argv ...string) func() error {
	if _, err := exec.LookPath(argv[0]); err != nil {
		return nil
	}
	return func() error {
		if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %v: %s", strings.Join(argv, " "), err, out)
		}
		return nil
	}
}

var (
	argvSh      = []string{"sh", "-c", "true"}
	argvUnshare = []string{"unshare", "--mount", "--pid", "--fork", "--ipc", "--uts", "true"}
	argvBwrap   = []string{"bwrap", "--unshare-all", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "true"}
)

func benchOp(b *testing.B, op func() error) {
	if op == nil {
		b.Skip("not installed")
	}
	if err := op(); err != nil { // warm-up: the agent's netns, page cache
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := op(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSandboxTrue(b *testing.B) { benchOp(b, sandboxTrue(b)) }
func BenchmarkExecShTrue(b *testing.B)  { benchOp(b, execTrue(argvSh...)) }
func BenchmarkUnshareTrue(b *testing.B) { needRoot(b); benchOp(b, execTrue(argvUnshare...)) }
func BenchmarkBwrapTrue(b *testing.B)   { benchOp(b, execTrue(argvBwrap...)) }

// TestBenchRatios times the four commands in interleaved rounds, so that
// load from elsewhere on the machine hits them alike, and prints the median
// per-run time of each and the sandbox's ratio to each baseline. It is for
// `make bench` (EXECGATE_BENCH=1), not for CI.
//
// Each command's deferred kernel work (namespace and cgroup teardown done
// by kworkers after the process exits) mostly runs during the settle
// pauses, so it is not billed to the next command; the per-run times are
// latencies.
func TestBenchRatios(t *testing.T) {
	if os.Getenv("EXECGATE_BENCH") == "" {
		t.Skip("set EXECGATE_BENCH=1 to run")
	}
	needRoot(t)
	rounds, per, settle := 9, 40, 50*time.Millisecond
	if v := os.Getenv("EXECGATE_BENCH_ROUNDS"); v != "" {
		fmt.Sscan(v, &rounds)
	}
	rows := []struct {
		name string
		op   func() error
	}{
		{"sandbox: sh -c true", sandboxTrue(t)},
		{strings.Join(argvSh, " "), execTrue(argvSh...)},
		{strings.Join(argvUnshare, " "), execTrue(argvUnshare...)},
		{"bwrap --unshare-all --ro-bind / / --dev /dev --proc /proc true", execTrue(argvBwrap...)},
	}
	times := make([][]time.Duration, len(rows))
	for _, r := range rows {
		if r.op != nil {
			if err := r.op(); err != nil { // warm-up
				t.Fatalf("%s: %v", r.name, err)
			}
		}
	}
	for round := 0; round < rounds; round++ {
		// Rotate the order, and let the kernel finish the previous block's
		// deferred work (bwrap's network namespaces are torn down by a
		// kworker after it exits) so it is not billed to the next block.
		for k := range rows {
			i := (k + round) % len(rows)
			r := rows[i]
			if r.op == nil {
				continue
			}
			time.Sleep(settle)
			start := time.Now()
			for j := 0; j < per; j++ {
				if err := r.op(); err != nil {
					t.Fatalf("%s: %v", r.name, err)
				}
			}
			times[i] = append(times[i], time.Since(start)/time.Duration(per))
		}
	}
	median := func(d []time.Duration) time.Duration {
		s := append([]time.Duration(nil), d...)
		sort.Slice(s, func(a, b int) bool { return s[a] < s[b] })
		return s[len(s)/2]
	}
	fmt.Printf("median of %d interleaved rounds x %d runs, %d CPUs\n", rounds, per, runtime.NumCPU())
	med := make([]time.Duration, len(rows))
	for i, r := range rows {
		if r.op == nil {
			fmt.Printf("  %-66s skipped (not installed)\n", r.name)
			continue
		}
		med[i] = median(times[i])
		fmt.Printf("  %-66s %9v/run\n", r.name, med[i].Round(time.Microsecond))
	}
	for i, r := range rows[1:] {
		if med[i+1] > 0 {
			fmt.Printf("  sandbox / %-56s %6.2fx\n", r.name, float64(med[0])/float64(med[i+1]))
		}
	}
}
