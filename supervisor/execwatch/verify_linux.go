package execwatch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/execgate/execgate/internal/procfs"
)

// traceOptions: stop at the exec event, and kill the tracee if the
// tracing thread goes away before it let go.
const traceOptions = unix.PTRACE_O_TRACEEXEC | unix.PTRACE_O_EXITKILL

// tracee is a caller seized between its allowed exec's check and the
// kernel's exec. Only the thread that seized it may use it. buf holds the
// new image's argv while it is compared.
type tracee struct {
	tid, tgid int
	buf       []byte
}

// seize attaches to the trapped thread without stopping it and queues an
// interrupt. While the thread waits in the kernel the interrupt does
// nothing; once the exec is let through, the thread stops at the exec
// event (success) or at the interrupt on its way back to user space
// (failure). Either way it cannot run a user instruction unseen.
func seize(tid, tgid int, buf []byte) (*tracee, error) {
	if _, _, errno := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_SEIZE, uintptr(tid), 0, traceOptions, 0, 0); errno != 0 {
		return nil, fmt.Errorf("seize %d: %w", tid, errno)
	}
	t := &tracee{tid: tid, tgid: tgid, buf: buf}
	if err := unix.PtraceInterrupt(tid); err != nil {
		t.release()
		return nil, fmt.Errorf("interrupt %d: %w", tid, err)
	}
	return t, nil
}

// wait returns the next report of the tracee, by its pid: this thread
// may also be the parent of other processes (a run's init forked from
// it), whose reports are not ours to take. A thread other than the leader
// that execs takes the leader's pid, so once its own pid is gone
// (ECHILD) the report comes under the process's.
func (t *tracee) wait() (int, unix.WaitStatus, error) {
	var ws unix.WaitStatus
	pid := t.tid
	for {
		got, err := unix.Wait4(pid, &ws, unix.WALL|unix.WNOTHREAD, nil)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.ECHILD) && pid != t.tgid:
			pid = t.tgid
			continue
		}
		return got, ws, err
	}
}

// release lets the tracee go at its next stop, or sees it die.
func (t *tracee) release() {
	for {
		pid, ws, err := t.wait()
		if err != nil || !ws.Stopped() {
			return // gone (ECHILD), exited or killed
		}
		detach(pid, ws)
		return
	}
}

// detach lets a stopped tracee go on, passing on the signal of a
// signal-delivery stop (the other stops carry none of their own).
func detach(pid int, ws unix.WaitStatus) {
	sig := 0
	if ws>>16 == 0 { // no event: a signal-delivery stop
		sig = int(ws.StopSignal())
	}
	unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_DETACH, uintptr(pid), 0, uintptr(sig), 0, 0)
}

// confirm follows the tracee through its exec. At the exec event the new
// image is compared with what was decided; a difference goes to the
// Checker, and a refusal kills the process before its first instruction.
func (t *tracee) confirm(ctx context.Context, decided *Exec, c Checker) {
	for {
		pid, ws, err := t.wait()
		if err != nil || ws.Exited() || ws.Signaled() {
			return // it died: nothing ran
		}
		if !ws.Stopped() {
			continue
		}
		if ws.StopSignal() != unix.SIGTRAP || ws>>16 != unix.PTRACE_EVENT_EXEC {
			// The exec failed (the interrupt stop) or a signal came first:
			// the old image goes on, as it would have.
			detach(pid, ws)
			return
		}
		// A thread other than the leader that execs takes the leader's pid:
		// pid is the process now, whichever thread called.
		ran, same := t.inspect(pid, decided)
		if same || c.Confirm(ctx, decided, ran) == nil {
			detach(pid, ws)
			return
		}
		unix.Kill(pid, unix.SIGKILL)
		// Collect the death, so no report of it is left for the next exec.
		for {
			_, ws, err := t.wait()
			if err != nil || ws.Exited() || ws.Signaled() {
				return
			}
		}
	}
}

// inspect reads the image a stopped process execed: the file the kernel
// opened and the argv it copied. same reports whether both are what was
// decided; otherwise ran describes what is there.
func (t *tracee) inspect(pid int, decided *Exec) (ran *Exec, same bool) {
	proc := "/proc/" + strconv.Itoa(pid)
	var st unix.Stat_t
	if err := unix.Stat(proc+"/exe", &st); err != nil {
		return &Exec{Pid: pid, Err: fmt.Errorf("read the executed file: %w", err)}, false
	}
	cmdline, err := procfs.Read(pid, "/cmdline", t.buf, MaxArgBytes+4096)
	if err != nil {
		return &Exec{Pid: pid, Err: fmt.Errorf("read the executed argv: %w", err)}, false
	}
	id := fileID(&st)
	if id == decided.File && argvIs(cmdline, decided.Argv) && !recent(id.Ctime) {
		return nil, true
	}
	ran = &Exec{Pid: pid, PPid: parentOf(pid), Cwd: decided.Cwd, File: id}
	ran.Resolved, _ = os.Readlink(proc + "/exe")
	ran.Path = ran.Resolved
	ran.Argv = strings.Split(strings.TrimSuffix(string(cmdline), "\x00"), "\x00")
	return ran, false
}

// settle is how old a file's ctime must be before an equal FileID proves
// equal content: the kernel may stamp a write with a coarse clock, so two
// writes within one tick can leave ctime unchanged. A younger file goes to
// the Checker, which looks at its content again.
const settle = 2 * time.Second

func recent(ctime unix.Timespec) bool {
	var now unix.Timespec
	if unix.ClockGettime(unix.CLOCK_REALTIME, &now) != nil {
		return true
	}
	return now.Sec-ctime.Sec < int64(settle/time.Second)+1
}

// argvIs reports whether cmdline (NUL-terminated words) is exactly argv.
// An empty argv reaches the new image as one empty word.
func argvIs(cmdline []byte, argv []string) bool {
	if len(argv) == 0 {
		return string(cmdline) == "\x00"
	}
	for _, a := range argv {
		if len(cmdline) < len(a)+1 || string(cmdline[:len(a)]) != a || cmdline[len(a)] != 0 {
			return false
		}
		cmdline = cmdline[len(a)+1:]
	}
	return len(cmdline) == 0
}
