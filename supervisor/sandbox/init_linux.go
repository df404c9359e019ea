package sandbox

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/execgate/execgate/supervisor/execwatch"
)

// The init stage is this binary re-executed with initEnv set, as PID 1 of a
// new pid namespace. Its file descriptors:
const (
	initConfigFD = 3 // read: the initConfig; EOF is the parent's "go"
	initStatusFD = 4 // write: initStatus lines
	initFirstFD  = 5 // optional files (netns, ...); their numbers are in the config
)

const (
	initEnv    = "_EXECGATE_SANDBOX_INIT"
	initMarker = "1"
	initArgv0  = "execgate-init"
)

// initConfig is everything the init needs, resolved by the parent. It
// travels in the wire encoding (wire_linux.go).
type initConfig struct {
	Shell string
	Argv  []string
	Env   []string
	Dir   string
	UID   uint32
	GID   uint32

	// Mount targets, each with the inode the daemon planned for: the init
	// mounts only over that inode (openTarget).
	ReadOnly  []mountTarget
	MaskFiles []mountTarget
	MaskDirs  []mountTarget
	// NetFiles are replaced by NetData (resolv.conf and hosts) when the
	// run's network is captured (Spec.Egress).
	NetFiles []mountTarget
	NetData  []string
	// Overlays: overlayfs on each Target, with its upper and work
	// directories.
	Overlays []mountTarget
	Uppers   []string
	Works    []string

	NetNSFD int    // -1: keep the current network namespace
	Seccomp []byte // raw BPF, compiled once by the Runner

	// NotifyFD is a unix socket to the daemon for the exec-notification
	// listener (SCM_RIGHTS), or -1. See installExecNotify.
	NotifyFD   int
	NotifyProg []byte // the notification filter, compiled once by the Runner
}

func isInit() bool {
	return os.Getenv(initEnv) == initMarker && os.Getpid() == 1
}

func init() {
	// Non-dumpable as early as Go allows: before main, so the agent can
	// never read the init's memory or open its /proc files.
	if isInit() {
		_ = unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
	}
}

// MaybeInit runs the sandbox init stage and exits if this process is one;
// otherwise it returns at once. Call it first thing in main and in TestMain.
func MaybeInit() {
	if os.Getenv(initEnv) != initMarker {
		return
	}
	if os.Getpid() != 1 {
		// Not started by a Runner (only the init is PID 1 of its own pid
		// namespace): do not let a stray variable reach children.
		os.Unsetenv(initEnv)
		return
	}
	// The capability sets, no_new_privs, landlock and the network and
	// cgroup namespaces are per thread: set them up on this thread and
	// fork the shell from it. Never unlocked.
	runtime.LockOSThread()
	os.Exit(runInit())
}

// runInit sets the run up in the order that matters, forks the shell,
// drops its own privileges and reaps until the shell exits. A step that
// fails is reported on the status pipe, and the run ends before any of
// the agent's code ran (or, once the shell started, with it).
func runInit() int {
	status := os.NewFile(initStatusFD, "status")
	report := func(s initStatus) { _, _ = status.Write(s.line()) }
	fail := func(err error) int {
		report(initStatus{Error: err.Error()})
		return 125
	}
	unix.Umask(0o022)
	cfg, prog, err := readInitConfig()
	if err != nil {
		return fail(err)
	}
	if err := enterRun(cfg); err != nil {
		return fail(err)
	}
	if err := confine(cfg, prog); err != nil {
		return fail(err)
	}
	pid, err := forkShell(cfg)
	if err != nil {
		return fail(err)
	}
	if err := dropIdentity(cfg.UID, cfg.GID); err != nil {
		// Exiting kills the shell with the rest of the pid namespace.
		return fail(fmt.Errorf("drop privileges: %w", err))
	}
	exit, sig := reap(pid)
	report(initStatus{Exit: exit, Signal: sig, Done: true})
	// Returning from PID 1 makes the kernel kill the rest of the namespace.
	return exit
}

// readInitConfig reads and decodes the config. It blocks until the parent
// has put the init in the cgroup (v1) and closed the pipe: no setup
// happens outside the cgroup.
func readInitConfig() (*initConfig, []unix.SockFilter, error) {
	cfgFile := os.NewFile(initConfigFD, "config")
	raw, err := io.ReadAll(cfgFile)
	cfgFile.Close()
	if err != nil {
		return nil, nil, fmt.Errorf("read config: %w", err)
	}
	var cfg initConfig
	if err := cfg.unmarshal(raw); err != nil {
		return nil, nil, fmt.Errorf("decode config: %w", err)
	}
	// The shell must get fds 0-2 only.
	if err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		return nil, nil, fmt.Errorf("close_range: %w", err)
	}
	prog, err := decodeBPF(cfg.Seccomp)
	if err != nil {
		return nil, nil, fmt.Errorf("seccomp program: %w", err)
	}
	return &cfg, prog, nil
}

