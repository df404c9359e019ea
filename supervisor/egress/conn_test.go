package egress

import (
	"bytes"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestRebinding: the name is resolved once; the address checked is the
// address dialled, whatever later answers say.
func TestRebinding(t *testing.T) {
	good := newTestServer(t, "127.0.0.1:0", echo)
	evil := newTestServer(t, "127.0.0.2:"+itoa(good.port), echo) // same port, forbidden address
	bad := netip.MustParseAddr("127.0.0.2")
	tests := []struct {
		name    string
		answers [][]netip.Addr
		code    int
	}{
		{"good, then rebound to a forbidden address", [][]netip.Addr{{lo}, {bad}}, 200},
		{"forbidden first, good afterwards", [][]netip.Addr{{bad}, {lo}}, 403},
		{"mixed answer", [][]netip.Addr{{lo, bad}}, 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := &fakeResolver{answers: map[string][][]netip.Addr{"re.test": tt.answers}}
			f := newFixture(t, Config{
				Decider:  &fakeDecider{allow: map[string]string{hp("re.test", good.port): "t:1"}, bad: map[netip.Addr]bool{bad: true}},
				Resolver: res,
			})
			g0 := good.accepted.Load()
			c, br, code, body := httpConnect(t, f.http, hp("re.test", good.port))
			if code != tt.code {
				t.Fatalf("status %d, want %d: %s", code, tt.code, body)
			}
			ev := f.ev.next(t, "connect")
			if code == 200 {
				roundTrip(t, c, br)
				if ev.Addr != netip.AddrPortFrom(lo, good.port) || good.accepted.Load() != g0+1 {
					t.Fatalf("dialled %v", ev.Addr)
				}
			} else if !strings.Contains(body, "127.0.0.2") || ev.Addr.IsValid() {
				t.Fatalf("body %q, dialled %v", body, ev.Addr)
			}
			if res.calls["re.test"] != 1 {
				t.Fatalf("resolved %d times", res.calls["re.test"])
			}
			if evil.accepted.Load() != 0 {
				t.Fatal("the forbidden address saw a connection")
			}
		})
	}
}

// TestByteCounts: the disconnect event counts each way exactly.
func TestByteCounts(t *testing.T) {
	const in = 300000
	srv := newTestServer(t, "127.0.0.1:0", func(c net.Conn) {
		_, _ = io.Copy(io.Discard, c)                 // until the run half-closes
		_, _ = c.Write(bytes.Repeat([]byte("i"), in)) // the test checks what arrives
	})
	f := newFixture(t, Config{
		Decider:  &fakeDecider{allow: map[string]string{hp("ok.test", srv.port): "t:1"}},
		Resolver: &fakeResolver{answers: map[string][][]netip.Addr{"ok.test": {{lo}}}},
	})
	c, br, code, _ := httpConnect(t, f.http, hp("ok.test", srv.port))
	if code != 200 {
		t.Fatal(code)
	}
	out := bytes.Repeat([]byte("o"), 123457)
	if _, err := c.Write(out); err != nil {
		t.Fatal(err)
	}
	_ = c.(*net.TCPConn).CloseWrite() // EOF to the server, through the proxy
	got, err := io.ReadAll(br)
	if err != nil || len(got) != in {
		t.Fatalf("read %d, %v", len(got), err)
	}
	ev := f.ev.next(t, "disconnect")
	if ev.BytesOut != int64(len(out)) || ev.BytesIn != in || ev.Err != "" || ev.Decision != Allow || ev.Rule != "t:1" {
		t.Fatalf("event %+v", ev)
	}
	if f.p.EgressBytes() != int64(len(out)) {
		t.Fatalf("egress %d", f.p.EgressBytes())
	}
}

