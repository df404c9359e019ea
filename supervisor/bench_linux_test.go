package supervisor

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/execgate/execgate/api"
	"github.com/execgate/execgate/audit"
	"github.com/execgate/execgate/profiles"
	"github.com/execgate/execgate/supervisor/sandbox"
)

// TestBenchExecCheck measures what the runtime exec check costs, with the
// daemon's own checker (decision and exec record into a JSONL sink on
// tmpfs): 1000 × /bin/true from a shell loop, and make -j2 of 30 C files,
// each with the check on and off, in interleaved rounds. It prints the
// median times, the ratio, and the cost per exec. `make bench` runs it
// (EXECGATE_BENCH=1); it is not for CI.
func TestBenchExecCheck(t *testing.T) {
	if os.Getenv("EXECGATE_BENCH") == "" {
		t.Skip("set EXECGATE_BENCH=1 to run")
	}
	if os.Geteuid() != 0 {
		t.Fatal("needs root")
	}
	root := fmt.Sprintf("/execgate-bench-%d", os.Getpid())
	r, err := sandbox.NewRunner(sandbox.WithCgroupRoot(root))
	if err != nil {
		t.Fatal(err)
	}
	defer removeCgroupRoot(root)
	defer r.Close()
	dir, _ := os.MkdirTemp("/var/tmp", "execgate-bench-")
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	src := filepath.Join(dir, "build")
	os.MkdirAll(src, 0o755)
	var objs []string
	for i := range 30 {
		os.WriteFile(filepath.Join(src, fmt.Sprintf("f%d.c", i)), []byte(fmt.Sprintf("int f%d(int x) { return x * %d + 1; }\n", i, i)), 0o644)
		objs = append(objs, fmt.Sprintf("f%d.o", i))
	}
	os.WriteFile(filepath.Join(src, "main.c"), []byte("int main(void) { return 0; }\n"), 0o644)
	os.WriteFile(filepath.Join(src, "Makefile"), []byte("prog: main.o "+strings.Join(objs, " ")+"\n\tcc -o $@ $^\n%.o: %.c\n\tcc -O0 -c $< -o $@\nclean:\n\trm -f *.o prog\n"), 0o644)
	exec.Command("chown", "-R", "4242:4242", dir).Run()

	p, err := profiles.ParseProfile("/etc/execgate/agents/bench.toml", []byte(`uid = 4242
security = "full"
workdirs = ["`+dir+`"]
[[rule]]
match = "git {checkout,switch,push} **"
action = "deny"
[files]
deny_read = ["**/.env"]
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	p.Resolve()
	p.UID, p.GID = 4242, 4242
	shm, _ := os.MkdirTemp("/dev/shm", "execgate-bench-")
	defer os.RemoveAll(shm)
	sink, err := audit.NewFileSink(filepath.Join(shm, "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	s := &Server{trail: newTrail(sink, t.Logf), runtimeCheck: true, now: time.Now, logf: t.Logf}
	ps := map[string]*profiles.Profile{"bench": p}
	s.reg.Store(&registry{byName: ps, bins: newBinIndex(ps)})

	run := func(script string, check bool) time.Duration {
		ri := &reqInfo{id: newID(), prof: p, cwd: src}
		spec := sandbox.Spec{ID: ri.id, Agent: "bench", Shell: "/bin/sh", Script: script, Dir: src, UID: 4242, GID: 4242,
			Env: []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + dir}, Limits: sandbox.Limits{Timeout: 5 * time.Minute}}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		if check {
			spec.ExecCheck = s.execChecker(ri, api.ExecRequest{Script: script}, newEventStream(httptest.NewRecorder()), []string{spec.Shell, "-c", script}, nil, cancel)
		}
		start := time.Now()
		res, err := r.Run(ctx, spec)
		if err != nil || res.Exit != 0 {
			t.Fatalf("%q (check %v): %v exit %d", script, check, err, res.Exit)
		}
		return time.Since(start)
	}
	loop := `i=0; while [ $i -lt 1000 ]; do /bin/true; i=$((i+1)); done`
	build := `make -s clean && make -s -j2 prog`
	rounds := 5
	if v := os.Getenv("EXECGATE_BENCH_ROUNDS"); v != "" {
		fmt.Sscan(v, &rounds)
	}
	type row struct {
		name    string
		script  string
		execs   int
		on, off []time.Duration
	}
	rows := []*row{{name: "1000 × /bin/true", script: loop, execs: 1000}, {name: "make -j2, 30 C files", script: build}}
	run(build, false) // warm the page cache
	for i := 0; i < rounds; i++ {
		for _, rw := range rows {
			if i%2 == 0 {
				rw.off = append(rw.off, run(rw.script, false))
				rw.on = append(rw.on, run(rw.script, true))
			} else {
				rw.on = append(rw.on, run(rw.script, true))
				rw.off = append(rw.off, run(rw.script, false))
			}
		}
	}
	// The build's exec count, from one checked run's records.
	before := countExecs(t, sink.Path())
	run(build, true)
	rows[1].execs = countExecs(t, sink.Path()) - before
	fmt.Printf("%-24s %12s %12s %8s %14s\n", "exec check", "off", "on", "ratio", "per exec")
	for _, rw := range rows {
		off, on := median(rw.off), median(rw.on)
		per := time.Duration(0)
		if rw.execs > 0 {
			per = (on - off) / time.Duration(rw.execs)
		}
		fmt.Printf("%-24s %12s %12s %7.2fx %11.1f µs  (%d execs)\n", rw.name, off.Round(time.Millisecond), on.Round(time.Millisecond),
			float64(on)/float64(off), float64(per.Nanoseconds())/1000, rw.execs)
	}
}

// removeCgroupRoot removes the (empty) agent and root cgroups the bench
// made, in every hierarchy, deepest first.
func removeCgroupRoot(root string) {
	hs, _ := filepath.Glob("/sys/fs/cgroup/*")
	for _, h := range hs {
		dirs, _ := filepath.Glob(filepath.Join(h, root, "*"))
		for _, d := range dirs {
			os.Remove(d)
		}
		os.Remove(filepath.Join(h, root))
	}
}

func countExecs(t *testing.T, path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), `"EXECGATE_EVENT":"exec"`)
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}
