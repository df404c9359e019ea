package execwatch

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"unsafe"

	seccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/sys/unix"
)

// Kernel flags libseccomp 2.5 does not know.
const (
	filterFlagTsyncESRCH       = 1 << 4 // report the thread that failed TSYNC as ESRCH, allowing NEW_LISTENER with TSYNC
	filterFlagWaitKillableRecv = 1 << 5 // Linux 5.19: once received, a trapped exec waits killably
)

// Filter returns the notification program: execve and execveat of the
// native architecture go to the listener, everything else is allowed (the
// sandbox's denylist, loaded after it, refuses foreign architectures).
func Filter() ([]byte, error) {
	f, err := seccomp.NewFilter(seccomp.ActAllow)
	if err != nil {
		return nil, fmt.Errorf("execwatch: filter: %w", err)
	}
	defer f.Release()
	if err := f.SetNoNewPrivsBit(false); err != nil {
		return nil, fmt.Errorf("execwatch: filter: %w", err)
	}
	for _, name := range []string{"execve", "execveat"} {
		sc, err := seccomp.GetSyscallFromName(name)
		if err != nil {
			return nil, fmt.Errorf("execwatch: %s: %w", name, err)
		}
		if err := f.AddRule(sc, seccomp.ActNotify); err != nil {
			return nil, fmt.Errorf("execwatch: rule %s: %w", name, err)
		}
	}
	fd, err := unix.MemfdCreate("execwatch-bpf", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("execwatch: memfd: %w", err)
	}
	mf := os.NewFile(uintptr(fd), "execwatch-bpf")
	defer mf.Close()
	if err := f.ExportBPF(mf); err != nil {
		return nil, fmt.Errorf("execwatch: export: %w", err)
	}
	mf.Seek(0, io.SeekStart)
	raw, err := io.ReadAll(mf)
	if err != nil || len(raw) == 0 || len(raw)%8 != 0 {
		return nil, fmt.Errorf("execwatch: export: %d bytes, %v", len(raw), err)
	}
	return raw, nil
}

// Install loads prog on every thread of the calling process and returns the
// listener fd. no_new_privs must already be set. Traps wait killably once
// the daemon has received them (Linux 5.19), so signals such as Go's
// preemption SIGURG cannot restart a trapped exec in a loop; older kernels
// fall back to plain waits.
func Install(prog []byte) (int, error) {
	if len(prog) == 0 || len(prog)%8 != 0 {
		return -1, fmt.Errorf("execwatch: bad program length %d", len(prog))
	}
	insns := make([]unix.SockFilter, len(prog)/8)
	for i := range insns {
		b := prog[i*8:]
		insns[i] = unix.SockFilter{Code: binary.NativeEndian.Uint16(b), Jt: b[2], Jf: b[3], K: binary.NativeEndian.Uint32(b[4:])}
	}
	fprog := unix.SockFprog{Len: uint16(len(insns)), Filter: &insns[0]}
	base := uintptr(unix.SECCOMP_FILTER_FLAG_NEW_LISTENER | unix.SECCOMP_FILTER_FLAG_TSYNC | filterFlagTsyncESRCH)
	var err error
	for _, flags := range []uintptr{base | filterFlagWaitKillableRecv, base} {
		r, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, flags, uintptr(unsafe.Pointer(&fprog)))
		if errno == 0 {
			return int(r), nil
		}
		err = errno
		if errno != unix.EINVAL {
			break
		}
	}
	return -1, fmt.Errorf("execwatch: load filter: %w", err)
}

// Supported reports whether this kernel can notify on exec: it loads the
// filter in a throwaway child. The daemon calls it at startup.
func Supported() error {
	var ver unix.Utsname
	unix.Uname(&ver)
	// SECCOMP_GET_NOTIF_SIZES answers on kernels with user notification.
	var sizes [3]uint16
	if _, _, errno := unix.Syscall(unix.SYS_SECCOMP, 3 /* SECCOMP_GET_NOTIF_SIZES */, 0, uintptr(unsafe.Pointer(&sizes))); errno != 0 {
		return fmt.Errorf("seccomp user notification is not available on kernel %s: %w", unix.ByteSliceToString(ver.Release[:]), errno)
	}
	if _, err := seccomp.GetAPI(); err != nil {
		return fmt.Errorf("libseccomp: %w", err)
	}
	return nil
}

// SendFD passes fd over a unix socket.
func SendFD(sock, fd int) error {
	return unix.Sendmsg(sock, []byte{0}, unix.UnixRights(fd), nil, 0)
}

// RecvFD receives one fd sent with SendFD.
func RecvFD(sock int) (*os.File, error) {
	buf := make([]byte, 1)
	oob := make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := unix.Recvmsg(sock, buf, oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("execwatch: receive listener: %w", err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return nil, fmt.Errorf("execwatch: receive listener: no fd (%v)", err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		return nil, fmt.Errorf("execwatch: receive listener: %v", err)
	}
	return os.NewFile(uintptr(fds[0]), "seccomp-listener"), nil
}