func TestLimitConns(t *testing.T) {
	srv := newTestServer(t, "127.0.0.1:0", echo)
	f := newFixture(t, Config{
		MaxConns: 1, ConnsRule: "t.toml:30",
		Decider:  &fakeDecider{allow: map[string]string{hp("ok.test", srv.port): "t:1"}},
		Resolver: &fakeResolver{answers: map[string][][]netip.Addr{"ok.test": {{lo}}}},
	})
	c, br, code, _ := httpConnect(t, f.http, hp("ok.test", srv.port))
	if code != 200 {
		t.Fatal(code)
	}
	roundTrip(t, c, br)
	_, _, code, body := httpConnect(t, f.http, hp("ok.test", srv.port))
	if code != 403 || !strings.Contains(body, "connection limit") || !strings.Contains(body, "(t.toml:30)") {
		t.Fatalf("%d %q", code, body)
	}
	if _, rc := socksConnect(t, f.socks, "ok.test", srv.port); rc != socksNotAllowed {
		t.Fatalf("socks %#x", rc)
	}
	_ = c.Close() // frees the slot
	f.ev.next(t, "disconnect")
	c2, br2, code, _ := httpConnect(t, f.http, hp("ok.test", srv.port))
	if code != 200 {
		t.Fatal("slot not freed")
	}
	roundTrip(t, c2, br2)
}

func TestLimitEgress(t *testing.T) {
	const max = 3 << 20
	srv := newTestServer(t, "127.0.0.1:0", func(c net.Conn) { _, _ = io.Copy(io.Discard, c) })
	f := newFixture(t, Config{
		MaxEgressBytes: max, EgressRule: "t.toml:31",
		Decider:  &fakeDecider{allow: map[string]string{hp("ok.test", srv.port): "t:1"}},
		Resolver: &fakeResolver{answers: map[string][][]netip.Addr{"ok.test": {{lo}}}},
	})
	c, _, code, _ := httpConnect(t, f.http, hp("ok.test", srv.port))
	if code != 200 {
		t.Fatal(code)
	}
	_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second)) // the cut ends it sooner
	n, err := c.Write(make([]byte, 64<<20))                 // more than the socket buffers hold
	if err == nil {
		t.Fatalf("wrote %d past the budget", n)
	}
	ev := f.ev.next(t, "disconnect")
	if ev.BytesOut != max || !strings.Contains(ev.Err, "t.toml:31") {
		t.Fatalf("event %+v", ev)
	}
	_, _, code, body := httpConnect(t, f.http, hp("ok.test", srv.port))
	if code != 403 || !strings.Contains(body, "egress limit") || !strings.Contains(body, "t.toml:31") {
		t.Fatalf("%d %q", code, body)
	}
}

// TestTransparent decides redirected connections by their original
// destination (injected: installing NAT rules is the namespace's job).
func TestTransparent(t *testing.T) {
	srv := newTestServer(t, "127.0.0.1:0", echo)
	f := newFixture(t, Config{
		Decider:  &fakeDecider{allow: map[string]string{hp("ok.test", srv.port): "t:1"}},
		Resolver: &fakeResolver{answers: map[string][][]netip.Addr{"ok.test": {{lo}}, "no.test": {{lo}}}},
	})
	okAddr, _, _ := f.names.Assign("ok.test")
	noAddr, _, _ := f.names.Assign("no.test")
	_, ok6, _ := f.names.Assign("ok.test")
	var dst atomic.Value // netip.AddrPort
	f.p.origDst = func(*net.TCPConn) (netip.AddrPort, error) { return dst.Load().(netip.AddrPort), nil }
	trans := listen(t, f.p.ServeTransparent) // started after the hook is set
	tests := []struct {
		name string
		dst  netip.AddrPort
		ok   bool
	}{
		{"synthetic v4 of an allowed name", netip.AddrPortFrom(okAddr, srv.port), true},
		{"synthetic v6 of an allowed name", netip.AddrPortFrom(ok6, srv.port), true},
		{"allowed name, other port", netip.AddrPortFrom(okAddr, srv.port+1), false},
		{"denied name", netip.AddrPortFrom(noAddr, srv.port), false},
		{"raw IP literal", netip.AddrPortFrom(lo, srv.port), false},
		{"unmapped synthetic address", netip.MustParseAddrPort("198.18.200.1:80"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst.Store(tt.dst)
			before := srv.accepted.Load()
			if !tt.ok {
				expectReset(t, trans)
			} else {
				c, err := net.Dial("tcp", trans)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				roundTrip(t, c, c)
				return
			}
			if srv.accepted.Load() != before {
				t.Fatal("refused destination saw a connection")
			}
		})
	}
}

// TestOriginalDstNotRedirected runs the real getsockopt: a connection
// that no NAT rule redirected has no original destination and is reset.
func TestOriginalDstNotRedirected(t *testing.T) {
	f := newFixture(t, Config{})
	expectReset(t, f.trans)
	if ev := f.ev.next(t, "connect"); ev.Decision != Deny || ev.Err == "" {
		t.Fatalf("event %+v", ev)
	}
}