// enterRun makes the run's view: its mounts, its network namespace and a
// cgroup namespace rooted at its cgroup.
func enterRun(cfg *initConfig) error {
	if err := setupMounts(cfg); err != nil {
		return fmt.Errorf("mounts: %w", err)
	}
	if cfg.NetNSFD >= 0 {
		if err := unix.Setns(cfg.NetNSFD, unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("join network namespace: %w", err)
		}
		unix.Close(cfg.NetNSFD)
	}
	// Now that we are in the run's cgroup, make it the namespace's root.
	if err := unix.Unshare(unix.CLONE_NEWCGROUP); err != nil {
		return fmt.Errorf("cgroup namespace: %w", err)
	}
	if cfg.UID == 0 || cfg.GID == 0 {
		return errors.New("identity: refusing to run as root")
	}
	return nil
}

// confine sets what the shell inherits from this thread: no way back to
// any capability, no_new_privs, the landlock scope and the seccomp
// filters.
func confine(cfg *initConfig, prog []unix.SockFilter) error {
	if err := confineThread(); err != nil {
		return fmt.Errorf("confine: %w", err)
	}
	if err := restrictScope(); err != nil {
		return fmt.Errorf("landlock: %w", err)
	}
	// The exec listener must come before the denylist, which refuses new
	// seccomp listeners.
	if err := installExecNotify(cfg); err != nil {
		return fmt.Errorf("exec notification: %w", err)
	}
	if err := loadSeccomp(prog); err != nil {
		return fmt.Errorf("seccomp: %w", err)
	}
	if err := defaultSignals(); err != nil {
		return fmt.Errorf("signals: %w", err)
	}
	return nil
}

// forkShell starts the shell. The child takes the agent's identity
// between fork and exec, and changes directory after that, with the
// agent's permissions. Plain clone, not clone3 (which the filter refuses):
// no cgroup fd here.
func forkShell(cfg *initConfig) (int, error) {
	pid, err := syscall.ForkExec(cfg.Shell, cfg.Argv, &syscall.ProcAttr{
		Dir:   cfg.Dir,
		Env:   cfg.Env,
		Files: []uintptr{0, 1, 2},
		Sys:   &syscall.SysProcAttr{Credential: agentCredential(cfg.UID, cfg.GID)},
	})
	if err != nil {
		return 0, fmt.Errorf("start %s in %s: %w", cfg.Shell, cfg.Dir, err)
	}
	return pid, nil
}

// defaultSignals puts back the default action of the signals the Go
// runtime caught. The kernel drops a signal with the default action sent to
// a pid namespace's init from inside the namespace, so the run cannot kill
// its own init (with `kill 1`, or a fatal signal Go would turn into a
// crash); SIGKILL from the Runner still works. Catching them with
// os/signal instead would cost thread hand-offs per signal and need a
// thread when one arrives, which a run that used up its pids limit could
// deny. Only the reaping loop runs after this. Left alone: SIGURG (Go's
// preemption), SIGCHLD, and glibc's SIGCANCEL and SIGSETXID (32, 33).
func defaultSignals() error {
	// struct kernel_sigaction, with sa_handler = SIG_DFL.
	var act struct {
		handler  uintptr
		flags    uint64
		restorer uintptr
		mask     uint64
	}
	for sig := 1; sig <= 64; sig++ {
		switch syscall.Signal(sig) {
		case unix.SIGKILL, unix.SIGSTOP, unix.SIGURG, unix.SIGCHLD, 32, 33:
			continue
		}
		if _, _, errno := unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(sig),
			uintptr(unsafe.Pointer(&act)), 0, 8, 0, 0); errno != 0 {
			return fmt.Errorf("rt_sigaction %d: %w", sig, errno)
		}
	}
	return nil
}

// reap waits for any child, as PID 1 must (orphans are reparented to it),
// until the shell itself exits.
func reap(shell int) (exit, sig int) {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, 0, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return 125, 0 // ECHILD: cannot happen while the shell lives
		}
		if pid != shell {
			continue
		}
		switch {
		case ws.Exited():
			return ws.ExitStatus(), 0
		case ws.Signaled():
			return 128 + int(ws.Signal()), int(ws.Signal())
		}
	}
}

// installExecNotify sets up the exec check when the Runner passed one end
// of a socket pair (NotifyFD, among the files from initFirstFD on): it
// loads the notification filter (execwatch.Install: SCMP_ACT_NOTIFY on
// execve and execveat, with a new listener) on the thread the shell is
// forked from, and sends the listener to the daemon with SCM_RIGHTS. It
// runs before the denylist, which refuses new listeners, and the init
// itself never execs, so every exec the daemon sees is the run's.
func installExecNotify(cfg *initConfig) error {
	if cfg.NotifyFD < 0 {
		return nil
	}
	fd, err := execwatch.Install(cfg.NotifyProg)
	if err != nil {
		return err
	}
	err = execwatch.SendFD(cfg.NotifyFD, fd)
	unix.Close(fd)
	unix.Close(cfg.NotifyFD)
	return err
}
