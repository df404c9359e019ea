package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

const (
	benchDirectProfile = `uid = 65534
security = "full"
workdirs = ["WORK"]

[limits]
timeout = "300s"
`
	// No caps: every set is applied at once.
	benchReviewProfile = `uid = 65534
security = "full"
workdirs = ["WORK"]

[changes]
mode = "review"

[limits]
timeout = "300s"
`
)

// TestBenchChangesEndToEnd is `make bench`'s change-set table
// (EXECGATE_BENCH=1), as medians of interleaved rounds through two
// daemons, one whose profile is in review mode and one in direct mode:
//   - a write-heavy job, 10,000 files of 20 KB (200 MB) into 100 existing
//     directories (the apply's worst case: one rename per file), egsh to
//     exit, so review mode includes Compute and the apply;
//   - the start-up of a run, egsh -c true.
func TestBenchChangesEndToEnd(t *testing.T) {
	if os.Getenv("EXECGATE_BENCH") == "" {
		t.Skip("set EXECGATE_BENCH=1 to run")
	}
	const files, size, dirs, rounds = 10000, 20000, 100, 7
	start := func(body string) *daemon {
		d := prepareDaemon(t, "journal", profile{"benchbot", body})
		d.launch(launchOpts{args: []string{"--cgroup-root", uniqueCgroupRoot()}})
		for i := 0; i < dirs; i++ {
			p := filepath.Join(d.work, fmt.Sprintf("d%02d", i))
			os.Mkdir(p, 0o755)
			os.Chown(p, agentUID, agentUID)
		}
		return d
	}
	direct, review := start(benchDirectProfile), start(benchReviewProfile)
	// The script says how long its writes took: the rest is the run's
	// start-up and, in review mode, Compute and the apply.
	writer := fmt.Sprintf("s=$(date +%%s%%N); for d in d*; do head -c %d /dev/zero | split -b %d -a 3 - $d/f; done; echo $(( $(date +%%s%%N) - s ))",
		files/dirs*size, size)
	clean := func(d *daemon) {
		for i := 0; i < dirs; i++ {
			p := filepath.Join(d.work, fmt.Sprintf("d%02d", i))
			ents, _ := os.ReadDir(p)
			for _, e := range ents {
				if err := os.Remove(filepath.Join(p, e.Name())); err != nil {
					t.Fatal(err)
				}
			}
		}
		exec.Command("sync").Run()
	}
	count := func(d *daemon) (n int, bytes int64) {
		for i := 0; i < dirs; i++ {
			ents, _ := os.ReadDir(filepath.Join(d.work, fmt.Sprintf("d%02d", i)))
			for _, e := range ents {
				if fi, err := e.Info(); err == nil {
					n++
					bytes += fi.Size()
				}
			}
		}
		return n, bytes
	}
	var dj, rj, dw, rw []time.Duration
	job := func(d *daemon, total, writes *[]time.Duration) {
		clean(d)
		t0 := time.Now()
		r := d.egsh(agentUID, nil, "-c", writer)
		el := time.Since(t0)
		w, err := strconv.ParseInt(strings.TrimSpace(string(r.stdout)), 10, 64)
		if n, b := count(d); r.code != 0 || err != nil || n != files || b != files*size {
			t.Fatalf("write job: exit %d, %d files, %d bytes in the real tree: %q %q", r.code, n, b, r.stdout, r.stderr)
		}
		*total, *writes = append(*total, el), append(*writes, time.Duration(w))
	}
	for i := 0; i < rounds; i++ {
		if i%2 == 0 {
			job(direct, &dj, &dw)
			job(review, &rj, &rw)
		} else {
			job(review, &rj, &rw)
			job(direct, &dj, &dw)
		}
	}
	clean(direct)
	clean(review)
	if os.Getenv("EXECGATE_BENCH_VERBOSE") != "" {
		fmt.Println("direct", dj, dw, "review", rj, rw)
	}
	md, mr := benchMedian(dj), benchMedian(rj)
	fmt.Printf("write job, %d files of %d B (200 MB) in %d directories, egsh to exit (median of %d): direct %v, review incl. apply %v: %.2fx (goal <= 1.2x)\n",
		files, size, dirs, rounds, md.Round(time.Millisecond), mr.Round(time.Millisecond), float64(mr)/float64(md))
	rest := func(total, writes []time.Duration) time.Duration {
		var d []time.Duration
		for i := range total {
			d = append(d, total[i]-writes[i])
		}
		return benchMedian(d)
	}
	fmt.Printf("  the script's writes: direct %v, review (into the overlay) %v: %.2fx; the rest (start-up, exit; review: Compute and apply) direct %v, review %v\n",
		benchMedian(dw).Round(time.Millisecond), benchMedian(rw).Round(time.Millisecond), float64(benchMedian(rw))/float64(benchMedian(dw)),
		rest(dj, dw).Round(time.Millisecond), rest(rj, rw).Round(time.Millisecond))

	// Start-up: egsh -c true.
	var ds, rs []time.Duration
	one := func(d *daemon, into *[]time.Duration) {
		t0 := time.Now()
		if r := d.egsh(agentUID, nil, "-c", "true"); r.code != 0 {
			t.Fatalf("egsh -c true: %d %q", r.code, r.stderr)
		}
		*into = append(*into, time.Since(t0))
	}
	for i := 0; i < 5; i++ { // warm up
		one(direct, &ds)
		one(review, &rs)
	}
	ds, rs = ds[:0], rs[:0]
	for round := 0; round < 7; round++ {
		for k := 0; k < 2; k++ {
			d, into := direct, &ds
			if (k+round)%2 == 1 {
				d, into = review, &rs
			}
			for range 15 {
				one(d, into)
			}
		}
	}
	sd, sr := benchMedian(ds), benchMedian(rs)
	fmt.Printf("start-up, egsh -c true (median of %d): direct %v, review %v: %+.2f ms added (goal <= 0.5 ms), %.2fx\n",
		len(ds), sd.Round(10*time.Microsecond), sr.Round(10*time.Microsecond), float64(sr-sd)/1e6, float64(sr)/float64(sd))
	if left, _ := os.ReadDir(filepath.Join(review.dir, "state", "changes")); len(left) != 0 {
		t.Errorf("left in the state dir: %s", strings.Join(names(left), " "))
	}
}

func names(ents []os.DirEntry) []string {
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

func benchMedian(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}
