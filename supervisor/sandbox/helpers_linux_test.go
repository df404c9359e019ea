package sandbox

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	MaybeInit()
	os.Exit(m.Run())
}

const (
	agentUID = 4242
	agentGID = 4242
	agent    = "sbxtest"
)

// testRoot is a cgroup root of this test process only, so that parallel
// test binaries and a real daemon never see each other's runs.
var testRoot = fmt.Sprintf("/execgate-test-%d", os.Getpid())

var runSeq atomic.Int64

func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("needs root: namespaces, cgroups and mounts are tested for real (make test runs as root)")
	}
}

// newRunner makes a Runner on the host's cgroups and checks at the end
// that it left no run cgroup behind.
func newRunner(t testing.TB, opts ...Option) *Runner {
	t.Helper()
	needRoot(t)
	r, err := NewRunner(append([]Option{WithCgroupRoot(testRoot)}, opts...)...)
	if err != nil {
		t.Fatalf("NewRunner: %v", err)
	}
	t.Cleanup(func() {
		left, err := r.Leftovers()
		if err != nil {
			t.Errorf("Leftovers: %v", err)
		}
		if len(left) > 0 {
			t.Errorf("leftover run cgroups: %v", left)
			r.RemoveLeftovers()
		}
		r.Close()
	})
	return r
}

// workdir is a directory the agent owns, outside /tmp (each run gets a
// private /tmp, so the host's is invisible in the sandbox).
func workdir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("/var/tmp", "execgate-sbx-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	if err := os.Chmod(d, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(d, agentUID, agentGID); err != nil {
		t.Fatal(err)
	}
	return d
}

// writeFile writes content at dir/name, owned by the agent.
func writeFile(t testing.TB, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, agentUID, agentGID); err != nil {
		t.Fatal(err)
	}
}

func newSpec(t testing.TB, dir, script string) Spec {
	id := fmt.Sprintf("t%d-%d", os.Getpid(), runSeq.Add(1))
	return Spec{
		ID: id, Agent: agent,
		Script: script,
		Dir:    dir,
		UID:    agentUID, GID: agentGID,
		Home: dir, User: "agent",
		Env:       FilterEnv([]string{"PATH", "LANG"}, os.Environ(), dir, "agent", dir),
		WalkRoots: []string{dir},
		Limits:    Limits{Timeout: 60 * time.Second},
	}
}

// syncBuffer is a bytes.Buffer safe to read while a run writes it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *syncBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]byte(nil), b.buf.Bytes()...)
}

// runIt runs spec and returns its result and output; a setup error fails the
// test.
func runIt(t testing.TB, r *Runner, spec Spec) (Result, string, string) {
	t.Helper()
	var out, errb syncBuffer
	spec.Stdout, spec.Stderr = &out, &errb
	res, err := r.Run(context.Background(), spec)
	if err != nil {
		t.Fatalf("Run(%q): %v\nstdout: %s\nstderr: %s", spec.Script, err, out.String(), errb.String())
	}
	return res, out.String(), errb.String()
}

// procsWithArg lists host pids whose command line contains arg.
func procsWithArg(arg string) []string {
	var found []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		for _, a := range strings.Split(string(b), "\x00") {
			if a == arg {
				found = append(found, e.Name()+":"+strings.ReplaceAll(string(b), "\x00", " "))
			}
		}
	}
	return found
}

// cgroupGone checks that the run's cgroup no longer exists in any
// hierarchy the runner uses.
func cgroupGone(t testing.TB, res Result) {
	t.Helper()
	if res.Cgroup == "" {
		t.Fatal("no cgroup in result")
	}
	for _, h := range []string{"memory", "pids", "cpu", "cpuacct", "freezer", "unified"} {
		p := filepath.Join("/sys/fs/cgroup", h, res.Cgroup)
		if _, err := os.Stat(p); err == nil {
			t.Errorf("cgroup %s still exists", p)
		}
	}
}

func openFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func withTimeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
