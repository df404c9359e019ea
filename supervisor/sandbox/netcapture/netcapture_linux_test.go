package netcapture

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// transparent serves ln like execgate's transparent listener would: it
// reports each connection's original destination and writes "ok".
func transparent(t *testing.T, ln net.Listener) <-chan netip.AddrPort {
	ch := make(chan netip.AddrPort, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			ap, err := OriginalDst(c.(*net.TCPConn))
			if err != nil {
				t.Errorf("OriginalDst: %v", err)
			}
			ch <- ap
			c.Write([]byte("ok"))
			c.Close()
		}
	}()
	return ch
}

func listen(t *testing.T, ns int, network, addr string) net.Listener {
	t.Helper()
	ln, err := ListenIn(ns, network, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func listenPacket(t *testing.T, ns int, addr string) net.PacketConn {
	t.Helper()
	c, err := ListenPacketIn(ns, "udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestCaptureTCP(t *testing.T) {
	ns := newNetns(t)
	if err := Setup(ns, testPorts); err != nil {
		t.Fatal(err)
	}
	tp := fmt.Sprint(testPorts.Transparent)
	got4 := transparent(t, listen(t, ns, "tcp", "127.0.0.1:"+tp))
	got6 := transparent(t, listen(t, ns, "tcp", "[::1]:"+tp))
	tx0 := dummyTx(t, ns)
	for _, tc := range []struct {
		dst string
		got <-chan netip.AddrPort
	}{{"203.0.113.7:443", got4}, {"[2001:db8::7]:443", got6}, {"10.1.2.3:22", got4}} {
		c, err := dialIn(ns, "tcp", tc.dst, 2*time.Second)
		if err != nil {
			t.Fatalf("dial %s: %v", tc.dst, err)
		}
		b, _ := io.ReadAll(c)
		c.Close()
		select {
		case ap := <-tc.got:
			if ap != netip.MustParseAddrPort(tc.dst) || string(b) != "ok" {
				t.Errorf("dial %s: original dst %v, read %q", tc.dst, ap, b)
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("dial %s: transparent listener got nothing", tc.dst)
		}
	}
	// Loopback TCP is not redirected: the proxy's own ports and the run's
	// own localhost servers are reached directly.
	for _, addr := range []string{fmt.Sprintf("127.0.0.1:%d", testPorts.HTTP), "127.0.0.1:8080", "[::1]:8080"} {
		ln := listen(t, ns, "tcp", addr)
		c, err := dialIn(ns, "tcp", addr, time.Second)
		if err != nil {
			t.Fatalf("direct %s: %v", addr, err)
		}
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
		c.Close()
	}
	select {
	case ap := <-got4:
		t.Errorf("loopback connection was redirected (original %v)", ap)
	default:
	}
	if tx := dummyTx(t, ns); tx != tx0 {
		t.Errorf("dummy sent %d packets", tx-tx0)
	}
}

func TestCaptureUDPAndICMP(t *testing.T) {
	ns := newNetns(t)
	if err := Setup(ns, testPorts); err != nil {
		t.Fatal(err)
	}
	dns := listenPacket(t, ns, "127.0.0.1:53")
	other := listenPacket(t, ns, "127.0.0.1:5353")
	other6 := listenPacket(t, ns, "[::1]:53")
	tx0 := dummyTx(t, ns)
	if err := sendUDP(t, ns, "127.0.0.1:53"); err != nil || !received(dns, time.Second) {
		t.Fatalf("UDP to the DNS: err %v, or not received", err)
	}
	// The DNS can answer.
	if err := answer(t, ns, dns); err != nil {
		t.Errorf("DNS reply: %v", err)
	}
	for _, to := range []string{"203.0.113.7:53", "[2001:db8::7]:53", "10.1.2.3:123"} {
		if err := sendUDP(t, ns, to); !errors.Is(err, unix.EPERM) {
			t.Errorf("UDP to %s: %v, want EPERM", to, err)
		}
	}
	for to, c := range map[string]net.PacketConn{"127.0.0.1:5353": other, "[::1]:53": other6} {
		sendUDP(t, ns, to)
		if received(c, 200*time.Millisecond) {
			t.Errorf("UDP to %s arrived", to)
		}
	}
	for _, a := range []string{"203.0.113.7", "2001:db8::7", "127.0.0.1", "::1"} {
		proto := unix.IPPROTO_ICMP
		if netip.MustParseAddr(a).Is6() {
			proto = unix.IPPROTO_ICMPV6
		}
		err, replied := rawSend(t, ns, a, proto, echoRequest(proto != unix.IPPROTO_ICMP), true)
		if replied {
			t.Errorf("ping %s answered (send err %v)", a, err)
		}
	}
	// Other protocols: SCTP (132), GRE (47) and UDP-lite (136) by raw socket.
	for _, proto := range []int{132, 47, 136} {
		for _, a := range []string{"203.0.113.7", "2001:db8::7"} {
			if err, _ := rawSend(t, ns, a, proto, []byte("xxxxxxxxxxxxxxxx"), false); !errors.Is(err, unix.EPERM) {
				t.Errorf("raw proto %d to %s: %v, want EPERM", proto, a, err)
			}
		}
	}
	if tx := dummyTx(t, ns); tx != tx0 {
		t.Errorf("dummy sent %d packets", tx-tx0)
	}
}

// answer replies from the DNS socket to a client and checks it arrives.
func answer(t *testing.T, ns int, dns net.PacketConn) error {
	c, err := ListenPacketIn(ns, "udp4", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.WriteTo([]byte("q"), dns.LocalAddr()); err != nil {
		return err
	}
	buf := make([]byte, 16)
	dns.SetReadDeadline(time.Now().Add(time.Second))
	_, from, err := dns.ReadFrom(buf)
	if err != nil {
		return err
	}
	if _, err := dns.WriteTo([]byte("a"), from); err != nil {
		return err
	}
	if !received(c, time.Second) {
		return errors.New("answer not received")
	}
	return nil
}

// TestControlWithoutRules: the same namespace without the rules does send
// out of the dummy and answers pings, so it is the rules that stop it.
func TestControlWithoutRules(t *testing.T) {
	ns := newNetns(t)
	routeOnly(t, ns)
	tx0 := dummyTx(t, ns)
	if err := sendUDP(t, ns, "203.0.113.7:53"); err != nil {
		t.Fatalf("UDP: %v", err)
	}
	if err := sendUDP(t, ns, "[2001:db8::7]:53"); err != nil {
		t.Fatalf("UDP6: %v", err)
	}
	if err, _ := rawSend(t, ns, "203.0.113.7", unix.IPPROTO_ICMP, echoRequest(false), false); err != nil {
		t.Fatalf("ICMP: %v", err)
	}
	if c, err := dialIn(ns, "tcp", "203.0.113.7:443", 200*time.Millisecond); err == nil {
		c.Close()
		t.Fatal("TCP to 203.0.113.7 connected with no rules")
	}
	tx := dummyTx(t, ns)
	if tx-tx0 < 4 {
		t.Errorf("dummy sent %d packets, want >= 4 (udp, udp6, icmp, syn)", tx-tx0)
	}
	t.Logf("without rules the dummy sent %d packets", tx-tx0)
	other := listenPacket(t, ns, "127.0.0.1:5353")
	if sendUDP(t, ns, "127.0.0.1:5353"); !received(other, time.Second) {
		t.Error("UDP on loopback did not arrive without rules")
	}
	if _, replied := rawSend(t, ns, "127.0.0.1", unix.IPPROTO_ICMP, echoRequest(false), true); !replied {
		t.Error("ping 127.0.0.1 unanswered without rules")
	}
}

// TestSetupFailsClosed makes each step fail in turn: the namespace is left
// with no route out and nothing gets out of it.
func TestSetupFailsClosed(t *testing.T) {
	for _, s := range []string{"loopback up", "nftables", "add dummy", "dummy routes", "route family 2", "route family 10"} {
		t.Run(s, func(t *testing.T) {
			ns := newNetns(t)
			testFail = func(step string) error {
				if step == s {
					return errors.New("injected")
				}
				return nil
			}
			defer func() { testFail = nil }()
			if err := Setup(ns, testPorts); err == nil {
				t.Fatal("Setup succeeded")
			}
			if r := outRoutes(t, ns); len(r) != 0 {
				t.Errorf("routes out left: %v", r)
			}
			if c, err := dialIn(ns, "tcp", "203.0.113.7:443", 300*time.Millisecond); err == nil {
				c.Close()
				t.Error("TCP connected")
			}
			if err := sendUDP(t, ns, "203.0.113.7:53"); err == nil {
				t.Error("UDP sent")
			}
			if tx := dummyTx(t, ns); tx > 0 {
				t.Errorf("dummy sent %d packets", tx)
			}
		})
	}
}

func TestSetupTwiceRefused(t *testing.T) {
	ns := newNetns(t)
	if err := Setup(ns, testPorts); err != nil {
		t.Fatal(err)
	}
	if err := Setup(ns, testPorts); err == nil {
		t.Fatal("second Setup succeeded")
	}
	if err := Setup(newNetns(t), Ports{Transparent: 1, HTTP: 1, DNS: 53}); err == nil {
		t.Fatal("duplicate ports accepted")
	}
}

// TestInNetnsRestores: after many InNetns calls no thread of the process
// is left in the other namespace.
func TestInNetnsRestores(t *testing.T) {
	ns := newNetns(t)
	for i := 0; i < 50; i++ {
		if err := InNetns(ns, func() error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 64)
	for i := 0; i < cap(errc); i++ {
		go func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			got, err := os.Readlink(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
			if err == nil && got != want {
				err = fmt.Errorf("thread in %s, want %s", got, want)
			}
			errc <- err
		}()
	}
	for i := 0; i < cap(errc); i++ {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	if err := InNetns(ns, func() error { return errors.New("boom") }); err == nil || err.Error() != "boom" {
		t.Fatalf("fn error not returned: %v", err)
	}
}
