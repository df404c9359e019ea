package sandbox

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"runtime"
	"unsafe"

	seccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/sys/unix"
)

// deniedSyscalls fail with EPERM inside the sandbox. Most of them need a
// capability the agent does not have, and are listed anyway so that a
// capability leak is not enough; the rest (ptrace, bpf, userfaultfd,
// io_uring, keyrings, unshare, perf, ...) work unprivileged and are either
// a way out of the sandbox or a large kernel attack surface. Names unknown
// to the running libseccomp or architecture are skipped.
var deniedSyscalls = []string{
	// mounts and the root
	"mount", "umount", "umount2", "pivot_root", "chroot",
	"move_mount", "open_tree", "open_tree_attr", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
	// namespaces; clone is filtered on its flags below
	"setns", "unshare",
	// other processes' memory
	"ptrace", "process_vm_readv", "process_vm_writev", "process_madvise", "pidfd_getfd", "kcmp",
	"migrate_pages", "move_pages",
	// kernel attack surface reachable without privileges
	"bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register",
	"keyctl", "add_key", "request_key", "modify_ldt", "uselib", "lookup_dcookie",
	// file handles bypass path permissions
	"open_by_handle_at", "name_to_handle_at",
	// the machine itself
	"kexec_load", "kexec_file_load", "reboot", "init_module", "finit_module", "delete_module",
	"create_module", "query_module", "get_kernel_syms", "swapon", "swapoff", "acct",
	"quotactl", "quotactl_fd", "syslog", "iopl", "ioperm", "vhangup", "nfsservctl",
	"sethostname", "setdomainname", "settimeofday", "clock_settime", "clock_adjtime",
	"fanotify_init", "_sysctl", "sysfs", "ustat", "vm86", "vm86old",
}

// requiredSyscalls must be known to libseccomp: a filter without them would
// be a hole, not a portability detail.
var requiredSyscalls = map[string]bool{
	"mount": true, "umount2": true, "pivot_root": true, "chroot": true, "setns": true, "unshare": true,
	"ptrace": true, "process_vm_readv": true, "process_vm_writev": true, "bpf": true,
	"keyctl": true, "add_key": true, "request_key": true, "io_uring_setup": true,
	"open_by_handle_at": true, "userfaultfd": true, "perf_event_open": true,
	"clone": true, "clone3": true, "seccomp": true, "ioctl": true,
	"init_module": true, "finit_module": true, "kexec_load": true, "move_mount": true, "fsopen": true,
}

// namespaceCloneFlags are refused on clone(2). clone3 passes its flags in
// memory, which seccomp cannot read, so clone3 fails with ENOSYS and libc
// falls back to clone.
var namespaceCloneFlags = []uint64{
	unix.CLONE_NEWNS, unix.CLONE_NEWCGROUP, unix.CLONE_NEWUTS, unix.CLONE_NEWIPC,
	unix.CLONE_NEWUSER, unix.CLONE_NEWPID, unix.CLONE_NEWNET,
}

// buildSeccomp compiles the sandbox's seccomp program into raw BPF, once
// per Runner; the init stage loads the bytes without libseccomp. It is one
// program (one filter to attach per run): a hand-written personality check
// followed by libseccomp's denylist for the native architecture, where
// syscalls from a foreign one (i386 int 0x80, x32) kill the process.
func buildSeccomp() ([]byte, error) {
	deny, err := buildDenylist()
	if err != nil {
		return nil, err
	}
	pers, err := personalityPrefix()
	if err != nil {
		return nil, err
	}
	prog := append(pers, deny...)
	if len(prog) > unix.BPF_MAXINSNS {
		return nil, fmt.Errorf("seccomp: program too long (%d instructions)", len(prog))
	}
	return encodeBPF(prog), nil
}

// buildDenylist compiles the denylist with libseccomp.
func buildDenylist() ([]unix.SockFilter, error) {
	f, err := newDenyFilter()
	if err != nil {
		return nil, err
	}
	defer f.Release()
	if err := addDenyRules(denyFilter{f}); err != nil {
		return nil, err
	}
	return exportBPF(f)
}

