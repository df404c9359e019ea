package execwatch

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestBenchConfirm measures what the exec check and its confirmation cost
// per exec: 1000 × /bin/true from a shell loop, with no filter, with the
// check alone (a decision that allows everything), and with the check and
// the confirmation at the exec event, in interleaved rounds. `make bench`
// runs it (EXECGATE_BENCH=1).
func TestBenchConfirm(t *testing.T) {
	if os.Getenv("EXECGATE_BENCH") == "" {
		t.Skip("set EXECGATE_BENCH=1 to run")
	}
	const execs = 1000
	script := fmt.Sprintf(`i=0; while [ $i -lt %d ]; do /bin/true; i=$((i+1)); done`, execs)
	allow := DecideFunc(func(context.Context, *Exec) error { return nil })
	modes := []struct {
		name string
		run  func()
	}{
		{"no filter", func() { exec.Command("/bin/sh", "-c", script).Run() }},
		{"check", func() { timedWatch(t, script, allow, false) }},
		{"check + confirm", func() { timedWatch(t, script, allow, true) }},
	}
	const rounds = 7
	times := make([][]time.Duration, len(modes))
	for range rounds {
		for i, m := range modes {
			start := time.Now()
			m.run()
			times[i] = append(times[i], time.Since(start))
		}
	}
	med := func(d []time.Duration) time.Duration {
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		return d[len(d)/2]
	}
	base := med(times[0])
	fmt.Printf("median of %d interleaved rounds, %d × /bin/true\n", rounds, execs)
	fmt.Printf("%-18s %10s %8s %14s\n", "", "total", "ratio", "added per exec")
	var prev time.Duration = base
	for i, m := range modes {
		d := med(times[i])
		fmt.Printf("%-18s %10v %7.2fx %12.1fµs\n", m.name, d.Round(time.Millisecond), float64(d)/float64(base), float64(d-prev)/float64(execs)/1e3)
		prev = d
	}
}

// timedWatch runs script under the filter, served by watch.
func timedWatch(t *testing.T, script string, c Checker, confirm bool) {
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	theirs := os.NewFile(uintptr(pair[1]), "child-end")
	defer unix.Close(pair[0])
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "EXECWATCH_CHILD=sh", "EXECWATCH_SCRIPT="+script)
	cmd.ExtraFiles = []*os.File{theirs}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	theirs.Close()
	listener, err := RecvFD(pair[0])
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close()
	done := make(chan error, 1)
	go func() { done <- watch(context.Background(), listener, c, confirm) }()
	cmd.Wait()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
