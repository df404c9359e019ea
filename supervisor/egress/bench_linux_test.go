package egress

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/execgate/execgate/supervisor/sandbox/netcapture"
	"golang.org/x/sys/unix"
)

// TestBenchEgress (EXECGATE_BENCH=1, root) measures the real path: a run's
// network namespace confined by netcapture.Setup, the proxy's transparent
// (127.0.0.1 and [::1]) and HTTP CONNECT listeners opened inside it, the
// proxy dialling out from the host namespace to a test server on
// 127.0.0.1. The same client (its sockets created inside the namespace, or
// in the host's for "direct") measures, in interleaved rounds:
//
//   - set-up: connect + a one-byte echo round trip (plus CONNECT/200 for
//     the HTTP proxy), median;
//   - a 1 GiB one-way transfer, download (destination to run) and upload
//     (run to destination, with an egress budget set so that the budgeted
//     path is the one measured), MiB/s of the median round.
//
// "bare" is the ceiling for a Go relay on this path: a second confined
// namespace whose transparent port is served by a relay with nothing but
// a dial, the proxy's loopback tuning (loopback_linux.go) and io.Copy both
// ways (no decision, accounting, budget or events). The last line is an
// upload with the run namespace's default congestion control set to reno:
// the run's own socket is the sender there, which the proxy cannot tune.
// It prints medians and ratios; it is for `make bench`, not for CI.
func TestBenchEgress(t *testing.T) {
	if os.Getenv("EXECGATE_BENCH") != "1" {
		t.Skip("set EXECGATE_BENCH=1 to run")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces, nftables)")
	}
	const (
		size          = 1 << 30
		rounds        = 7
		setupRounds   = 7
		setupPerRound = 50
	)
	srv := newTestServer(t, "127.0.0.1:0", benchServe)
	ports := netcapture.Ports{Transparent: 15001, HTTP: 15002, SOCKS: 15003, DNS: 53}

	// The run's namespace with the proxy's listeners in it.
	ns := benchNetns(t)
	if err := netcapture.Setup(ns, ports); err != nil {
		t.Fatal(err)
	}
	names, err := NewNames(DefaultV4, DefaultV6, 0)
	if err != nil {
		t.Fatal(err)
	}
	syn4, _, err := names.Assign("bench.test")
	if err != nil {
		t.Fatal(err)
	}
	var evs benchEvents
	p, err := New(Config{
		Decider:        &fakeDecider{allow: map[string]string{hp("bench.test", srv.port): "bench:1"}},
		Resolver:       &fakeResolver{answers: map[string][][]netip.Addr{"bench.test": {{lo}}}},
		Names:          names,
		OnEvent:        evs.on,
		MaxEgressBytes: 1 << 50, // set, so uploads take the budgeted path
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() }) // bench over
	for _, l := range []struct {
		addr  string
		serve func(net.Listener) error
	}{
		{fmt.Sprintf("127.0.0.1:%d", ports.Transparent), p.ServeTransparent},
		{fmt.Sprintf("[::1]:%d", ports.Transparent), p.ServeTransparent},
		{fmt.Sprintf("127.0.0.1:%d", ports.HTTP), p.ServeHTTP},
	} {
		ln, err := netcapture.ListenIn(ns, "tcp", l.addr)
		if err != nil {
			t.Fatal(err)
		}
		go func() { _ = l.serve(ln) }() // ends with net.ErrClosed at Close
	}

	// A second namespace whose transparent port is a bare relay.
	bareNs := benchNetns(t)
	if err := netcapture.Setup(bareNs, ports); err != nil {
		t.Fatal(err)
	}
	bareLn, err := netcapture.ListenIn(bareNs, "tcp", fmt.Sprintf("127.0.0.1:%d", ports.Transparent))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = bareLn.Close() }) // bench over
	tuneLoopbackListener(bareLn)
	go bareRelay(bareLn, hp("127.0.0.1", srv.port))

	direct := benchPath{name: "direct", ns: -1, to: netip.AddrPortFrom(lo, srv.port)}
	trans := benchPath{name: "transparent", ns: ns, to: netip.AddrPortFrom(syn4, srv.port)}
	connect := benchPath{name: "CONNECT", ns: ns, to: netip.AddrPortFrom(lo, ports.HTTP),
		connect: fmt.Sprintf("CONNECT bench.test:%d HTTP/1.1\r\nHost: bench.test:%d\r\n\r\n", srv.port, srv.port)}
	bare := benchPath{name: "bare", ns: bareNs, to: netip.MustParseAddrPort(fmt.Sprintf("203.0.113.7:%d", srv.port))}

	// Sanity: IPv6 through the transparent listener on [::1] too.
	_, syn6, _ := names.Assign("bench.test")
	if d := (benchPath{name: "v6", ns: ns, to: netip.AddrPortFrom(syn6, srv.port)}).setup(t); d <= 0 {
		t.Fatal("no IPv6 set-up")
	}

	var sd, st, sc, sb []time.Duration
	for r := 0; r < setupRounds; r++ {
		for i := 0; i < setupPerRound; i++ {
			sd = append(sd, direct.setup(t))
			st = append(st, trans.setup(t))
			sc = append(sc, connect.setup(t))
			sb = append(sb, bare.setup(t))
		}
	}
	defaultCC := netnsCongestion(t, ns, "")
	var dd, dt, db, ud, ut, ub, ur []time.Duration
	for r := 0; r < rounds; r++ {
		dd = append(dd, direct.download(t, size))
		dt = append(dt, trans.download(t, size))
		db = append(db, bare.download(t, size))
		ud = append(ud, direct.upload(t, size))
		ut = append(ut, trans.upload(t, size))
		ub = append(ub, bare.upload(t, size))
		netnsCongestion(t, ns, loopbackCongestion)
		ur = append(ur, trans.upload(t, size))
		netnsCongestion(t, ns, defaultCC)
	}
	if err := evs.check(size, 3*rounds); err != nil {
		t.Fatal(err)
	}

	mbs := func(d time.Duration) float64 { return float64(size) / d.Seconds() / (1 << 20) }
	fmt.Printf("egress bench: run netns (netcapture.Setup) -> proxy -> 127.0.0.1 on the host; %d CPUs, GOMAXPROCS %d\n",
		runtime.NumCPU(), runtime.GOMAXPROCS(0))
	fmt.Printf("  set-up (connect + 1-byte echo), median of %d each (bare relay %.1fµs):\n",
		setupRounds*setupPerRound, us(benchMedian(sb)))
	for _, s := range []struct {
		name string
		d    []time.Duration
	}{{"transparent", st}, {"CONNECT", sc}} {
		a, b := benchMedian(sd), benchMedian(s.d)
		fmt.Printf("    %-11s direct %6.1fµs  execgate %6.1fµs  added %6.1fµs  ratio %.2fx\n",
			s.name, us(a), us(b), us(b-a), float64(b)/float64(a))
	}
	fmt.Printf("  1 GiB one way, transparent, median of %d rounds:\n", rounds)
	for _, s := range []struct {
		name    string
		d, e, b []time.Duration
	}{{"download", dd, dt, db}, {"upload", ud, ut, ub}} {
		d, e, b := mbs(benchMedian(s.d)), mbs(benchMedian(s.e)), mbs(benchMedian(s.b))
		fmt.Printf("    %-8s direct %5.0f MiB/s  execgate %5.0f MiB/s  execgate/direct %.2fx  (bare relay %5.0f MiB/s %.2fx)\n",
			s.name, d, e, e/d, b, b/d)
	}
	was := "not " + defaultCC
	if defaultCC == loopbackCongestion {
		was = "already its default"
	}
	fmt.Printf("    upload with the run netns's default congestion control %s (%s): execgate %5.0f MiB/s  execgate/direct %.2fx\n",
		loopbackCongestion, was, mbs(benchMedian(ur)), mbs(benchMedian(ur))/mbs(benchMedian(ud)))
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func benchMedian(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// benchServe: 'e' echoes one byte; 'd' sends size bytes (the size is the
// next 8 bytes) and closes; 'u' counts what arrives until EOF and answers
// with the count.
func benchServe(c net.Conn) {
	var b [9]byte
	if _, err := io.ReadFull(c, b[:1]); err != nil {
		return
	}
	switch b[0] {
	case 'e':
		_, _ = c.Write(b[:1]) // the client checks
	case 'd':
		if _, err := io.ReadFull(c, b[1:]); err != nil {
			return
		}
		buf := make([]byte, 1<<20)
		for left := int64(binary.BigEndian.Uint64(b[1:])); left > 0; {
			n := min(left, int64(len(buf)))
			if _, err := c.Write(buf[:n]); err != nil {
				return
			}
			left -= n
		}
	case 'u':
		buf := make([]byte, 256<<10)
		var n int64
		for {
			m, err := c.Read(buf)
			n += int64(m)
			if err != nil {
				break
			}
		}
		binary.BigEndian.PutUint64(b[1:], uint64(n))
		_, _ = c.Write(b[1:]) // the client checks
	}
}

// netnsCongestion sets the default TCP congestion control of namespace ns
// to cc (unless cc is "") and returns the one it had.
func netnsCongestion(t *testing.T, ns int, cc string) string {
	t.Helper()
	const path = "/proc/sys/net/ipv4/tcp_congestion_control"
	var old []byte
	err := netcapture.InNetns(ns, func() error { // /proc/sys/net is the opening thread's namespace's
		var err error
		if old, err = os.ReadFile(path); err != nil || cc == "" {
			return err
		}
		return os.WriteFile(path, []byte(cc), 0)
	})
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(old))
}

