package netcapture

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// soOriginalDst is SO_ORIGINAL_DST (linux/netfilter_ipv4.h) and, at level
// SOL_IPV6, IP6T_SO_ORIGINAL_DST (linux/netfilter_ipv6/ip6_tables.h).
const soOriginalDst = 80

// OriginalDst returns the destination the client dialled before the
// namespace's REDIRECT rule sent the connection to the transparent
// listener. It reads conntrack's record through SO_ORIGINAL_DST (IPv4) or
// IP6T_SO_ORIGINAL_DST (IPv6), chosen by the socket's local address.
func OriginalDst(c *net.TCPConn) (netip.AddrPort, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("netcapture: original dst: %w", err)
	}
	local, _ := c.LocalAddr().(*net.TCPAddr)
	v6 := local != nil && local.IP.To4() == nil
	var ap netip.AddrPort
	var serr error
	cerr := rc.Control(func(fd uintptr) { ap, serr = getOriginalDst(int(fd), v6) })
	if cerr != nil {
		serr = cerr
	}
	if serr != nil {
		return netip.AddrPort{}, fmt.Errorf("netcapture: original dst: %w", serr)
	}
	return ap, nil
}

func getOriginalDst(fd int, v6 bool) (netip.AddrPort, error) {
	var buf [unix.SizeofSockaddrInet6]byte
	level := unix.SOL_IP
	if v6 {
		level = unix.SOL_IPV6
	}
	n := uint32(len(buf))
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), uintptr(level), soOriginalDst,
		uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&n)), 0)
	if e != 0 {
		return netip.AddrPort{}, fmt.Errorf("getsockopt SO_ORIGINAL_DST: %w", syscall.Errno(e))
	}
	family := binary.NativeEndian.Uint16(buf[0:2])
	port := binary.BigEndian.Uint16(buf[2:4])
	switch {
	case family == unix.AF_INET && n >= unix.SizeofSockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(buf[4:8])), port), nil
	case family == unix.AF_INET6 && n >= unix.SizeofSockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16([16]byte(buf[8:24])), port), nil
	}
	return netip.AddrPort{}, fmt.Errorf("getsockopt SO_ORIGINAL_DST: family %d, %d bytes", family, n)
}
