package integration

// The world the network tests (network_test.go, network_corpus_test.go)
// run in. Nothing in it can reach any address but the suite's own:
//
//   - the gateway, a network namespace of its own (journaltest.Host
//     "egn-gw"), where execgated runs (launched through nsenter --net),
//     where the test's servers on 127.0.0.1 (and 127.0.1.N, ::1) listen,
//     where the test's DNS server answers (127.0.0.1:PORT for the daemon's
//     resolver, 127.0.53.1:53 for the runs without execgate), and where the
//     runs without execgate happen;
//   - the test host ("egn-th"), linked to the gateway by a veth pair:
//     10.77.0.2 (private.test), 10.77.0.3 (ok.test), 10.77.0.101-250 (one
//     address a corpus case), 169.254.169.254 (metadata.test),
//     198.18.255.254 and fd3c:9e55:71a4:e9a7::fffe (addresses of the
//     synthetic ranges that no name was given), fd77::2.
//
// The gateway has no route but to the test host, so a daemon bug that
// dials a forbidden address reaches a server of the test (which counts
// it) and never the real network; metadata and synthetic addresses on
// the machine's own network are never touched.

import (
	"archive/tar"
	"archive/zip"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cgi"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"

	"github.com/execgate/execgate/audit"
	"github.com/execgate/execgate/internal/journaltest"
)

const (
	netGW        = "10.77.0.1"       // the gateway's end of the link
	netPrivate   = "10.77.0.2"       // private.test: never private_ok
	netOK        = "10.77.0.3"       // ok.test: private_ok in the main daemon
	netMetadata  = "169.254.169.254" // metadata.test
	netUnmapped4 = "198.18.255.254"  // synthetic range, no name given
	netUnmapped6 = "fd3c:9e55:71a4:e9a7::fffe"
	netGW6       = "fd77::1"
	netHost6     = "fd77::2"
	netResolver  = "127.0.53.1" // the runs without execgate: nameserver (port 53)
	netGWIf      = "eg-egn-th"  // the gateway's link device (journaltest.Link's name)
	netTHIf      = "eg-egn-gw"  // the test host's
)

// netMaxCases is how many corpus cases the test host has addresses for.
const netMaxCases = 150

// netCaseIP is the test host address of corpus case n (1..netMaxCases).
func netCaseIP(n int) string { return fmt.Sprintf("10.77.0.%d", 100+n) }

// netEnv is the shared world of one TestNetwork.
type netEnv struct {
	t       *testing.T
	dir     string // tools/, flags, fixtures; readable by the agent
	tools   string
	gw, th  *journaltest.Host
	gwNS    string // /proc/PID/ns/net of the gateway
	thNS    string
	dns     *netDNS
	dnsPort int // the daemon's resolver: 127.0.0.1:dnsPort in the gateway
	open    *openProxy
	resolv  string // /etc/resolv.conf of the runs without execgate
	hosts   string // /etc/hosts of the runs without execgate (copied per run)
	slots   chan struct{}
	fx      *netFixtures
}

