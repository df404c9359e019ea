package sandbox

import (
	"errors"
	"fmt"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// confineThread sets what the shell inherits from the init's locked thread
// when it is forked: an empty capability bounding set (nothing can regain
// a capability through a file capability or a set-uid binary), no
// inheritable or ambient capabilities, and no_new_privs. The bounding set
// needs CAP_SETPCAP, so this runs while the init is still root.
func confineThread() error {
	// EINVAL marks the first capability this kernel does not know.
	for c := 0; c < 64; c++ {
		err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0)
		if errors.Is(err, unix.EINVAL) && c > unix.CAP_LAST_CAP/2 {
			break
		}
		if err != nil {
			return fmt.Errorf("drop bounding capability %d: %w", c, err)
		}
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capget: %w", err)
	}
	data[0].Inheritable, data[1].Inheritable = 0, 0
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("clear inheritable capabilities: %w", err)
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("clear ambient capabilities: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("set no_new_privs: %w", err)
	}
	return nil
}

// agentCredential is the shell's identity, set by the forked child before
// exec: the agent's uid and gid and no supplementary groups. Leaving uid 0
// there clears the effective and permitted capabilities.
func agentCredential(uid, gid uint32) *syscall.Credential {
	return &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}}
}

// dropIdentity makes the whole init the agent too: no supplementary
// groups, the agent's gid and uid on every thread (the syscall package
// broadcasts credential changes), no capabilities. It runs right after the
// shell is forked, off its start-up path: each call must reach every
// thread, which is slow on a busy machine. Until then the init is a root
// process the run cannot reach: another uid, not dumpable, and the run is
// under seccomp (no ptrace) and landlock.
func dropIdentity(uid, gid uint32) error {
	if uid == 0 || gid == 0 {
		return errors.New("refusing to run as root")
	}
	if n, _, _ := unix.RawSyscall(unix.SYS_GETGROUPS, 0, 0, 0); n != 0 {
		if err := syscall.Setgroups([]int{}); err != nil {
			return fmt.Errorf("setgroups: %w", err)
		}
	}
	if err := syscall.Setresgid(int(gid), int(gid), int(gid)); err != nil {
		return fmt.Errorf("setresgid %d: %w", gid, err)
	}
	if err := syscall.Setresuid(int(uid), int(uid), int(uid)); err != nil {
		return fmt.Errorf("setresuid %d: %w", uid, err)
	}
	// Leaving uid 0 cleared the effective and permitted sets of every
	// thread; clear this thread's inheritable set too.
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capset: %w", err)
	}
	// A credential change resets dumpable and the parent-death signal.
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("set non-dumpable: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
		return fmt.Errorf("set parent-death signal: %w", err)
	}
	// Check rather than trust.
	r, e, s := unix.Getresuid()
	if r != int(uid) || e != int(uid) || s != int(uid) {
		return fmt.Errorf("uid is %d/%d/%d after setresuid %d", r, e, s, uid)
	}
	if n, _, _ := unix.RawSyscall(unix.SYS_GETGROUPS, 0, 0, 0); n != 0 {
		return errors.New("supplementary groups remain")
	}
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capget: %w", err)
	}
	for _, d := range data {
		if d.Effective|d.Permitted|d.Inheritable != 0 {
			return errors.New("capabilities remain after the drop")
		}
	}
	return nil
}

// landlockScope is struct landlock_ruleset_attr up to ABI 6 (scoped).
type landlockScope struct {
	handledAccessFS  uint64
	handledAccessNet uint64
	scoped           uint64
}

// restrictScope confines abstract unix sockets and signals to the run
// (landlock ABI 6, Linux 6.12): without it a sandboxed process could
// connect to abstract sockets of the host (with network) or of other runs
// sharing the agent's network namespace. Best effort: kernels without
// landlock, or older ABIs, are left as they are.
func restrictScope() error {
	abi, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, 0, 0, unix.LANDLOCK_CREATE_RULESET_VERSION)
	if errno != 0 || abi < 6 {
		return nil
	}
	attr := landlockScope{scoped: unix.LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET | unix.LANDLOCK_SCOPE_SIGNAL}
	fd, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr), 0)
	if errno != 0 {
		return fmt.Errorf("create ruleset: %w", errno)
	}
	defer unix.Close(int(fd))
	if _, _, errno := unix.Syscall(unix.SYS_LANDLOCK_RESTRICT_SELF, fd, 0, 0); errno != 0 {
		return fmt.Errorf("restrict self: %w", errno)
	}
	return nil
}