// bareRelay is the ceiling: accept, dial, io.Copy both ways, half-close.
// Its listener is tuned by the caller.
func bareRelay(ln net.Listener, to string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			up, err := (&net.Dialer{Control: loopbackDialControl}).Dial("tcp", to)
			if err != nil {
				return
			}
			defer up.Close()
			done := make(chan struct{})
			go func() {
				_, _ = io.Copy(up, c)
				_ = up.(*net.TCPConn).CloseWrite() // the peer may be gone
				close(done)
			}()
			_, _ = io.Copy(c, up)
			_ = c.(*net.TCPConn).CloseWrite() // the peer may be gone
			<-done
		}()
	}
}

// benchPath is one way for the client to reach the server: a socket made
// in namespace ns (-1: the host's) connecting to "to", then, for the HTTP
// proxy, a CONNECT request.
type benchPath struct {
	name    string
	ns      int
	to      netip.AddrPort
	connect string
}

// socket makes an unconnected, non-blocking TCP socket in p.ns and wraps
// it for the poller. Untimed.
func (p benchPath) socket(t *testing.T) *net.TCPConn {
	t.Helper()
	family := unix.AF_INET6
	if p.to.Addr().Is4() {
		family = unix.AF_INET
	}
	var fd int
	mk := func() (err error) {
		fd, err = unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		return err
	}
	var err error
	if p.ns >= 0 {
		err = netcapture.InNetns(p.ns, mk)
	} else {
		err = mk()
	}
	if err != nil {
		t.Fatalf("%s: socket: %v", p.name, err)
	}
	f := os.NewFile(uintptr(fd), p.name)
	c, err := net.FileConn(f)
	_ = f.Close() // FileConn has its own descriptor
	if err != nil {
		t.Fatalf("%s: %v", p.name, err)
	}
	return c.(*net.TCPConn)
}