func newNetEnv(t *testing.T) *netEnv {
	t.Helper()
	journaltest.Require(t)
	build(t)
	for _, tool := range []string{"curl", "git", "python3", "nsenter", "unshare", "setpriv", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed: run scripts/deps.sh", tool)
		}
	}
	dir, err := os.MkdirTemp("/var/tmp", "execgate-net-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	t.Cleanup(func() { os.RemoveAll(dir) })
	e := &netEnv{t: t, dir: dir, tools: filepath.Join(dir, "tools"), slots: make(chan struct{}, 6)}
	e.gw = journaltest.NewHost(t, "egn-gw", journaltest.HostOptions{})
	e.th = journaltest.NewHost(t, "egn-th", journaltest.HostOptions{})
	e.gwNS = fmt.Sprintf("/proc/%d/ns/net", e.gw.PID())
	e.thNS = fmt.Sprintf("/proc/%d/ns/net", e.th.PID())
	journaltest.Link(t, e.gw, e.th, netGW, netPrivate)
	var gwCmds, thCmds []string
	gwCmds = append(gwCmds,
		"route add 10.77.0.0/24 dev "+netGWIf+" src "+netGW,
		"route add "+netMetadata+"/32 dev "+netGWIf+" src "+netGW,
		"route add "+netUnmapped4+"/32 dev "+netGWIf+" src "+netGW,
		"addr add "+netGW6+"/64 dev "+netGWIf+" nodad",
		"route add "+netUnmapped6+"/128 dev "+netGWIf)
	for _, a := range []string{netOK, netMetadata, netUnmapped4} {
		thCmds = append(thCmds, "addr add "+a+"/32 dev "+netTHIf)
	}
	for n := 1; n <= netMaxCases; n++ {
		thCmds = append(thCmds, "addr add "+netCaseIP(n)+"/32 dev "+netTHIf)
	}
	thCmds = append(thCmds, "addr add "+netHost6+"/64 dev "+netTHIf+" nodad",
		"addr add "+netUnmapped6+"/128 dev "+netTHIf+" nodad")
	for _, b := range []struct {
		ns   string
		cmds []string
	}{{e.gwNS, gwCmds}, {e.thNS, thCmds}} {
		cmd := exec.Command("nsenter", "--net="+b.ns, "--", "ip", "-batch", "-")
		cmd.Stdin = strings.NewReader(strings.Join(b.cmds, "\n") + "\n")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("network test hosts: ip -batch: %v\n%s", err, out)
		}
	}
	// Datagram ICMP for every group in the gateway (the test's own
	// namespace), so that a ping without capabilities (a copy of ping:
	// the sandbox cannot exec one with file capabilities) works there
	// without execgate.
	if out, err := exec.Command("nsenter", "--net="+e.gwNS, "--", "sh", "-c", "echo 0 2147483647 >/proc/sys/net/ipv4/ping_group_range").CombinedOutput(); err != nil {
		t.Fatalf("ping_group_range in the gateway: %v %s", err, out)
	}

	e.dns = newNetDNS()
	e.dnsPort = e.dns.serve(t, e, e.gwNS, "127.0.0.1:0")
	e.dns.serve(t, e, e.gwNS, netResolver+":53")
	e.dns.serve(t, e, e.thNS, "0.0.0.0:53")
	e.open = startOpenProxy(t, e)
	e.resolv = filepath.Join(dir, "resolv.conf")
	e.hosts = filepath.Join(dir, "hosts")
	os.WriteFile(e.resolv, []byte("nameserver "+netResolver+"\noptions timeout:2 attempts:1\n"), 0o644)
	os.WriteFile(e.hosts, []byte("127.0.0.1 localhost\n::1 localhost ip6-localhost\n"), 0o644)
	os.MkdirAll(e.tools, 0o755)
	for name, body := range netTools {
		if err := os.WriteFile(filepath.Join(e.tools, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	e.fx = newNetFixtures(t, filepath.Join(dir, "fixtures"))
	// The gateway reaches the test host (what the daemon's dials do).
	if out, err := exec.Command("nsenter", "--net="+e.gwNS, "--", "ip", "route", "get", netMetadata).CombinedOutput(); err != nil || !strings.Contains(string(out), netGWIf) {
		t.Fatalf("the gateway does not route %s to the test host: %v %s", netMetadata, err, out)
	}
	return e
}

// inNetns runs fn on an OS thread that is in the network namespace at
// path: sockets fn creates live there. If going back fails, the thread
// stays locked and dies with its goroutine.
func inNetns(path string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		target, err := os.Open(path)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("setns %s: %w", path, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns back: %w", err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

func listenIn(ns, network, addr string) (net.Listener, error) {
	var l net.Listener
	err := inNetns(ns, func() (err error) { l, err = net.Listen(network, addr); return })
	return l, err
}

func listenPacketIn(ns, network, addr string) (net.PacketConn, error) {
	var c net.PacketConn
	err := inNetns(ns, func() (err error) { c, err = net.ListenPacket(network, addr); return })
	return c, err
}

func dialIn(ns, addr string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := inNetns(ns, func() (err error) { c, err = net.DialTimeout("tcp", addr, timeout); return })
	return c, err
}

// netServer is a TCP server of the test that counts every connection it
// accepts, by the local address it was accepted on.
type netServer struct {
	name    string
	mu      sync.Mutex
	accepts int
	byLocal map[string]int
	lns     []net.Listener
	handle  func(net.Conn) // raw handler; nil when served as HTTP
	http    http.Handler
}

func newNetServer(name string) *netServer {
	return &netServer{name: name, byLocal: map[string]int{}}
}

type countingListener struct {
	net.Listener
	s *netServer
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.s.count(c)
	}
	return c, err
}

func (s *netServer) count(c net.Conn) {
	ip := ""
	if a, ok := c.LocalAddr().(*net.TCPAddr); ok {
		if v4 := a.IP.To4(); v4 != nil {
			ip = v4.String()
		} else {
			ip = a.IP.String()
		}
	}
	s.mu.Lock()
	s.accepts++
	s.byLocal[ip]++
	s.mu.Unlock()
}

// listen adds a listener in namespace ns on addr ("127.0.0.1:0") and
// returns its port.
func (s *netServer) listen(t testing.TB, ns, network, addr string) int {
	t.Helper()
	l, err := listenIn(ns, network, addr)
	if err != nil {
		t.Fatalf("server %s: listen %s %s: %v", s.name, network, addr, err)
	}
	return s.adopt(t, l)
}

// adopt serves on a listener made elsewhere and returns its port.
func (s *netServer) adopt(t testing.TB, l net.Listener) int {
	s.mu.Lock()
	s.lns = append(s.lns, l)
	s.mu.Unlock()
	t.Cleanup(func() { l.Close() })
	cl := countingListener{l, s}
	if s.http != nil {
		srv := &http.Server{Handler: s.http, ReadHeaderTimeout: 10 * time.Second}
		go srv.Serve(cl)
		t.Cleanup(func() { srv.Close() })
	} else {
		go func() {
			for {
				c, err := cl.Accept()
				if err != nil {
					return
				}
				go s.handle(c)
			}
		}()
	}
	return l.Addr().(*net.TCPAddr).Port
}

func (s *netServer) Accepts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accepts
}

func (s *netServer) AcceptsAt(ip string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byLocal[ip]
}

func (s *netServer) reset() {
	s.mu.Lock()
	s.accepts = 0
	s.byLocal = map[string]int{}
	s.mu.Unlock()
}

func (s *netServer) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.lns {
		l.Close()
	}
}

// reachedHandler answers anything with an HTTP response that says the
// forbidden server was reached (after the client's first bytes, or a
// short wait for clients that wait for the server).
func reachedHandler(token string) func(net.Conn) {
	return func(c net.Conn) {
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(1500 * time.Millisecond))
		var got []byte
		buf := make([]byte, 4096)
		for len(got) < 16<<10 && !bytes.Contains(got, []byte("\r\n\r\n")) {
			n, err := c.Read(buf)
			got = append(got, buf[:n]...)
			if err != nil {
				break
			}
		}
		body := "REACHED " + token + "\n"
		c.SetWriteDeadline(time.Now().Add(3 * time.Second))
		fmt.Fprintf(c, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
	}
}

// udpCounter counts the datagrams that reach it, and echoes each.
type udpCounter struct {
	mu sync.Mutex
	n  int
}

func (u *udpCounter) listen(t testing.TB, ns, addr string) int {
	t.Helper()
	c, err := listenPacketIn(ns, "udp", addr)
	if err != nil {
		t.Fatalf("udp listen %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			u.mu.Lock()
			u.n++
			u.mu.Unlock()
			c.WriteTo(append([]byte("UDP-REACHED "), buf[:min(n, 64)]...), from)
		}
	}()
	return c.LocalAddr().(*net.UDPAddr).Port
}

func (u *udpCounter) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.n
}