// expectReset connects to addr and expects the connection to be reset
// (the RST may already have arrived when connect returns).
func expectReset(t *testing.T, addr string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err == nil {
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second)) // bounded wait
		_, err = c.Read(make([]byte, 1))
	}
	if err == nil || !strings.Contains(err.Error(), "reset") {
		t.Fatalf("want a reset, got %v", err)
	}
}

// TestUnrecordedConnectionCut: when the connect event cannot be recorded,
// the allowed connection is cut before a byte reaches the destination.
func TestUnrecordedConnectionCut(t *testing.T) {
	got := make(chan int, 1)
	srv := newTestServer(t, "127.0.0.1:0", func(c net.Conn) {
		b, _ := io.ReadAll(c)
		got <- len(b)
	})
	f := newFixture(t, Config{
		Decider:  &fakeDecider{allow: map[string]string{hp("ok.test", srv.port): "t:1"}},
		Resolver: &fakeResolver{answers: map[string][][]netip.Addr{"ok.test": {{lo}}}},
	})
	f.ev.mu.Lock()
	f.ev.fail = true
	f.ev.mu.Unlock()
	c, _, code, _ := httpConnect(t, f.http, hp("ok.test", srv.port))
	if code == 200 {
		_, _ = c.Write([]byte("must not arrive"))
		t.Fatal("an unrecorded connection was relayed")
	}
	if n := <-got; n != 0 {
		t.Fatalf("the destination received %d bytes", n)
	}
}

// TestLimitEgressIdleHoldsNothing: an open connection that sends nothing
// reserves none of a small budget, so another connection of the run may
// use it, and the budget is still exact.
func TestLimitEgressIdleHoldsNothing(t *testing.T) {
	const budget = 100000
	got := make(chan int64, 4)
	srv := newTestServer(t, "127.0.0.1:0", func(c net.Conn) {
		n, _ := io.Copy(io.Discard, c)
		got <- n
	})
	f := newFixture(t, Config{
		MaxEgressBytes: budget, EgressRule: "t.toml:31",
		Decider:  &fakeDecider{allow: map[string]string{hp("ok.test", srv.port): "t:1"}},
		Resolver: &fakeResolver{answers: map[string][][]netip.Addr{"ok.test": {{lo}}}},
	})
	idle, _, code, _ := httpConnect(t, f.http, hp("ok.test", srv.port))
	if code != 200 {
		t.Fatal(code)
	}
	defer idle.Close()
	c, _, code, _ := httpConnect(t, f.http, hp("ok.test", srv.port))
	if code != 200 {
		t.Fatal(code)
	}
	if _, err := c.Write(make([]byte, 60000)); err != nil {
		t.Fatalf("the first 60000 bytes: %v", err)
	}
	_ = c.(*net.TCPConn).CloseWrite()
	if ev := f.ev.next(t, "disconnect"); ev.BytesOut != 60000 || ev.Err != "" {
		t.Fatalf("event %+v", ev)
	}
	if n := <-got; n != 60000 {
		t.Fatalf("the server received %d bytes", n)
	}
	c2, _, code, _ := httpConnect(t, f.http, hp("ok.test", srv.port))
	if code != 200 {
		t.Fatal(code)
	}
	_ = c2.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, _ = c2.Write(make([]byte, 200000)) // past the budget: cut
	if ev := f.ev.next(t, "disconnect"); ev.BytesOut != budget-60000 || !strings.Contains(ev.Err, "egress limit") {
		t.Fatalf("event %+v", ev)
	}
	if n := <-got; n != budget-60000 {
		t.Fatalf("the server received %d bytes past the first", n)
	}
}

// TestOwnRefusalsCiteOwnRule: the proxy's own refusals (here a synthetic
// address no name was given) cite Config.OwnRule, in the 403 body too.
func TestOwnRefusalsCiteOwnRule(t *testing.T) {
	f := newFixture(t, Config{OwnRule: "t.toml:6"})
	_, _, code, body := httpConnect(t, f.http, "198.18.200.1:80")
	if code != 403 || !strings.Contains(body, "no name was given (t.toml:6)") {
		t.Fatalf("%d %q", code, body)
	}
	if ev := f.ev.next(t, "connect"); ev.Rule != "t.toml:6" || ev.Decision != Deny {
		t.Fatalf("event %+v", ev)
	}
}
