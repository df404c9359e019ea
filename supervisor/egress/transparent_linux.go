package egress

import (
	"errors"
	"net"

	"github.com/execgate/execgate/supervisor/sandbox/netcapture"
)

// ServeTransparent serves TCP connections redirected into ln (by the run
// namespace's nftables rules). Each is decided by its original
// destination: a synthetic address by the name it stands for, any other
// as an IP literal. A refused connection is reset.
func (p *Proxy) ServeTransparent(ln net.Listener) error {
	return p.serve(ln, p.handleTransparent)
}

func (p *Proxy) handleTransparent(c net.Conn) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return
	}
	getDst := netcapture.OriginalDst
	if p.origDst != nil { // tests that cannot install NAT rules
		getDst = p.origDst
	}
	dst, err := getDst(tc)
	local := tc.LocalAddr().(*net.TCPAddr).AddrPort()
	if err != nil || dst == local {
		// Not redirected (reached the listener directly): nothing to decide.
		p.emit(Event{Kind: "connect", Proto: ProtoTransparent, Client: clientAddr(c), Decision: Deny, Rule: p.cfg.OwnRule,
			Reason: "not a redirected connection", Err: errString(err)})
		reset(tc)
		return
	}
	ip := dst.Addr().Unmap()
	s := p.open(p.ctx, target{proto: ProtoTransparent, client: clientAddr(c), host: ip.String(), lit: ip, port: dst.Port()})
	if s.up == nil {
		reset(tc)
		return
	}
	p.relay(c, nil, s)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// reset closes c with an RST (SO_LINGER 0): the run sees a refused
// connection, not an orderly close.
func reset(c *net.TCPConn) {
	if err := c.SetLinger(0); err != nil && !errors.Is(err, net.ErrClosed) {
		_ = c.Close() // plain close is the fallback; the caller closes too
	}
}
