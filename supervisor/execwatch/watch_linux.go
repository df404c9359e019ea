package execwatch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"runtime"
	"strconv"
	"strings"
	"unsafe"

	seccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/sys/unix"

	"github.com/execgate/execgate/internal/procfs"
)

// Bounds on what is read from a trapped process. An exec past them is
// denied: a policy that cannot see the whole argv cannot decide it.
const (
	MaxArgs     = 16384
	MaxArgBytes = 2 << 20 // the kernel's usual ARG_MAX
	maxPath     = unix.PathMax
)

// Exec is one trapped execve or execveat.
type Exec struct {
	Pid, PPid int    // host pids of the caller (the thread) and its parent
	Tgid      int    // the caller's process: its pid once a thread execs
	Path      string // as the caller passed it
	// Resolved is the real path inside the caller's mount namespace,
	// symlinks resolved; "" when it could not be resolved (the exec is
	// then denied unless decide says otherwise for a missing file).
	Resolved string
	// Alias is the name the program was called under when that is a link
	// in a directory only root can change (see shellparse.Program).
	Alias string
	Argv  []string
	Cwd   string // the caller's working directory, in its namespace
	// File is the identity of the resolved file: what the kernel must
	// have opened for the decision to stand.
	File FileID
	// Err says why the exec could not be read or resolved; the Checker
	// should deny it.
	Err error
	// errno, when set, answers the exec without asking decide: the file
	// does not exist (ENOENT, ENOTDIR), as the kernel itself would say.
	// Letting the kernel find out instead would let the caller create the
	// file between the check and the exec.
	errno unix.Errno
}

// FileID tells one version of a file apart: ctime moves with every write,
// and a file being executed cannot be written (ETXTBSY), so an equal
// FileID at the exec event means equal content.
type FileID struct {
	Dev, Ino uint64
	Ctime    unix.Timespec
}

func fileID(st *unix.Stat_t) FileID {
	return FileID{Dev: st.Dev, Ino: st.Ino, Ctime: st.Ctim}
}

// A Checker decides the execs of one run. Watch calls it from one
// goroutine, one exec at a time.
type Checker interface {
	// Decide answers an exec before it happens: nil lets it run, an error
	// fails it with EACCES. ctx ends with the run.
	Decide(ctx context.Context, e *Exec) error
	// Confirm is asked at the exec event when the new image differs from
	// the decided exec (a "#!" script runs its interpreter; anything else
	// is a race). ran describes the new image, which has not yet run an
	// instruction: nil lets it run, an error kills it.
	Confirm(ctx context.Context, decided, ran *Exec) error
}

// DecideFunc is a Checker from a function, which also decides what ran
// when it differs from what was decided.
type DecideFunc func(ctx context.Context, e *Exec) error

func (f DecideFunc) Decide(ctx context.Context, e *Exec) error { return f(ctx, e) }

func (f DecideFunc) Confirm(ctx context.Context, _, ran *Exec) error { return f(ctx, ran) }

// Watch serves the listener until every process under the filter is gone
// or ctx ends. Each trapped exec is read, resolved and decided, and an
// allowed one is confirmed at its exec event; any failure along the way
// denies it. Watch returns nil when the run ended.
//
// Watch holds its OS thread while it serves: ptrace requests must come
// from the tracing thread. Every tracee is let go (or dead) before the
// next notification, so the thread goes back to the runtime when Watch
// returns; it must not end with it, since the runs' inits are started
// with a parent-death signal and one may have been forked from this very
// thread. Should the daemon die mid-confirmation, PTRACE_O_EXITKILL kills
// the tracee rather than leave it unchecked.
func Watch(ctx context.Context, listener *os.File, c Checker) error {
	return watch(ctx, listener, c, true)
}

// watch is Watch; confirm false leaves out the confirmation, which only
// the benchmark that measures its cost does.
func watch(ctx context.Context, listener *os.File, c Checker, confirm bool) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	fd := int(listener.Fd())
	buf := make([]byte, 4096) // the confirmations' argv buffer
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		if ctx.Err() != nil {
			return nil
		}
		n, err := unix.Poll(pfd, 100)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return fmt.Errorf("execwatch: poll: %w", err)
		}
		if n == 0 {
			continue
		}
		if pfd[0].Revents&unix.POLLIN == 0 && pfd[0].Revents&(unix.POLLHUP|unix.POLLERR|unix.POLLNVAL) != 0 {
			return nil // no process is left under the filter
		}
		req, err := seccomp.NotifReceive(seccomp.ScmpFd(fd))
		if err != nil {
			if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EINTR) {
				continue // the caller died, or a signal cancelled the trap
			}
			return fmt.Errorf("execwatch: receive: %w", err)
		}
		handle(ctx, fd, req, c, confirm, buf)
	}
}