// netDNS is the test's DNS server: the daemon's only resolver, and the
// resolver of the runs without execgate. Every query is recorded.
type netDNS struct {
	mu     sync.Mutex
	seen   []string // "TYPE name from"
	rebind int      // A queries for rebind.test so far
}

func newNetDNS() *netDNS { return &netDNS{} }

var netDNSTable = map[string][]string{
	"allowed.test":  {"127.0.0.1"},
	"git.test":      {"127.0.0.1"},
	"npm.test":      {"127.0.0.1"},
	"pypi.test":     {"127.0.0.1"},
	"denied.test":   {"127.0.0.1"},
	"other.test":    {"127.0.0.1"},
	"loop.test":     {"127.0.0.1"},
	"private.test":  {netPrivate},
	"ok.test":       {netOK},
	"metadata.test": {netMetadata},
	"mixed.test":    {netOK, netPrivate},
	"v6.test":       {netHost6},
}

// answer is what name resolves to (ok false: NXDOMAIN). rebind.test
// alternates between the allowed 10.77.0.3 (odd A queries) and the
// forbidden 10.77.0.2 (even ones).
func (d *netDNS) answer(name string, qtype uint16) ([]netip.Addr, bool) {
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	var list []string
	switch {
	case name == "rebind.test":
		if qtype == dns.TypeA {
			d.mu.Lock()
			d.rebind++
			n := d.rebind
			d.mu.Unlock()
			list = []string{netOK}
			if n%2 == 0 {
				list = []string{netPrivate}
			}
		}
		if qtype == dns.TypeAAAA {
			return nil, true
		}
	case strings.HasSuffix(name, ".private.test"):
		n, err := strconv.Atoi(strings.TrimPrefix(strings.TrimSuffix(name, ".private.test"), "n"))
		if err != nil || n < 1 || n > netMaxCases {
			return nil, false
		}
		list = []string{netCaseIP(n)}
	case strings.HasSuffix(name, ".nip.test"):
		a, err := netip.ParseAddr(strings.ReplaceAll(strings.TrimSuffix(name, ".nip.test"), "-", "."))
		if err != nil || !a.Is4() {
			return nil, false
		}
		list = []string{a.String()}
	default:
		l, ok := netDNSTable[name]
		if !ok {
			return nil, false
		}
		list = l
	}
	var out []netip.Addr
	for _, s := range list {
		a := netip.MustParseAddr(s)
		if a.Is4() && qtype == dns.TypeA || a.Is6() && qtype == dns.TypeAAAA {
			out = append(out, a)
		}
	}
	return out, true
}

