package netcapture

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// DefaultPorts are execgate's ports in every run's namespace: the
// conventional proxy ports, so that the variables Env sets read as what
// they are, and 53 for DNS, which resolv.conf cannot move.
var DefaultPorts = Ports{Transparent: 15001, HTTP: 3128, SOCKS: 1080, DNS: 53}

// Endpoints are the sockets execgate serves inside one run's namespace,
// all on its loopback. Whoever serves them closes them.
type Endpoints struct {
	Transparent []net.Listener // 127.0.0.1 and [::1]: every redirected TCP connection
	HTTP        net.Listener   // HTTP CONNECT and absolute-form requests
	SOCKS       net.Listener   // SOCKS5
	DNS         net.PacketConn // 127.0.0.1:53/udp
	DNSTCP      net.Listener   // 127.0.0.1:53/tcp, for answers that do not fit UDP
}

// Open sets up the fresh namespace nsFd (Setup) and opens the endpoints in
// it. On error nothing is left open, and the namespace has no route out.
func Open(nsFd int, p Ports) (*Endpoints, error) {
	if err := Setup(nsFd, p); err != nil {
		return nil, err
	}
	ep := &Endpoints{}
	err := InNetns(nsFd, func() error { return ep.listen(p) })
	if err != nil {
		ep.Close()
		return nil, fmt.Errorf("netcapture: listeners: %w", err)
	}
	return ep, nil
}

// listen runs inside the namespace.
func (ep *Endpoints) listen(p Ports) error {
	tcp := func(ip string, port uint16) (net.Listener, error) {
		return net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(int(port))))
	}
	for _, ip := range []string{"127.0.0.1", "::1"} {
		ln, err := tcp(ip, p.Transparent)
		if err != nil {
			return err
		}
		ep.Transparent = append(ep.Transparent, ln)
	}
	var err error
	if ep.HTTP, err = tcp("127.0.0.1", p.HTTP); err != nil {
		return err
	}
	if ep.SOCKS, err = tcp("127.0.0.1", p.SOCKS); err != nil {
		return err
	}
	if ep.DNSTCP, err = tcp("127.0.0.1", p.DNS); err != nil {
		return err
	}
	ep.DNS, err = net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(p.DNS))))
	return err
}

// Close closes every endpoint that is open.
func (ep *Endpoints) Close() error {
	var errs []error
	for _, ln := range append(ep.Transparent, ep.HTTP, ep.SOCKS, ep.DNSTCP) {
		if ln != nil {
			errs = append(errs, ln.Close())
		}
	}
	if ep.DNS != nil {
		errs = append(errs, ep.DNS.Close())
	}
	return errors.Join(errs...)
}

// Env is what a run's environment says about its proxies: HTTP and SOCKS
// (in both cases, since curl reads only the lower-case http_proxy) and
// NO_PROXY for loopback alone, whose servers are the run's own.
func (p Ports) Env() []string {
	lo := netip.AddrFrom4([4]byte{127, 0, 0, 1})
	httpProxy := "http://" + netip.AddrPortFrom(lo, p.HTTP).String()
	socks := "socks5h://" + netip.AddrPortFrom(lo, p.SOCKS).String()
	const noProxy = "localhost,127.0.0.1,::1"
	var env []string
	for _, kv := range [][2]string{
		{"HTTP_PROXY", httpProxy}, {"HTTPS_PROXY", httpProxy}, {"ALL_PROXY", socks}, {"NO_PROXY", noProxy},
	} {
		env = append(env, kv[0]+"="+kv[1], strings.ToLower(kv[0])+"="+kv[1])
	}
	return env
}