func handle(ctx context.Context, fd int, req *seccomp.ScmpNotifReq, c Checker, confirm bool, buf []byte) {
	e := read(req)
	// The process may have been killed and its pid reused while we read
	// it: only decide on what we read if the trap is still live.
	if seccomp.NotifIDValid(seccomp.ScmpFd(fd), req.ID) != nil {
		return
	}
	// libseccomp-golang negates Error for the kernel: give it positive.
	resp := &seccomp.ScmpNotifResp{ID: req.ID, Error: int32(unix.EACCES)}
	var t *tracee
	switch {
	case e.errno != 0:
		resp.Error = int32(e.errno)
	case e.Err != nil:
		c.Decide(ctx, e) // so the denial is reported
	case c.Decide(ctx, e) == nil:
		// Seize before answering: from here the caller cannot get past
		// its exec without stopping for the confirmation. A caller that
		// cannot be seized is refused.
		var err error
		if !confirm {
			resp.Error, resp.Flags = 0, seccomp.NotifRespFlagContinue
		} else if t, err = seize(e.Pid, e.Tgid, buf); err == nil {
			resp.Error, resp.Flags = 0, seccomp.NotifRespFlagContinue
		}
	}
	// Still live after the decision? For a seized caller this also proves
	// that the pid seized is the caller's, not a reuse.
	if seccomp.NotifIDValid(seccomp.ScmpFd(fd), req.ID) != nil {
		if t != nil {
			t.release()
		}
		return
	}
	if seccomp.NotifRespond(seccomp.ScmpFd(fd), resp) != nil && t != nil {
		t.release() // the caller died meanwhile
		return
	}
	if t != nil {
		t.confirm(ctx, e, c)
	}
}

// read collects everything about a trapped exec from /proc and the
// caller's memory.
func read(req *seccomp.ScmpNotifReq) *Exec {
	pid := int(req.Pid)
	e := &Exec{Pid: pid, Tgid: pid}
	if tgid, ppid, err := procfs.Status(pid); err == nil {
		e.Tgid, e.PPid = tgid, ppid
	}
	name, _ := req.Data.Syscall.GetName()
	var pathAddr, argvAddr uint64
	dirfd := unix.AT_FDCWD
	flags := 0
	switch name {
	case "execve":
		pathAddr, argvAddr = req.Data.Args[0], req.Data.Args[1]
	case "execveat":
		dirfd = int(int32(req.Data.Args[0]))
		pathAddr, argvAddr = req.Data.Args[1], req.Data.Args[2]
		flags = int(req.Data.Args[4])
	default:
		e.Err = fmt.Errorf("unexpected syscall %q", name)
		return e
	}
	var err error
	if e.Path, err = readString(pid, pathAddr, maxPath); err != nil {
		e.Err = fmt.Errorf("read path: %w", err)
		return e
	}
	if e.Argv, err = readArgv(pid, argvAddr); err != nil {
		e.Err = fmt.Errorf("read argv: %w", err)
		return e
	}
	e.Cwd, _ = os.Readlink("/proc/" + strconv.Itoa(pid) + "/cwd")
	e.Resolved, e.Alias, e.File, err = resolve(pid, dirfd, e.Path, flags, e.Cwd)
	switch {
	case errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ENAMETOOLONG):
		if !errors.As(err, &e.errno) {
			e.errno = unix.ENOENT
		}
	case err != nil:
		e.Err = fmt.Errorf("resolve %q: %w", e.Path, err)
	}
	return e
}

// parentOf is pid's parent, or 0 when it is gone.
func parentOf(pid int) int {
	st, _ := procfs.Stat(pid)
	return st.PPid
}

// readMem reads len(buf) bytes at addr, or fewer where the mapping ends.
func readMem(pid int, addr uint64, buf []byte) (int, error) {
	local := []unix.Iovec{{Base: &buf[0], Len: uint64(len(buf))}}
	remote := []unix.RemoteIovec{{Base: uintptr(addr), Len: len(buf)}}
	n, err := unix.ProcessVMReadv(pid, local, remote, 0)
	if err != nil {
		return 0, err
	}
	return n, nil
}