func (d *netDNS) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	if len(r.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		w.WriteMsg(m)
		return
	}
	q := r.Question[0]
	name := strings.TrimSuffix(strings.ToLower(q.Name), ".")
	d.mu.Lock()
	d.seen = append(d.seen, fmt.Sprintf("%s %s from %s", dns.TypeToString[q.Qtype], name, w.RemoteAddr()))
	d.mu.Unlock()
	addrs, ok := d.answer(name, q.Qtype)
	if !ok {
		m.Rcode = dns.RcodeNameError
	}
	ttl := uint32(5)
	if name == "rebind.test" {
		ttl = 0
	}
	for _, a := range addrs {
		hdr := dns.RR_Header{Name: q.Name, Class: dns.ClassINET, Ttl: ttl}
		if a.Is4() {
			hdr.Rrtype = dns.TypeA
			m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: a.AsSlice()})
		} else {
			hdr.Rrtype = dns.TypeAAAA
			m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr, AAAA: a.AsSlice()})
		}
	}
	w.WriteMsg(m)
}

// lookup resolves name as the open proxy does (through the same table,
// recorded as a query).
func (d *netDNS) lookup(name string) (netip.Addr, bool) {
	d.mu.Lock()
	d.seen = append(d.seen, "A "+strings.ToLower(name)+" from open-proxy")
	d.mu.Unlock()
	if a, ok := d.answer(name, dns.TypeA); ok && len(a) > 0 {
		return a[0], true
	}
	if a, ok := d.answer(name, dns.TypeAAAA); ok && len(a) > 0 {
		return a[0], true
	}
	return netip.Addr{}, false
}

// queried lists the queries whose name contains s.
func (d *netDNS) queried(s string) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	for _, q := range d.seen {
		if f := strings.Fields(q); len(f) > 1 && strings.Contains(f[1], s) {
			out = append(out, q)
		}
	}
	return out
}

// serve answers on UDP and TCP at addr (port 0: a free one, the same for
// both) in namespace ns and returns the port.
func (d *netDNS) serve(t *testing.T, e *netEnv, ns, addr string) int {
	t.Helper()
	for try := 0; ; try++ {
		pc, err := listenPacketIn(ns, "udp", addr)
		if err != nil {
			t.Fatalf("dns: listen udp %s: %v", addr, err)
		}
		port := pc.LocalAddr().(*net.UDPAddr).Port
		host, _, _ := net.SplitHostPort(addr)
		l, err := listenIn(ns, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			pc.Close()
			if try < 5 {
				continue
			}
			t.Fatalf("dns: listen tcp: %v", err)
		}
		us := &dns.Server{PacketConn: pc, Handler: d}
		ts := &dns.Server{Listener: l, Handler: d}
		go us.ActivateAndServe()
		go ts.ActivateAndServe()
		t.Cleanup(func() { us.Shutdown(); ts.Shutdown() })
		return port
	}
}

// openProxy is what a proxy without a gate does: HTTP (CONNECT and
// absolute-form) and SOCKS5 that reach any destination, for the runs
// without execgate, so that a case built on the proxy is live there too.
// It resolves through the test's DNS table and dials from the gateway.
type openProxy struct {
	e                   *netEnv
	httpPort, socksPort int
}

func startOpenProxy(t *testing.T, e *netEnv) *openProxy {
	p := &openProxy{e: e}
	for i, serve := range []func(net.Conn){p.serveHTTP, p.serveSOCKS} {
		l, err := listenIn(e.gwNS, "tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		port := l.Addr().(*net.TCPAddr).Port
		if i == 0 {
			p.httpPort = port
		} else {
			p.socksPort = port
		}
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				go serve(c)
			}
		}()
	}
	return p
}

func (p *openProxy) dial(host string, port int) (net.Conn, error) {
	host = strings.Trim(host, "[]")
	a, err := netip.ParseAddr(host)
	if n, perr := strconv.ParseUint(host, 0, 32); err != nil && perr == nil {
		// An inet_aton form (2130706433, 0x7f000001), as getaddrinfo
		// takes it.
		a, err = netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}), nil
	}
	if err != nil {
		if strings.EqualFold(host, "localhost") {
			a = netip.MustParseAddr("127.0.0.1")
		} else if r, ok := p.e.dns.lookup(host); ok {
			a = r
		} else {
			return nil, fmt.Errorf("no such host %s", host)
		}
	}
	return dialIn(p.e.gwNS, netip.AddrPortFrom(a, uint16(port)).String(), 5*time.Second)
}

