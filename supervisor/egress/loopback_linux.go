package egress

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// loopbackCongestion is the TCP congestion control of the proxy's loopback
// sockets: reno is built into every kernel and open to unprivileged
// sockets.
//
// A loopback connection (both ends on this host: the run's side of every
// relay, and the destination side when the destination is on the host)
// has no congestion to control, but a pacing algorithm (BBR, a common host
// default) paces it from a timer anyway. Measured on a 2-CPU VM with BBR
// as the default (TestBenchEgress): a relay with paced loopback legs moved
// about half what a direct connection does; with reno legs, about as
// much. Connections to other hosts keep the host default. The algorithm is
// best set before the connection exists (on the listener, whose accepted
// connections inherit it, and before connect): an established BBR socket
// switched to reno keeps pacing. Everything here is best effort: on an
// error the default stays.
const loopbackCongestion = "reno"

func setCongestion(rc syscall.RawConn) {
	_ = rc.Control(func(fd uintptr) {
		_ = unix.SetsockoptString(int(fd), unix.IPPROTO_TCP, unix.TCP_CONGESTION, loopbackCongestion) // best effort
	})
}

// tuneLoopbackListener sets loopbackCongestion on a TCP listener on a
// loopback address, for the connections it accepts.
func tuneLoopbackListener(ln net.Listener) {
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		return
	}
	if a, ok := tl.Addr().(*net.TCPAddr); !ok || !a.IP.IsLoopback() {
		return
	}
	if rc, err := tl.SyscallConn(); err == nil {
		setCongestion(rc)
	}
}

// loopbackDialControl is a net.Dialer Control: a socket about to connect
// to a loopback address gets loopbackCongestion.
func loopbackDialControl(_, address string, rc syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if ip := net.ParseIP(host); err == nil && ip != nil && ip.IsLoopback() {
		setCongestion(rc)
	}
	return nil
}

// tuneLoopback sets loopbackCongestion on an established connection whose
// local address is loopback, in case its listener or dialer did not (a
// Config.Dial of the caller's, a listener on another address family).
// Setting the algorithm it already has is a no-op in the kernel.
func tuneLoopback(c net.Conn) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return
	}
	if a, ok := tc.LocalAddr().(*net.TCPAddr); !ok || !a.IP.IsLoopback() {
		return
	}
	if rc, err := tc.SyscallConn(); err == nil {
		setCongestion(rc)
	}
}