// readString reads a NUL-terminated string of at most max bytes. Reads
// stop at page ends, so a string near an unmapped page is still found.
func readString(pid int, addr uint64, max int) (string, error) {
	if addr == 0 {
		return "", errors.New("NULL pointer")
	}
	var out []byte
	buf := make([]byte, 4096)
	for len(out) < max {
		chunk := 4096 - int(addr%4096)
		n, err := readMem(pid, addr, buf[:chunk])
		if err != nil {
			return "", err
		}
		if i := indexByte(buf[:n], 0); i >= 0 {
			return string(append(out, buf[:i]...)), nil
		}
		out = append(out, buf[:n]...)
		addr += uint64(n)
	}
	return "", fmt.Errorf("longer than %d bytes", max)
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

// readArgv reads a NULL-terminated array of string pointers.
func readArgv(pid int, addr uint64) ([]string, error) {
	if addr == 0 {
		return nil, nil // execve(path, NULL, ...) runs with an empty argv
	}
	const ptr = int(unsafe.Sizeof(uintptr(0)))
	var argv []string
	total := 0
	buf := make([]byte, 512*ptr)
	for {
		chunk := min(len(buf), 4096-int(addr%4096))
		chunk -= chunk % ptr
		n, err := readMem(pid, addr, buf[:chunk])
		if err != nil {
			return nil, err
		}
		for off := 0; off+ptr <= n; off += ptr {
			p := nativeUint(buf[off : off+ptr])
			if p == 0 {
				return argv, nil
			}
			if len(argv) >= MaxArgs {
				return nil, fmt.Errorf("more than %d arguments", MaxArgs)
			}
			s, err := readString(pid, p, MaxArgBytes-total)
			if err != nil {
				return nil, fmt.Errorf("argument %d: %w", len(argv), err)
			}
			total += len(s) + 1
			argv = append(argv, s)
		}
		addr += uint64(n - n%ptr)
	}
}

func nativeUint(b []byte) uint64 {
	if len(b) == 8 {
		return *(*uint64)(unsafe.Pointer(&b[0]))
	}
	return uint64(*(*uint32)(unsafe.Pointer(&b[0])))
}

var errNoPath = errors.New("exec of a file with no path")

// resolve finds the file an exec would run, inside the caller's own mount
// namespace (its root is /proc/PID/root): the sandbox has a private /tmp
// and masks the daemon does not see.
func resolve(pid, dirfd int, p string, flags int, cwd string) (real, alias string, id FileID, err error) {
	proc := "/proc/" + strconv.Itoa(pid)
	switch {
	case p == "" && flags&unix.AT_EMPTY_PATH != 0:
		// fexecve: the program is an open file of the caller's. One with
		// no name (a memfd, a deleted file) cannot be matched by any rule.
		fd, err := unix.Open(proc+"/fd/"+strconv.Itoa(dirfd), unix.O_PATH|unix.O_CLOEXEC, 0)
		if err != nil {
			return "", "", id, errNoPath
		}
		defer unix.Close(fd)
		var st unix.Stat_t
		target, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
		if err != nil || unix.Fstat(fd, &st) != nil || st.Nlink == 0 || !strings.HasPrefix(target, "/") || strings.HasSuffix(target, " (deleted)") {
			return "", "", id, fmt.Errorf("%w (%s)", errNoPath, target)
		}
		return target, "", fileID(&st), nil
	case strings.HasPrefix(p, "/"):
	case dirfd == unix.AT_FDCWD:
		p = path.Join(cwd, p)
	default:
		base, err := os.Readlink(proc + "/fd/" + strconv.Itoa(dirfd))
		if err != nil {
			return "", "", id, err
		}
		p = path.Join(base, p)
	}
	root, err := unix.Open(proc+"/root", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", "", id, err
	}
	defer unix.Close(root)
	how := unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS}
	fd, err := unix.Openat2(root, p, &how)
	if err != nil {
		return "", "", id, err
	}
	var st unix.Stat_t
	err = unix.Fstat(fd, &st)
	if err == nil {
		real, err = os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	}
	unix.Close(fd)
	if err != nil {
		return "", "", id, err
	}
	if b := path.Base(p); b != path.Base(real) && rootOnly(root, path.Dir(p)) {
		alias = b
	}
	return real, alias, fileID(&st), nil
}

// rootOnly reports whether only root can change dir and every directory
// above it, inside the namespace whose root is the fd root.
func rootOnly(root int, dir string) bool {
	for {
		how := unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS}
		fd, err := unix.Openat2(root, dir, &how)
		if err != nil {
			return false
		}
		var st unix.Stat_t
		err = unix.Fstat(fd, &st)
		unix.Close(fd)
		if err != nil || st.Uid != 0 || st.Mode&0o022 != 0 {
			return false
		}
		if dir == "/" || dir == "." {
			return true
		}
		dir = path.Dir(dir)
	}
}