func relayConns(a, b net.Conn, ar io.Reader) {
	done := make(chan struct{}, 2)
	go func() { io.Copy(b, ar); closeWrite(b); done <- struct{}{} }()
	go func() { io.Copy(a, b); closeWrite(a); done <- struct{}{} }()
	<-done
	<-done
	a.Close()
	b.Close()
}

func closeWrite(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
}

func (p *openProxy) serveHTTP(c net.Conn) {
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil {
		c.Close()
		return
	}
	hostport := req.Host
	if req.Method != http.MethodConnect {
		hostport = req.URL.Host
	}
	host, ps, err := net.SplitHostPort(hostport)
	if err != nil {
		host, ps = hostport, "80"
	}
	port, _ := strconv.Atoi(ps)
	up, err := p.dial(host, port)
	if err != nil {
		fmt.Fprintf(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(err.Error()), err)
		c.Close()
		return
	}
	if req.Method == http.MethodConnect {
		io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
	} else {
		req.WriteProxy(up)
	}
	relayConns(c, up, br)
}

func (p *openProxy) serveSOCKS(c net.Conn) {
	fail := func() { c.Close() }
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	hdr := make([]byte, 2)
	if _, err := io.ReadFull(br, hdr); err != nil || hdr[0] != 5 {
		fail()
		return
	}
	if _, err := io.ReadFull(br, make([]byte, hdr[1])); err != nil {
		fail()
		return
	}
	c.Write([]byte{5, 0})
	req := make([]byte, 4)
	if _, err := io.ReadFull(br, req); err != nil || req[1] != 1 {
		c.Write([]byte{5, 7, 0, 1, 0, 0, 0, 0, 0, 0})
		fail()
		return
	}
	var host string
	switch req[3] {
	case 1, 4:
		b := make([]byte, map[byte]int{1: 4, 4: 16}[req[3]])
		io.ReadFull(br, b)
		a, _ := netip.AddrFromSlice(b)
		host = a.String()
	case 3:
		n, _ := br.ReadByte()
		b := make([]byte, n)
		io.ReadFull(br, b)
		host = string(b)
	default:
		c.Write([]byte{5, 8, 0, 1, 0, 0, 0, 0, 0, 0})
		fail()
		return
	}
	pb := make([]byte, 2)
	io.ReadFull(br, pb)
	up, err := p.dial(host, int(binary.BigEndian.Uint16(pb)))
	if err != nil {
		c.Write([]byte{5, 4, 0, 1, 0, 0, 0, 0, 0, 0})
		fail()
		return
	}
	c.Write([]byte{5, 0, 0, 1, 0, 0, 0, 0, 0, 0})
	c.SetDeadline(time.Time{})
	relayConns(c, up, br)
}

// ungatedEnv is the environment of a run without execgate: the proxy
// variables execgate sets, pointing at the open proxy.
func (e *netEnv) ungatedEnv() []string {
	hp := fmt.Sprintf("http://127.0.0.1:%d", e.open.httpPort)
	sp := fmt.Sprintf("socks5h://127.0.0.1:%d", e.open.socksPort)
	return []string{"HTTP_PROXY=" + hp, "HTTPS_PROXY=" + hp, "http_proxy=" + hp, "https_proxy=" + hp,
		"ALL_PROXY=" + sp, "all_proxy=" + sp, "NO_PROXY=localhost,127.0.0.1,::1", "no_proxy=localhost,127.0.0.1,::1"}
}

// ungated runs script with bash as the agent uid WITHOUT execgate, in the
// gateway's network namespace (where the daemon dials from), with a
// private /tmp, the test's resolver in /etc/resolv.conf, an /etc/hosts of
// localhost only (a copy the agent may edit) and the proxy variables
// pointing at an open proxy.
func (e *netEnv) ungated(ctx context.Context, script string) result {
	e.slots <- struct{}{}
	defer func() { <-e.slots }()
	work, err := os.MkdirTemp(e.dir, "u-")
	if err != nil {
		e.t.Fatal(err)
	}
	defer os.RemoveAll(work)
	os.Chmod(work, 0o755)
	hosts := filepath.Join(work, ".hosts")
	b, _ := os.ReadFile(e.hosts)
	os.WriteFile(hosts, b, 0o644)
	os.Chown(hosts, agentUID, agentUID)
	os.Mkdir(filepath.Join(work, "w"), 0o755)
	os.Chown(filepath.Join(work, "w"), agentUID, agentUID)
	inner := `mount --bind "$2" /etc/hosts && mount --bind "$3" /etc/resolv.conf && mount -t tmpfs -o mode=1777 tmpfs /tmp && cd "$1" && ` +
		`exec setpriv --reuid=65534 --regid=65534 --clear-groups -- env -i PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 HOME=/tmp ` +
		strings.Join(e.ungatedEnv(), " ") + ` timeout -k 2 30 bash -c "$4"`
	cmd := exec.CommandContext(ctx, "nsenter", "--net="+e.gwNS, "--", "unshare", "--mount", "--propagation", "private", "--",
		"sh", "-c", inner, "sh", filepath.Join(work, "w"), hosts, e.resolv, script)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	err = cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		code = -1
		fmt.Fprintf(&se, "ungated: %v", err)
	}
	return result{so.Bytes(), se.Bytes(), code}
}

