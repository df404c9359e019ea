package changes

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestBenchChanges (EXECGATE_BENCH=1) prints, as medians of interleaved
// rounds:
//   - a write-heavy job (10,000 files of 20 KB, 200 MB, into 100 existing
//     directories: the apply's worst case, one rename per file) in review
//     mode, Prepare + overlay mount + writes + Compute + Apply, against the
//     same writes straight into the directory (both in a mount namespace
//     of their own, by the same writer);
//   - the start-up review mode adds: Prepare, and one overlay mount;
//   - Compute over 100,000 created paths, with the heap it takes.
func TestBenchChanges(t *testing.T) {
	if os.Getenv("EXECGATE_BENCH") != "1" {
		t.Skip("set EXECGATE_BENCH=1")
	}
	const rounds, files, size, dirs = 5, 10000, 20000, 100
	e := newEnv(t)
	e.host(fmt.Sprintf("i=0; while [ $i -lt %d ]; do mkdir $(printf d%%03d $i); i=$((i+1)); done", dirs))
	writer := fmt.Sprintf("EXECGATE_CHANGES_TOOL=write %s %s %d %d %d", quote(os.Args[0]), quote(e.lower), files, size, dirs)
	var direct, review, phases [][]time.Duration
	for i := 0; i < rounds; i++ {
		if i%2 == 1 { // alternate which goes first
			review = append(review, benchReview(t, e, writer, i))
			clean(t, e, dirs)
		}
		direct = append(direct, []time.Duration{benchDirect(t, e, writer)})
		clean(t, e, dirs)
		if i%2 == 0 {
			review = append(review, benchReview(t, e, writer, i))
			clean(t, e, dirs)
		}
	}
	if os.Getenv("EXECGATE_BENCH_VERBOSE") != "" {
		fmt.Println("direct", col(direct, 0), "review", sums(review))
	}
	d, rv := median(col(direct, 0)), median(sums(review))
	fmt.Printf("write job, %d files, %s: direct %v, review (Prepare+mount+write+Compute+Apply) %v: %.2fx\n",
		files, FormatBytes(files*size), d.Round(time.Millisecond), rv.Round(time.Millisecond), float64(rv)/float64(d))
	phases = review
	fmt.Printf("  review phases: Prepare %v, mount+write %v, Compute %v, Apply %v\n",
		median(col(phases, 0)), median(col(phases, 1)).Round(time.Millisecond), median(col(phases, 2)).Round(time.Millisecond), median(col(phases, 3)).Round(time.Millisecond))
	benchStartup(t, e)
	benchCompute100k(t)
}

func benchDirect(t *testing.T, e *env, writer string) time.Duration {
	run(t, "sync")
	t0 := time.Now()
	run(t, "unshare", "--mount", "--propagation", "private", "sh", "-ec", writer)
	return time.Since(t0)
}

// benchReview returns the times of Prepare, mount+write, Compute, Apply.
func benchReview(t *testing.T, e *env, writer string, i int) []time.Duration {
	run(t, "sync")
	var out []time.Duration
	t0 := time.Now()
	r, err := Prepare(e.state, "bench"+strconv.Itoa(i), []string{e.lower})
	if err != nil {
		t.Fatal(err)
	}
	out = append(out, time.Since(t0))
	t0 = time.Now()
	overlayRun(t, r, true, "/", writer, nil)
	out = append(out, time.Since(t0))
	t0 = time.Now()
	s := compute(t, r)
	out = append(out, time.Since(t0))
	t0 = time.Now()
	if err := r.Apply(s); err != nil {
		t.Fatal(err)
	}
	out = append(out, time.Since(t0))
	if got := len(s.Changes); got != 10000 {
		t.Fatalf("%d changes", got)
	}
	return out
}

func clean(t *testing.T, e *env, dirs int) {
	for i := 0; i < dirs; i++ {
		d := filepath.Join(e.lower, fmt.Sprintf("d%03d", i))
		ents, _ := os.ReadDir(d)
		for _, x := range ents {
			if err := os.Remove(filepath.Join(d, x.Name())); err != nil {
				t.Fatal(err)
			}
		}
	}
	time.Sleep(10 * time.Millisecond) // see env.prepare
}

// benchStartup times Prepare (with Discard outside the clock) and one
// overlay mount in a mount namespace of the tool's own.
func benchStartup(t *testing.T, e *env) {
	var prep []time.Duration
	for i := 0; i < 200; i++ {
		t0 := time.Now()
		r, err := Prepare(e.state, "s"+strconv.Itoa(i), []string{e.lower})
		prep = append(prep, time.Since(t0))
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			defer r.Discard()
			cmd := exec.Command(os.Args[0], r.Layers[0].MountOptions(), e.lower, "200")
			cmd.Env = append(os.Environ(), "EXECGATE_CHANGES_TOOL=mountbench")
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("mount bench: %v: %s", err, out)
			}
			fmt.Printf("start-up added by review mode: Prepare %v, overlay mount %s (median of 200)\n", median(prep[:1]), out)
			prep = prep[:0]
			continue
		}
		if err := r.Discard(); err != nil {
			t.Fatal(err)
		}
	}
	fmt.Printf("  Prepare alone, median of 199 after the first: %v\n", median(prep))
}

func mountBench(opts, lower string, n int) (time.Duration, error) {
	runtime.LockOSThread()
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return 0, err
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return 0, err
	}
	var ds []time.Duration
	for i := 0; i < n; i++ {
		t0 := time.Now()
		if err := unix.Mount("overlay", lower, "overlay", 0, opts); err != nil {
			return 0, fmt.Errorf("mount: %w", err)
		}
		ds = append(ds, time.Since(t0))
		if err := unix.Unmount(lower, 0); err != nil {
			return 0, err
		}
	}
	return median(ds), nil
}

func benchCompute100k(t *testing.T) {
	e := newEnv(t)
	r := e.prepare("big")
	defer r.Discard()
	overlayRun(t, r, true, "/", fmt.Sprintf("EXECGATE_CHANGES_TOOL=write %s %s 100000 10 1000", quote(os.Args[0]), quote(e.lower+"/new")), nil)
	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	t0 := time.Now()
	s := compute(t, r)
	d := time.Since(t0)
	runtime.ReadMemStats(&m1)
	fmt.Printf("Compute over %d created paths: %v, %.1f MiB allocated, %.1f MiB heap in use after\n",
		len(s.Changes), d.Round(time.Millisecond), float64(m1.TotalAlloc-m0.TotalAlloc)/(1<<20), float64(m1.HeapInuse)/(1<<20))
}

func col(rows [][]time.Duration, i int) []time.Duration {
	var out []time.Duration
	for _, r := range rows {
		out = append(out, r[i])
	}
	return out
}

func sums(rows [][]time.Duration) []time.Duration {
	var out []time.Duration
	for _, r := range rows {
		var s time.Duration
		for _, d := range r {
			s += d
		}
		out = append(out, s)
	}
	return out
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}
