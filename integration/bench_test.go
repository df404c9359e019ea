package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestBenchEndToEnd is `make bench`'s end-to-end table (EXECGATE_BENCH=1):
// egsh -c true through the daemon (sandbox, exec check, audit to the real
// journald) against sh -c true, unshare and bwrap run the same way from the
// same process, in interleaved rounds; throughput with 32 clients; and the
// daemon's RSS idle and with 64 runs.
func TestBenchEndToEnd(t *testing.T) {
	if os.Getenv("EXECGATE_BENCH") == "" {
		t.Skip("set EXECGATE_BENCH=1 to run")
	}
	d := startDaemonAudit(t, "journal", profile{"benchbot", strings.Replace(auditProfile, "concurrent = 64", "concurrent = 80", 1)})
	asAgent := func(argv ...string) func() error {
		return func() error {
			cmd := exec.Command(argv[0], argv[1:]...)
			cmd.Dir = d.work
			cmd.Env = []string{"EXECGATE_SOCKET=" + d.agentSock(), "PATH=/usr/bin:/bin"}
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: agentUID, Gid: agentUID}}
			if out, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("%v: %v %s", argv, err, out)
			}
			return nil
		}
	}
	rows := []struct {
		name string
		op   func() error
		ds   []time.Duration
	}{
		{name: "egsh -c true (execgated: sandbox, exec check, journald)", op: asAgent(filepath.Join(binDir, "egsh"), "-c", "true")},
		{name: "sh -c true", op: asAgent("sh", "-c", "true")},
		{name: "unshare --mount --pid --fork --ipc --uts true", op: func() error {
			return exec.Command("unshare", "--mount", "--pid", "--fork", "--ipc", "--uts", "true").Run()
		}},
		{name: "bwrap --unshare-all ... true", op: asAgent("bwrap", "--unshare-all", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "true")},
	}
	for i := range rows {
		if err := rows[i].op(); err != nil {
			t.Fatalf("%s: %v", rows[i].name, err)
		}
	}
	for round := 0; round < 7; round++ {
		for k := range rows {
			r := &rows[(k+round)%len(rows)]
			for range 15 {
				start := time.Now()
				if err := r.op(); err != nil {
					t.Fatal(err)
				}
				r.ds = append(r.ds, time.Since(start))
			}
		}
	}
	med := func(ds []time.Duration) time.Duration {
		s := append([]time.Duration(nil), ds...)
		sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
		return s[len(s)/2]
	}
	eg := med(rows[0].ds)
	fmt.Printf("%-58s %10s %8s\n", "command (median of 105 runs)", "per run", "egsh is")
	for _, r := range rows {
		m := med(r.ds)
		fmt.Printf("%-58s %10s %7.2fx\n", r.name, m.Round(10*time.Microsecond), float64(eg)/float64(m))
	}

	idle := procRSS(d.pid)
	const n = 64
	var wg sync.WaitGroup
	peak := 0
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
				if r := procRSS(d.pid); r > peak {
					peak = r
				}
			}
		}
	}()
	for range n {
		wg.Add(1)
		go func() { defer wg.Done(); d.egsh(agentUID, nil, "-c", "sleep 3") }()
	}
	waitFor(t, 30*time.Second, "64 runs", func() bool { return pgrepUID(agentUID, "sleep") >= n })
	during := procRSS(d.pid)
	wg.Wait()
	close(stop)

	const total = 2000
	start := time.Now()
	if out, err := loadAs(t, d, total, 32); err != nil {
		t.Fatalf("load: %v %.500s", err, out)
	}
	el := time.Since(start)
	fmt.Printf("throughput, 32 clients, %d mixed requests (1/4 denied)   %6.0f requests/s\n", total, float64(total)/el.Seconds())
	fmt.Printf("daemon RSS idle / with %d runs / peak                    %d / %d / %d KiB\n", n, idle, during, max(peak, during))
}