// gated runs script through egsh as the agent uid.
func (e *netEnv) gated(ctx context.Context, d *daemon, script string) result {
	e.slots <- struct{}{}
	defer func() { <-e.slots }()
	if netMutation() == "host" {
		// No gate: the proxy variables name the open proxy.
		script = "export " + strings.Join(e.ungatedEnv(), " ") + "\n" + script
	}
	return d.egshCtx(ctx, agentUID, nil, "-c", script)
}

// netConfig is an execgate.toml with the test's resolver and private_ok.
func (e *netEnv) netConfig(privateOK ...string) string {
	q := make([]string, len(privateOK))
	for i, p := range privateOK {
		q[i] = strconv.Quote(p)
	}
	return fmt.Sprintf("approval_timeout = \"20s\"\n\n[network]\nprivate_ok = [%s]\nresolver = \"127.0.0.1:%d\"\n", strings.Join(q, ", "), e.dnsPort)
}

// netMutation is EXECGATE_NET_TEST_MUTATE: "host" runs the whole suite
// with the protection removed (network.mode = "host", no [[connect]]
// rules), which must make the security checks fail. It checks the
// suite, not the product.
func netMutation() string { return os.Getenv("EXECGATE_NET_TEST_MUTATE") }

func mutateProfile(body string) string {
	if netMutation() != "host" {
		return body
	}
	var out []string
	skip := false
	for _, l := range strings.Split(body, "\n") {
		switch {
		case strings.TrimSpace(l) == "[[connect]]":
			skip = true
			continue
		case strings.HasPrefix(strings.TrimSpace(l), "["):
			skip = false
		}
		if !skip {
			out = append(out, strings.Replace(l, `mode = "proxy"`, `mode = "host"`, 1))
		}
	}
	return strings.Join(out, "\n")
}

// startDaemon starts execgated in the gateway's network namespace.
func (e *netEnv) startDaemon(t *testing.T, sink, config string, profiles ...profile) *daemon {
	t.Helper()
	for i := range profiles {
		profiles[i].body = mutateProfile(profiles[i].body)
	}
	d := prepareDaemon(t, sink, profiles...)
	d.config = config
	os.WriteFile(filepath.Join(d.dir, "none.toml"), []byte(config), 0o644)
	d.launch(launchOpts{args: []string{"--cgroup-root", testCgroupRoot}, wrap: func(argv []string) []string {
		w := []string{"/usr/bin/nsenter", "--net=" + e.gwNS, "--"}
		if netMutation() == "host" {
			// Without the gate, runs resolve as the runs without
			// execgate do (the host's own resolver knows no test name).
			w = append(w, "unshare", "--mount", "--propagation", "private", "--", "sh", "-c", `mount --bind "$0" /etc/resolv.conf && exec "$@"`, e.resolv)
		}
		return append(w, argv...)
	}})
	return d
}

// ruleLoc is the file:line execgate cites for the [[connect]] rule whose
// match is match in the profile name.toml.
func ruleLoc(t testing.TB, name, body, match string) string {
	t.Helper()
	for i, l := range strings.Split(body, "\n") {
		if strings.TrimSpace(l) == "match = "+strconv.Quote(match) {
			return fmt.Sprintf("%s.toml:%d", name, i+1)
		}
	}
	t.Fatalf("no rule %q in %s", match, name)
	return ""
}

// lineLoc is NAME.toml:N of the first line of body that is line.
func lineLoc(t testing.TB, name, body, line string) string {
	t.Helper()
	for i, l := range strings.Split(body, "\n") {
		if strings.TrimSpace(l) == line {
			return fmt.Sprintf("%s.toml:%d", name, i+1)
		}
	}
	t.Fatalf("no line %q in %s", line, name)
	return ""
}

