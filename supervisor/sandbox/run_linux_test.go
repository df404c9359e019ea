package sandbox

import (
	"errors"
	"strings"
	"syscall"
	"testing"
)

// How a run's end becomes its Result and error: pure, no root needed.
func TestClassify(t *testing.T) {
	exited := func(code int) syscall.WaitStatus { return syscall.WaitStatus(code << 8) }
	signaled := func(sig syscall.Signal) syscall.WaitStatus { return syscall.WaitStatus(sig) }
	errWait := errors.New("wait failed")
	errRm := errors.New("cgroup busy")
	for _, c := range []struct {
		name    string
		e       ending
		want    outcome
		errHas  []string // substrings of the error; nil: no error
		errWrap []error  // errors.Is must find these
	}{
		{name: "shell exited",
			e:    ending{status: initStatus{Exit: 3, Done: true}, wait: exited(3)},
			want: outcome{exit: 3}},
		{name: "shell killed by a signal",
			e:    ending{status: initStatus{Exit: 137, Signal: 9, Done: true}, wait: exited(137)},
			want: outcome{exit: 137, signal: 9}},
		{name: "report wins over a stop",
			e:    ending{status: initStatus{Exit: 0, Done: true}, stopped: stopTimeout},
			want: outcome{timedOut: true}},
		{name: "init killed on timeout",
			e:    ending{wait: signaled(syscall.SIGKILL), stopped: stopTimeout},
			want: outcome{exit: 137, signal: 9, timedOut: true}},
		{name: "init killed on Kill",
			e:    ending{wait: signaled(syscall.SIGKILL), stopped: stopKilled},
			want: outcome{exit: 137, signal: 9, killed: true}},
		{name: "init killed by someone else",
			e:    ending{wait: signaled(syscall.SIGKILL)},
			want: outcome{exit: 137, signal: 9}},
		{name: "init exited without a report when stopped",
			e:    ending{wait: exited(2), stopped: stopKilled},
			want: outcome{exit: 2, killed: true}},
		{name: "init exited without a report",
			e:      ending{wait: exited(2)},
			want:   outcome{exit: 2},
			errHas: []string{"sandbox: run r1: init exited with status 2 without a report"}},
		{name: "init reported a setup error",
			e:      ending{status: initStatus{Error: "mounts: mask /x: permission denied"}, wait: exited(125)},
			errHas: []string{"sandbox: run r1: init: mounts: mask /x: permission denied"}},
		{name: "setup error and cgroup left",
			e:      ending{status: initStatus{Error: "seccomp: load: invalid argument"}, rmErr: errRm},
			errHas: []string{"init: seccomp: load", "cgroup busy"}, errWrap: []error{errRm}},
		{name: "wait failed",
			e:      ending{waitErr: errWait, stopped: stopKilled},
			want:   outcome{killed: true},
			errHas: []string{"sandbox: run r1: wait: wait failed"}, errWrap: []error{errWait}},
		{name: "cgroup left after a clean run",
			e:      ending{status: initStatus{Exit: 0, Done: true}, rmErr: errRm},
			errHas: []string{"sandbox: run r1: cgroup busy"}, errWrap: []error{errRm}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := classify("r1", c.e)
			if got != c.want {
				t.Errorf("outcome %+v, want %+v", got, c.want)
			}
			if (err != nil) != (c.errHas != nil) {
				t.Fatalf("error %v, want one with %q", err, c.errHas)
			}
			for _, s := range c.errHas {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q lacks %q", err, s)
				}
			}
			for _, w := range c.errWrap {
				if !errors.Is(err, w) {
					t.Errorf("error %q does not wrap %v", err, w)
				}
			}
		})
	}
}