// newDenyFilter is an empty filter that allows everything and kills a
// process making a syscall of a foreign architecture.
func newDenyFilter() (*seccomp.ScmpFilter, error) {
	f, err := seccomp.NewFilter(seccomp.ActAllow)
	if err != nil {
		return nil, fmt.Errorf("seccomp: new filter: %w", err)
	}
	if err := f.SetBadArchAction(seccomp.ActKillProcess); err != nil {
		f.Release()
		return nil, fmt.Errorf("seccomp: bad arch action: %w", err)
	}
	// A binary tree of syscall numbers rather than a linear list: fewer
	// instructions per syscall, and a faster attach (the kernel emulates
	// the filter for every syscall number to build its allow cache).
	// Best effort: older libseccomp has only the linear layout.
	_ = f.SetOptimize(2)
	// The init sets no_new_privs itself before loading the bytes.
	if err := f.SetNoNewPrivsBit(false); err != nil {
		f.Release()
		return nil, fmt.Errorf("seccomp: nnp: %w", err)
	}
	return f, nil
}

// addDenyRules adds every refusal: deniedSyscalls, clone3, clone with a
// namespace flag, terminal injection and a new seccomp listener.
func addDenyRules(f denyFilter) error {
	eperm := seccomp.ActErrno.SetReturnCode(int16(unix.EPERM))
	enosys := seccomp.ActErrno.SetReturnCode(int16(unix.ENOSYS))
	for _, name := range deniedSyscalls {
		if err := f.rule(name, eperm); err != nil {
			return err
		}
	}
	if err := f.rule("clone3", enosys); err != nil {
		return err
	}
	for _, flag := range namespaceCloneFlags {
		if err := f.rule("clone", eperm, cond(0, seccomp.CompareMaskedEqual, flag, flag)); err != nil {
			return err
		}
	}
	// Fake terminal input and console ioctls.
	for _, req := range []uint64{unix.TIOCSTI, unix.TIOCLINUX} {
		if err := f.rule("ioctl", eperm, cond(1, seccomp.CompareMaskedEqual, 0xffffffff, req)); err != nil {
			return err
		}
	}
	// A new seccomp listener in the sandbox would take the exec
	// notifications away from the daemon's listener (the newest wins).
	return f.rule("seccomp", eperm,
		cond(0, seccomp.CompareEqual, unix.SECCOMP_SET_MODE_FILTER),
		cond(1, seccomp.CompareMaskedEqual, unix.SECCOMP_FILTER_FLAG_NEW_LISTENER, unix.SECCOMP_FILTER_FLAG_NEW_LISTENER),
	)
}

// denyFilter adds rules by syscall name.
type denyFilter struct{ f *seccomp.ScmpFilter }

// rule makes name fail with act when every condition holds. A name the
// architecture or libseccomp does not know is skipped, unless it is one
// of requiredSyscalls.
func (d denyFilter) rule(name string, act seccomp.ScmpAction, conds ...seccomp.ScmpCondition) error {
	sc, err := seccomp.GetSyscallFromName(name)
	if err != nil {
		if requiredSyscalls[name] {
			return fmt.Errorf("seccomp: %s: %w", name, err)
		}
		return nil // not a syscall on this architecture or libseccomp
	}
	if len(conds) == 0 {
		err = d.f.AddRule(sc, act)
	} else {
		err = d.f.AddRuleConditional(sc, act, conds)
	}
	if err != nil {
		return fmt.Errorf("seccomp: rule for %s: %w", name, err)
	}
	return nil
}

// cond is a condition on argument arg.
func cond(arg uint, op seccomp.ScmpCompareOp, v ...uint64) seccomp.ScmpCondition {
	c, err := seccomp.MakeCondition(arg, op, v...)
	if err != nil {
		panic(err) // constant arguments: a bug here, not a runtime state
	}
	return c
}