// runRecords returns the run id of the request whose script is script and
// all records of that run, waiting up to wait for a record set that has
// want(recs) (nil: any).
func runRecords(t testing.TB, d *daemon, script string, wait time.Duration, want func([]*audit.Record) bool) (string, []*audit.Record) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		recs := d.records()
		var id string
		n := 0
		for _, r := range recs {
			if r.Fields[audit.FieldEvent] == "request" && r.Fields[audit.FieldScript] == script {
				id = r.Fields[audit.FieldID]
				n++
			}
		}
		if n > 1 {
			t.Fatalf("%d request records for script %q: scripts must be unique", n, script)
		}
		var mine []*audit.Record
		if id != "" {
			mine = find(recs, audit.FieldID, id)
		}
		if id != "" && (want == nil || want(mine)) || time.Now().After(deadline) {
			return id, mine
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// connRecords are the connect or disconnect records among recs.
func connRecords(recs []*audit.Record, event string, kv ...string) []*audit.Record {
	return find(recs, append([]string{audit.FieldEvent, event}, kv...)...)
}

func describeRecs(recs []*audit.Record) string {
	var b strings.Builder
	for _, r := range recs {
		ev := r.Fields[audit.FieldEvent]
		if ev != "connect" && ev != "disconnect" && ev != "exec" && ev != "decision" && ev != "end" {
			continue
		}
		fmt.Fprintf(&b, "\n  %s %s %s:%s addr=%q proto=%s %s rule=%s reason=%q out=%s in=%s err=%q", ev, r.Fields[audit.FieldDecision],
			r.Fields[audit.FieldHost], r.Fields[audit.FieldPort], r.Fields[audit.FieldAddr], r.Fields[audit.FieldProto], r.Fields[audit.FieldArgv],
			r.Fields[audit.FieldRule], r.Fields[audit.FieldReason], r.Fields[audit.FieldBytesOut], r.Fields[audit.FieldBytesIn], r.Fields[audit.FieldError])
	}
	return b.String()
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout: %.1500s\nstderr: %.1500s", r.code, r.stdout, r.stderr)
}

// icmpEchoesIn is the count of ICMP echo requests the namespace of pid
// has received (Icmp: InEchos of /proc/PID/net/snmp).
func icmpEchoesIn(t testing.TB, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/snmp", pid))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) == 0 || f[0] != "Icmp:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for i, n := range names {
			if n == "InEchos" && i < len(f) {
				v, _ := strconv.Atoi(f[i])
				return v
			}
		}
	}
	t.Fatal("no Icmp InEchos in snmp")
	return 0
}

// netFixtures are what the allowed servers serve: a git repository (smart
// HTTP through git http-backend), an npm tarball and a wheel.
type netFixtures struct {
	gitRoot  string
	gitToken string
	tgz      []byte
	npmToken string
	whl      []byte
	whlName  string
}

func newNetFixtures(t *testing.T, dir string) *netFixtures {
	t.Helper()
	fx := &netFixtures{gitRoot: filepath.Join(dir, "git"), gitToken: "git-fixture-" + strconv.FormatInt(time.Now().UnixNano(), 36),
		npmToken: "npm-fixture-ok", whlName: "tinypkg-0.1-py3-none-any.whl"}
	src := filepath.Join(dir, "src")
	os.MkdirAll(src, 0o755)
	os.WriteFile(filepath.Join(src, "README"), []byte(fx.gitToken+"\n"), 0o644)
	run := func(dir string, args ...string) {
		cmd := exec.Command("git", append([]string{"-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"}, args...)...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git fixture: git %v: %v\n%s", args, err, out)
		}
	}
	run(src, "init", "-q")
	run(src, "add", "README")
	run(src, "commit", "-q", "-m", "fixture")
	os.MkdirAll(fx.gitRoot, 0o755)
	run(fx.gitRoot, "clone", "-q", "--bare", src, "repo.git")

	var tb bytes.Buffer
	gz := gzip.NewWriter(&tb)
	tw := tar.NewWriter(gz)
	for _, f := range []struct{ name, body string }{
		{"package/package.json", `{"name":"tinypkg","version":"1.0.0","main":"index.js"}` + "\n"},
		{"package/index.js", "module.exports = " + strconv.Quote(fx.npmToken) + ";\n"},
	} {
		tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.body)), ModTime: time.Unix(1700000000, 0), Typeflag: tar.TypeReg})
		tw.Write([]byte(f.body))
	}
	tw.Close()
	gz.Close()
	fx.tgz = tb.Bytes()

	var zb bytes.Buffer
	zw := zip.NewWriter(&zb)
	files := []struct{ name, body string }{
		{"tinypkg/__init__.py", "TOKEN = 'pip-fixture-ok'\n"},
		{"tinypkg-0.1.dist-info/METADATA", "Metadata-Version: 2.1\nName: tinypkg\nVersion: 0.1\nSummary: execgate network test\n"},
		{"tinypkg-0.1.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: execgate-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"},
	}
	var record strings.Builder
	for _, f := range files {
		w, _ := zw.Create(f.name)
		w.Write([]byte(f.body))
		sum := sha256.Sum256([]byte(f.body))
		fmt.Fprintf(&record, "%s,sha256=%s,%d\n", f.name, strings.TrimRight(b64url(sum[:]), "="), len(f.body))
	}
	record.WriteString("tinypkg-0.1.dist-info/RECORD,,\n")
	w, _ := zw.Create("tinypkg-0.1.dist-info/RECORD")
	w.Write([]byte(record.String()))
	zw.Close()
	fx.whl = zb.Bytes()
	return fx
}

