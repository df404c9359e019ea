package egress

import (
	"context"
	"net"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func ccOf(t *testing.T, c *net.TCPConn) string {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var cc string
	var gerr error
	if err := rc.Control(func(fd uintptr) {
		cc, gerr = unix.GetsockoptString(int(fd), unix.IPPROTO_TCP, unix.TCP_CONGESTION)
	}); err != nil {
		t.Fatal(err)
	}
	if gerr != nil {
		t.Fatal(gerr)
	}
	return strings.TrimRight(cc, "\x00")
}

// TestLoopbackCongestion: the proxy's loopback sockets get reno before
// they connect (listener, default dialer) and established ones are
// switched; a listener on another address keeps the host default.
func TestLoopbackCongestion(t *testing.T) {
	def, err := os.ReadFile("/proc/sys/net/ipv4/tcp_congestion_control")
	if err != nil {
		t.Skip(err)
	}
	if strings.TrimSpace(string(def)) == loopbackCongestion {
		t.Skipf("the default is already %s", loopbackCongestion)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	tuneLoopbackListener(ln)
	p, err := New(Config{Decider: &fakeDecider{}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := p.cfg.Dial(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	a, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if got := ccOf(t, c.(*net.TCPConn)); got != loopbackCongestion {
		t.Errorf("dialled: %s", got)
	}
	if got := ccOf(t, a.(*net.TCPConn)); got != loopbackCongestion {
		t.Errorf("accepted: %s", got)
	}

	// Not tuned beforehand: the plain dial gets the default, then the
	// relay's tuneLoopback switches it.
	plain, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if got := ccOf(t, plain.(*net.TCPConn)); got == loopbackCongestion {
		t.Fatalf("plain dial already %s", got)
	}
	tuneLoopback(plain)
	if got := ccOf(t, plain.(*net.TCPConn)); got != loopbackCongestion {
		t.Errorf("after tuneLoopback: %s", got)
	}

	// A listener on the wildcard address is not a loopback one.
	wild, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer wild.Close()
	tuneLoopbackListener(wild)
	rc, _ := wild.(*net.TCPListener).SyscallConn()
	var got string
	_ = rc.Control(func(fd uintptr) { got, _ = unix.GetsockoptString(int(fd), unix.IPPROTO_TCP, unix.TCP_CONGESTION) })
	if strings.TrimRight(got, "\x00") == loopbackCongestion {
		t.Errorf("wildcard listener tuned")
	}
}
