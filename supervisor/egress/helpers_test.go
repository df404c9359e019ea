package egress

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeDecider allows the HOST:PORT keys of allow (with their rule),
// asks for ask, denies the rest, and refuses the addresses in bad.
type fakeDecider struct {
	allow map[string]string // "host:port" -> rule
	ask   map[string]string
	bad   map[netip.Addr]bool
}

func (d *fakeDecider) Decide(_ context.Context, host string, port uint16) Verdict {
	k := net.JoinHostPort(host, strconv.Itoa(int(port)))
	if r, ok := d.allow[k]; ok {
		return Verdict{Allow, r, ""}
	}
	if r, ok := d.ask[k]; ok {
		return Verdict{Ask, r, "a human decides"}
	}
	return Verdict{Deny, "test.toml:9", "not on the list"}
}

func (d *fakeDecider) CheckAddr(_ string, ip netip.Addr, _ uint16) error {
	if d.bad[ip] {
		return errors.New("a private address")
	}
	return nil
}

// fakeResolver answers from answers; a name with several answers gives
// them in turn (the last one repeats), counting calls.
type fakeResolver struct {
	mu      sync.Mutex
	answers map[string][][]netip.Addr
	calls   map[string]int
}

func (r *fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.calls == nil {
		r.calls = map[string]int{}
	}
	a, ok := r.answers[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	i := min(r.calls[host], len(a)-1)
	r.calls[host]++
	return a[i], nil
}

// testServer counts accepted connections on addr and runs serve on each.
type testServer struct {
	ln       net.Listener
	accepted atomic.Int64
	port     uint16
}

func newTestServer(t testing.TB, addr string, serve func(net.Conn)) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s := &testServer{ln: ln, port: uint16(ln.Addr().(*net.TCPAddr).Port)}
	t.Cleanup(func() { _ = ln.Close() }) // test over
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.accepted.Add(1)
			go func() { defer c.Close(); serve(c) }()
		}
	}()
	return s
}

// echo copies what it reads back until EOF.
func echo(c net.Conn) { _, _ = io.Copy(c, c) }

// events records a proxy's events.
type events struct {
	mu   sync.Mutex
	ev   []Event
	ch   chan Event
	fail bool // connect events fail to record, as a broken audit sink
}

func newEvents() *events { return &events{ch: make(chan Event, 100)} }

func (e *events) on(ev Event) error {
	e.mu.Lock()
	e.ev = append(e.ev, ev)
	fail := e.fail
	e.mu.Unlock()
	e.ch <- ev
	if fail && ev.Kind == "connect" {
		return errors.New("audit sink is down")
	}
	return nil
}

// next waits for the next event of kind.
func (e *events) next(t testing.TB, kind string) Event {
	t.Helper()
	for {
		select {
		case ev := <-e.ch:
			if ev.Kind == kind {
				return ev
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no %s event", kind)
		}
	}
}

type fixture struct {
	p      *Proxy
	ev     *events
	http   string // listener addresses
	socks  string
	trans  string
	names  *Names
	res    *fakeResolver
	decide *fakeDecider
}

func newFixture(t testing.TB, cfg Config) *fixture {
	t.Helper()
	f := &fixture{ev: newEvents()}
	if cfg.Decider == nil {
		cfg.Decider = &fakeDecider{}
	}
	f.decide, _ = cfg.Decider.(*fakeDecider)
	if cfg.Resolver == nil {
		cfg.Resolver = &fakeResolver{}
	}
	f.res, _ = cfg.Resolver.(*fakeResolver)
	if cfg.Names == nil {
		n, err := NewNames(DefaultV4, DefaultV6, 0)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Names = n
	}
	f.names = cfg.Names
	cfg.OnEvent = f.ev.on
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.p = p
	f.http = listen(t, p.ServeHTTP)
	f.socks = listen(t, p.ServeSOCKS5)
	f.trans = listen(t, p.ServeTransparent)
	t.Cleanup(func() { _ = p.Close() }) // test over
	return f
}

func listen(t testing.TB, serve func(net.Listener) error) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = serve(ln) }() // ends with net.ErrClosed at Close
	return ln.Addr().String()
}

func hp(host string, port uint16) string { return net.JoinHostPort(host, fmt.Sprint(port)) }

var lo = netip.MustParseAddr("127.0.0.1")