// dial connects c (as net.Dial would: non-blocking connect, wait until
// writable, SO_ERROR) and sends the CONNECT request if any.
func (p benchPath) dial(c *net.TCPConn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var sa unix.Sockaddr
	if p.to.Addr().Is4() {
		sa = &unix.SockaddrInet4{Port: int(p.to.Port()), Addr: p.to.Addr().As4()}
	} else {
		sa = &unix.SockaddrInet6{Port: int(p.to.Port()), Addr: p.to.Addr().As16()}
	}
	var cerr error
	started := false
	if err := rc.Write(func(fd uintptr) bool {
		if !started {
			started = true
			cerr = unix.Connect(int(fd), sa)
			return !errors.Is(cerr, unix.EINPROGRESS)
		}
		var v int
		v, cerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR)
		if cerr == nil && v != 0 {
			cerr = unix.Errno(v)
		}
		return true
	}); err != nil {
		return err
	}
	if cerr != nil {
		return fmt.Errorf("connect %v: %w", p.to, cerr)
	}
	if p.connect == "" {
		return nil
	}
	if _, err := io.WriteString(c, p.connect); err != nil {
		return err
	}
	var head []byte
	buf := make([]byte, 256)
	for !strings.Contains(string(head), "\r\n\r\n") {
		n, err := c.Read(buf) // the server sends nothing before our first byte
		if err != nil {
			return fmt.Errorf("CONNECT: %w after %q", err, head)
		}
		head = append(head, buf[:n]...)
	}
	if !strings.HasPrefix(string(head), "HTTP/1.1 200 ") || !strings.HasSuffix(string(head), "\r\n\r\n") {
		return fmt.Errorf("CONNECT: %q", head)
	}
	return nil
}