func b64url(b []byte) string {
	const enc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	var out strings.Builder
	for i := 0; i < len(b); i += 3 {
		var n uint32
		k := min(3, len(b)-i)
		for j := 0; j < 3; j++ {
			n <<= 8
			if j < k {
				n |= uint32(b[i+j])
			}
		}
		for j := 0; j < 4; j++ {
			if j <= k {
				out.WriteByte(enc[(n>>(18-6*j))&63])
			} else {
				out.WriteByte('=')
			}
		}
	}
	return out.String()
}

// handler serves /hello, /git/ (git http-backend), /npm/tinypkg-1.0.0.tgz,
// /simple/ (a PEP 503 index) and /packages/ (the wheel).
func (fx *netFixtures) handler(name string) http.Handler {
	mux := http.NewServeMux()
	hello := func(w http.ResponseWriter, r *http.Request) { fmt.Fprintf(w, "hello from %s\n", name) }
	mux.HandleFunc("/hello", hello)
	mux.HandleFunc("/{$}", hello)
	mux.Handle("/git/", &cgi.Handler{Path: "/usr/lib/git-core/git-http-backend", Root: "/git",
		Env: []string{"GIT_PROJECT_ROOT=" + fx.gitRoot, "GIT_HTTP_EXPORT_ALL=1"}})
	mux.HandleFunc("/npm/tinypkg-1.0.0.tgz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(fx.tgz)
	})
	sum := sha256.Sum256(fx.whl)
	mux.HandleFunc("/simple/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		switch strings.Trim(r.URL.Path, "/") {
		case "simple":
			io.WriteString(w, `<!DOCTYPE html><html><body><a href="/simple/tinypkg/">tinypkg</a></body></html>`)
		case "simple/tinypkg":
			fmt.Fprintf(w, `<!DOCTYPE html><html><body><a href="/packages/%s#sha256=%s">%s</a></body></html>`, fx.whlName, hex.EncodeToString(sum[:]), fx.whlName)
		default:
			http.NotFound(w, r)
		}
	})
	mux.HandleFunc("/packages/"+fx.whlName, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(fx.whl)
	})
	return mux
}

// findRunNetns waits for a process of the agent uid whose argv has an
// argument ending in tool and the argument marker (python3 TOOL MARKER),
// in a network namespace other than the test's own, and returns its
// network namespace's path. (egsh's own command line holds the marker
// too, but not as an argument of its own, and it runs in the test's
// namespace.)
func findRunNetns(t testing.TB, tool, marker string, wait time.Duration) (int, string) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		ents, _ := os.ReadDir("/proc")
		for _, en := range ents {
			pid, err := strconv.Atoi(en.Name())
			if err != nil {
				continue
			}
			cl, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			if err != nil {
				continue
			}
			args := strings.Split(strings.TrimRight(string(cl), "\x00"), "\x00")
			hasTool, hasMarker := false, false
			for _, a := range args {
				hasTool = hasTool || strings.HasSuffix(a, "/"+tool)
				hasMarker = hasMarker || a == marker
			}
			var st syscall.Stat_t
			if !hasTool || !hasMarker || syscall.Stat(fmt.Sprintf("/proc/%d", pid), &st) != nil || st.Uid != agentUID {
				continue
			}
			ns := fmt.Sprintf("/proc/%d/ns/net", pid)
			if sameNetns(ns, "/proc/self/ns/net") {
				t.Fatalf("the run's process %d is in the test's own network namespace", pid)
			}
			return pid, ns
		}
		if time.Now().After(deadline) {
			t.Fatalf("no agent process running %s %s after %v", tool, marker, wait)
		}
		time.Sleep(30 * time.Millisecond)
	}
}

// sameNetns reports whether two namespace paths are the same namespace.
func sameNetns(a, b string) bool {
	x, err1 := os.Readlink(a)
	y, err2 := os.Readlink(b)
	return err1 == nil && err2 == nil && x == y
}