// exportBPF gets the raw program through a memfd: the libseccomp in use
// (2.5) has no export to memory.
func exportBPF(f *seccomp.ScmpFilter) ([]unix.SockFilter, error) {
	fd, err := unix.MemfdCreate("execgate-seccomp", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("seccomp: memfd: %w", err)
	}
	mf := os.NewFile(uintptr(fd), "execgate-seccomp")
	defer mf.Close()
	if err := f.ExportBPF(mf); err != nil {
		return nil, fmt.Errorf("seccomp: export: %w", err)
	}
	if _, err := mf.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("seccomp: export: %w", err)
	}
	raw, err := io.ReadAll(mf)
	if err != nil {
		return nil, fmt.Errorf("seccomp: export: %w", err)
	}
	return decodeBPF(raw)
}

// personalityPrefix refuses personality(2) except with PER_LINUX,
// PER_LINUX32 or the query value 0xffffffff; anything else
// (ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC, ...) weakens the process's own
// hardening. Everything else falls through to the program that follows.
// It is written by hand because libseccomp (2.5) cannot put several
// comparisons on one argument, and the kernel reads only the low 32 bits.
func personalityPrefix() ([]unix.SockFilter, error) {
	var arch uint32
	switch runtime.GOARCH {
	case "amd64":
		arch = unix.AUDIT_ARCH_X86_64
	case "arm64":
		arch = unix.AUDIT_ARCH_AARCH64
	default:
		return nil, nil // personality stays open; the denylist still applies
	}
	sc, err := seccomp.GetSyscallFromName("personality")
	if err != nil {
		return nil, fmt.Errorf("seccomp: personality: %w", err)
	}
	const (
		offNr      = 0  // struct seccomp_data.nr
		offArch    = 4  // .arch
		offArg0Low = 16 // .args[0], low half (little endian)
	)
	ld := func(off uint32) unix.SockFilter {
		return unix.SockFilter{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: off}
	}
	jeq := func(k uint32, jt, jf uint8) unix.SockFilter {
		return unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: k, Jt: jt, Jf: jf}
	}
	ret := func(k uint32) unix.SockFilter {
		return unix.SockFilter{Code: unix.BPF_RET | unix.BPF_K, K: k}
	}
	// Jumps are relative to the next instruction; 9 is the first of the
	// following program.
	return []unix.SockFilter{
		/* 0 */ ld(offArch),
		/* 1 */ jeq(arch, 0, 7), // foreign: left to the denylist
		/* 2 */ ld(offNr),
		/* 3 */ jeq(uint32(sc), 0, 5),
		/* 4 */ ld(offArg0Low),
		/* 5 */ jeq(0, 3, 0),
		/* 6 */ jeq(8, 2, 0),
		/* 7 */ jeq(0xffffffff, 1, 0),
		/* 8 */ ret(unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)),
	}, nil
}

func encodeBPF(prog []unix.SockFilter) []byte {
	raw := make([]byte, 0, len(prog)*8)
	for _, ins := range prog {
		raw = binary.NativeEndian.AppendUint16(raw, ins.Code)
		raw = append(raw, ins.Jt, ins.Jf)
		raw = binary.NativeEndian.AppendUint32(raw, ins.K)
	}
	return raw
}

func decodeBPF(raw []byte) ([]unix.SockFilter, error) {
	if len(raw) == 0 || len(raw)%8 != 0 || len(raw)/8 > 0xffff {
		return nil, fmt.Errorf("seccomp: bad program length %d", len(raw))
	}
	prog := make([]unix.SockFilter, len(raw)/8)
	for i := range prog {
		b := raw[i*8:]
		prog[i] = unix.SockFilter{
			Code: binary.NativeEndian.Uint16(b[0:]),
			Jt:   b[2],
			Jf:   b[3],
			K:    binary.NativeEndian.Uint32(b[4:]),
		}
	}
	return prog, nil
}

// loadSeccomp installs prog on every thread of the process (TSYNC), so it
// does not matter which thread forks the shell. no_new_privs must be set.
func loadSeccomp(prog []unix.SockFilter) error {
	if len(prog) == 0 {
		return fmt.Errorf("seccomp: empty program")
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	r, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER,
		unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&fprog)))
	if errno != 0 {
		return fmt.Errorf("seccomp: load: %w", errno)
	}
	if r != 0 {
		return fmt.Errorf("seccomp: thread %d could not be synchronised", r)
	}
	return nil
}
