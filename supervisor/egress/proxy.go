package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Protocols a connection came in by.
const (
	ProtoHTTP        = "http"        // HTTP CONNECT or an absolute-form request
	ProtoSOCKS5      = "socks5"      // SOCKS5 CONNECT
	ProtoTransparent = "transparent" // redirected TCP (SO_ORIGINAL_DST)
)

// Event is one connection record for the journal. Kind "connect" is
// emitted once a connection is decided (and, if allowed, dialled or failed
// to dial); "disconnect" when an established one closes, with its counts.
type Event struct {
	Kind     string // "connect" or "disconnect"
	Proto    string
	Client   netip.AddrPort // the run's end of the connection
	Host     string         // the name decided (or the IP literal)
	Port     uint16
	Addr     netip.AddrPort // what was dialled (zero if nothing was)
	Decision Action
	Rule     string
	Reason   string
	Err      string // a dial or resolve failure, or why the relay ended early
	BytesOut int64  // run to destination
	BytesIn  int64  // destination to run
	Duration time.Duration
}

// DurationMS is Duration in whole milliseconds, as journaled.
func (e Event) DurationMS() int64 { return e.Duration.Milliseconds() }

// Config configures a Proxy, one per run.
type Config struct {
	Decider  Decider  // required
	Asker    Asker    // holds ask verdicts; nil refuses them
	Resolver Resolver // host-side resolver; nil is net.DefaultResolver
	Names    *Names   // the run's synthetic map; nil treats every address as a literal
	// OnEvent records an event. An error for the connect event of an
	// allowed connection cuts it before any byte is relayed: a connection
	// that could not be recorded does not go on.
	OnEvent func(Event) error

	MaxConns       int   // concurrent connections; 0 is unlimited
	MaxEgressBytes int64 // bytes out over the proxy's life; 0 is unlimited
	// ConnsRule and EgressRule are what the limits' refusals cite: the
	// file:line of the setting. OwnRule is what the proxy's own refusals
	// cite (a synthetic address no name was given, a connection that was
	// not redirected, a malformed destination): the network mode's line.
	ConnsRule, EgressRule, OwnRule string

	DialTimeout      time.Duration // default 10s
	HandshakeTimeout time.Duration // reading a request; default 10s
	// Dial dials the checked address; nil is a net.Dialer. Tests and the
	// daemon may bind it (for example to a source address).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Proxy decides, dials and relays the connections of one run.
type Proxy struct {
	cfg Config
	// ctx ends with Close, and with it every decision still waiting (an
	// ask held for a human).
	ctx    context.Context
	cancel context.CancelFunc

	egressUsed     atomic.Int64 // bytes relayed out
	egressReserved atomic.Int64 // egressUsed plus chunks in flight

	// origDst replaces SO_ORIGINAL_DST in tests; set before serving.
	origDst func(*net.TCPConn) (netip.AddrPort, error)

	mu     sync.Mutex
	active int
	conns  map[net.Conn]struct{}
	lns    map[net.Listener]struct{}
	closed bool
	wg     sync.WaitGroup
}

// New returns a proxy. It starts nothing: see ServeHTTP, ServeSOCKS5 and
// ServeTransparent.
func New(cfg Config) (*Proxy, error) {
	if cfg.Decider == nil {
		return nil, errors.New("egress: Config.Decider is required")
	}
	if cfg.Resolver == nil {
		cfg.Resolver = net.DefaultResolver
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 10 * time.Second
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = 10 * time.Second
	}
	if cfg.Dial == nil {
		cfg.Dial = (&net.Dialer{Control: loopbackDialControl}).DialContext
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Proxy{cfg: cfg, ctx: ctx, cancel: cancel, conns: map[net.Conn]struct{}{}, lns: map[net.Listener]struct{}{}}, nil
}

// EgressBytes is the bytes relayed out so far.
func (p *Proxy) EgressBytes() int64 { return p.egressUsed.Load() }

// Close stops every listener and cuts every connection, then waits for
// their goroutines (and their disconnect events).
func (p *Proxy) Close() error {
	p.cancel()
	p.mu.Lock()
	p.closed = true
	for ln := range p.lns {
		_ = ln.Close() // shutting down; Accept returns and the loop ends
	}
	for c := range p.conns {
		_ = c.Close() // cut; its relay sees the error and records it
	}
	p.mu.Unlock()
	p.wg.Wait()
	return nil
}

func (p *Proxy) emit(e Event) error {
	if p.cfg.OnEvent != nil {
		return p.cfg.OnEvent(e)
	}
	return nil
}

// track registers c to be cut on Close; false if already closed.
func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// serve runs an accept loop, handling each connection in a goroutine.
func (p *Proxy) serve(ln net.Listener, handle func(net.Conn)) error {
	tuneLoopbackListener(ln)
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return net.ErrClosed
	}
	p.lns[ln] = struct{}{}
	p.wg.Add(1)
	p.mu.Unlock()
	defer p.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		if !p.track(c) {
			_ = c.Close() // the proxy is closing
			continue
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer p.untrack(c)
			defer c.Close()
			handle(c)
		}()
	}
}

// acquire takes a connection slot, or says which limit refuses it.
func (p *Proxy) acquire() (Verdict, bool) {
	if m := p.cfg.MaxEgressBytes; m > 0 && p.egressUsed.Load() >= m {
		return Verdict{Deny, p.cfg.EgressRule,
			fmt.Sprintf("egress limit reached: %d of %d bytes sent", p.egressUsed.Load(), m)}, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if m := p.cfg.MaxConns; m > 0 && p.active >= m {
		return Verdict{Deny, p.cfg.ConnsRule,
			fmt.Sprintf("connection limit reached: %d concurrent connections", m)}, false
	}
	p.active++
	return Verdict{}, true
}

func (p *Proxy) release() {
	p.mu.Lock()
	p.active--
	p.mu.Unlock()
}

func clientAddr(c net.Conn) netip.AddrPort {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.AddrPort()
	}
	return netip.AddrPort{}
}