func (p benchPath) setup(t *testing.T) time.Duration {
	t.Helper()
	c := p.socket(t)
	defer c.Close()
	start := time.Now()
	err := p.dial(c)
	var b [1]byte
	if err == nil {
		_, err = c.Write([]byte{'e'})
	}
	if err == nil {
		_, err = io.ReadFull(c, b[:])
	}
	d := time.Since(start)
	if err != nil || b[0] != 'e' {
		t.Fatalf("%s set-up: %v", p.name, err)
	}
	return d
}

func (p benchPath) download(t *testing.T, size int64) time.Duration {
	t.Helper()
	c := p.socket(t)
	defer c.Close()
	if err := p.dial(c); err != nil {
		t.Fatalf("%s: %v", p.name, err)
	}
	req := []byte{'d', 0, 0, 0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint64(req[1:], uint64(size))
	start := time.Now()
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 256<<10)
	var n int64
	for {
		m, err := c.Read(buf)
		n += int64(m)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s download: %v after %d", p.name, err, n)
		}
	}
	d := time.Since(start)
	if n != size {
		t.Fatalf("%s download: %d bytes, want %d", p.name, n, size)
	}
	return d
}

func (p benchPath) upload(t *testing.T, size int64) time.Duration {
	t.Helper()
	c := p.socket(t)
	defer c.Close()
	if err := p.dial(c); err != nil {
		t.Fatalf("%s: %v", p.name, err)
	}
	buf := make([]byte, 1<<20)
	start := time.Now()
	buf[0] = 'u'
	if _, err := c.Write(buf[:1]); err != nil {
		t.Fatal(err)
	}
	buf[0] = 0
	for left := size; left > 0; {
		n := min(left, int64(len(buf)))
		if _, err := c.Write(buf[:n]); err != nil {
			t.Fatalf("%s upload: %v", p.name, err)
		}
		left -= n
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	var b [8]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		t.Fatalf("%s upload: %v", p.name, err)
	}
	d := time.Since(start)
	if got := int64(binary.BigEndian.Uint64(b[:])); got != size {
		t.Fatalf("%s upload: server got %d bytes, want %d", p.name, got, size)
	}
	return d
}

// benchEvents keeps what the transfers' disconnect events counted.
type benchEvents struct {
	mu    sync.Mutex
	bulk  []Event // disconnects of transfers
	fails []string
}

func (e *benchEvents) on(ev Event) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if ev.Err != "" {
		e.fails = append(e.fails, ev.Kind+": "+ev.Err)
	}
	if ev.Kind == "disconnect" && (ev.BytesIn > 1<<20 || ev.BytesOut > 1<<20) {
		e.bulk = append(e.bulk, ev)
	}
	return nil
}

// check: every one of the want transfers through the proxy was counted
// exactly each way.
func (e *benchEvents) check(size int64, want int) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		e.mu.Lock()
		var errs []error
		if len(e.fails) > 0 {
			errs = append(errs, fmt.Errorf("event errors: %q", e.fails))
		}
		for _, ev := range e.bulk {
			down := ev.BytesIn == size && ev.BytesOut == 9
			up := ev.BytesOut == size+1 && ev.BytesIn == 8
			if !down && !up {
				errs = append(errs, fmt.Errorf("disconnect counted out %d in %d", ev.BytesOut, ev.BytesIn))
			}
		}
		n := len(e.bulk)
		e.mu.Unlock()
		if len(errs) > 0 {
			return errors.Join(errs...)
		}
		if n == want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d transfer disconnects, want %d", n, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// benchNetns makes an empty network namespace and returns an fd keeping it
// alive until the bench ends.
func benchNetns(t *testing.T) int {
	t.Helper()
	f, err := netcapture.NewNetns()
	if err != nil {
		t.Fatalf("new netns: %v", err)
	}
	t.Cleanup(func() { _ = f.Close() }) // bench over
	return int(f.Fd())
}
