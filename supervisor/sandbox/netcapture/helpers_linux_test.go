package netcapture

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

var testPorts = Ports{Transparent: 15001, HTTP: 15002, SOCKS: 15003, DNS: 53}

func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces, nftables)")
	}
}

// newNetns makes an empty network namespace and returns an fd keeping it
// alive until the test ends.
func newNetns(t testing.TB) int {
	t.Helper()
	needRoot(t)
	f, err := NewNetns()
	if err != nil {
		t.Fatalf("new netns: %v", err)
	}
	t.Cleanup(func() { f.Close() })
	return int(f.Fd())
}

// routeOnly gives ns lo, the dummy and its default routes but no rules:
// the control that shows the rules are what stop traffic.
func routeOnly(t testing.TB, ns int) {
	t.Helper()
	err := InNetns(ns, func() error {
		h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			return err
		}
		defer h.Close()
		if err := loUp(h); err != nil {
			return err
		}
		d, err := addDummy(h)
		if err != nil {
			return err
		}
		return routeOut(h, d)
	})
	if err != nil {
		t.Fatalf("route-only netns: %v", err)
	}
}

// dummyTx counts the packets handed to the black-hole interface (a dummy
// counts them as tx, an ifb as rx and rx_dropped), or -1 if there is none.
func dummyTx(t testing.TB, ns int) int64 {
	t.Helper()
	var n int64 = -1
	err := InNetns(ns, func() error {
		h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			return err
		}
		defer h.Close()
		l, err := h.LinkByName(DummyName)
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		if err != nil {
			return err
		}
		st := l.Attrs().Statistics
		n = int64(st.TxPackets + st.TxDropped + st.RxPackets)
		return nil
	})
	if err != nil {
		t.Fatalf("dummy counters: %v", err)
	}
	return n
}

// outRoutes lists the routes in ns through anything but lo.
func outRoutes(t testing.TB, ns int) []string {
	t.Helper()
	var out []string
	err := InNetns(ns, func() error {
		h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			return err
		}
		defer h.Close()
		rs, err := h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
		if err != nil {
			return err
		}
		for _, r := range rs {
			if l, err := h.LinkByIndex(r.LinkIndex); err == nil && l.Attrs().Name != "lo" {
				out = append(out, r.String())
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("routes: %v", err)
	}
	return out
}

func dialIn(ns int, network, addr string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := InNetns(ns, func() error {
		var err error
		c, err = net.DialTimeout(network, addr, timeout)
		return err
	})
	return c, err
}

// sendUDP sends one datagram from a fresh socket in ns.
func sendUDP(t testing.TB, ns int, to string) error {
	t.Helper()
	ap := netip.MustParseAddrPort(to)
	network := "udp4"
	if ap.Addr().Is6() {
		network = "udp6"
	}
	c, err := ListenPacketIn(ns, network, ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.WriteTo([]byte("hello"), net.UDPAddrFromAddrPort(ap))
	return err
}

// received reports whether c gets a datagram within d.
func received(c net.PacketConn, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 64)
	_, _, err := c.ReadFrom(buf)
	return err == nil
}

// rawSend sends payload on a raw socket of proto in ns to addr; with
// wantReply it then waits briefly for any answer and reports one.
func rawSend(t testing.TB, ns int, addr string, proto int, payload []byte, wantReply bool) (sendErr error, replied bool) {
	t.Helper()
	a := netip.MustParseAddr(addr)
	family := unix.AF_INET6
	var sa unix.Sockaddr = &unix.SockaddrInet6{Addr: a.As16()}
	if a.Is4() {
		family, sa = unix.AF_INET, &unix.SockaddrInet4{Addr: a.As4()}
	}
	var fd int
	if err := InNetns(ns, func() error {
		var err error
		fd, err = unix.Socket(family, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
		return err
	}); err != nil {
		t.Fatalf("raw socket: %v", err)
	}
	defer unix.Close(fd)
	if err := unix.Sendto(fd, payload, 0, sa); err != nil || !wantReply {
		return err, false
	}
	tv := unix.NsecToTimeval(int64(300 * time.Millisecond))
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	buf := make([]byte, 1500)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return nil, false
		}
		if isEchoReply(buf[:n], a.Is6()) {
			return nil, true
		}
	}
}

// echoRequest is an ICMP (or ICMPv6: the kernel sums those) echo request.
func echoRequest(v6 bool) []byte {
	p := []byte{8, 0, 0, 0, 0x12, 0x34, 0, 1, 'e', 'g'}
	if v6 {
		p[0] = 128
		return p
	}
	var sum uint32
	for i := 0; i < len(p); i += 2 {
		sum += uint32(p[i])<<8 | uint32(p[i+1])
	}
	sum = (sum >> 16) + (sum & 0xffff)
	sum += sum >> 16
	cs := ^uint16(sum)
	p[2], p[3] = byte(cs>>8), byte(cs)
	return p
}

// isEchoReply: IPv4 raw sockets see the IP header, IPv6 ones do not.
func isEchoReply(b []byte, v6 bool) bool {
	if v6 {
		return len(b) > 0 && b[0] == 129
	}
	if len(b) < 20 {
		return false
	}
	ihl := int(b[0]&0x0f) * 4
	return len(b) > ihl && b[ihl] == 0
}
