package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// target is a requested destination. lit is set when the run named an
// address rather than a name.
type target struct {
	proto  string
	client netip.AddrPort
	host   string
	lit    netip.Addr
	port   uint16
}

// session is a decided connection: up is nil when it was refused or the
// dial failed. A non-nil up holds a connection slot until relay ends.
type session struct {
	ev  Event
	up  net.Conn
	err error // why an allowed destination was not reached
}

// refused reports whether the run is told "denied" (as opposed to a dial
// or resolve failure of an allowed destination).
func (s *session) refused() bool { return s.ev.Decision != Allow }

// open decides t, resolves it on the host side, checks every address and
// dials the first checked one that answers. It emits the connect event.
func (p *Proxy) open(ctx context.Context, t target) *session {
	s := &session{ev: Event{Kind: "connect", Proto: t.proto, Client: t.client, Host: t.host, Port: t.port}}
	if t.lit.IsValid() && p.cfg.Names != nil && p.cfg.Names.Contains(t.lit) {
		// The run resolved a name through execgate's DNS and then used
		// the address (SOCKS5 without remote DNS, or redirected TCP).
		name, ok := p.cfg.Names.Lookup(t.lit)
		if !ok {
			s.setVerdict(Verdict{Deny, p.cfg.OwnRule, fmt.Sprintf("%v is a synthetic address no name was given", t.lit)})
			p.emit(s.ev)
			return s
		}
		t.host, t.lit, s.ev.Host = name, netip.Addr{}, name
	}
	if v, ok := p.acquire(); !ok {
		s.setVerdict(v)
		p.emit(s.ev)
		return s
	}
	up, err := p.decideAndDial(ctx, t, s)
	if up == nil {
		p.release()
		if err != nil {
			s.err, s.ev.Err = err, err.Error()
		}
	}
	s.up = up
	if err := p.emit(s.ev); err != nil && up != nil {
		// No record of the connection, no connection: cut it before a
		// byte is relayed.
		_ = up.Close() // never used
		p.release()
		s.up, s.err = nil, err
	}
	return s
}

func (s *session) setVerdict(v Verdict) {
	s.ev.Decision, s.ev.Rule, s.ev.Reason = v.Action, v.Rule, v.Reason
}

func (p *Proxy) decideAndDial(ctx context.Context, t target, s *session) (net.Conn, error) {
	v := p.cfg.Decider.Decide(ctx, t.host, t.port)
	if v.Action == Ask {
		if p.cfg.Asker == nil {
			v = Verdict{Deny, v.Rule, "needs approval, and connections cannot be approved here" + suffix(v.Reason)}
		} else {
			v = p.cfg.Asker.Ask(ctx, t.host, t.port, v)
		}
	}
	s.setVerdict(v)
	if v.Action != Allow {
		return nil, nil
	}
	addrs, err := p.resolve(ctx, t)
	if err != nil {
		return nil, err
	}
	for _, ip := range addrs {
		if err := p.checkAddr(t.host, ip, t.port); err != nil {
			rule := v.Rule
			var re *RuleError
			if errors.As(err, &re) && re.Rule != "" {
				rule = re.Rule
			}
			why := fmt.Sprintf("%s resolves to %v: %v", t.host, ip, err)
			if t.lit.IsValid() {
				why = err.Error()
			}
			s.setVerdict(Verdict{Deny, rule, why})
			return nil, nil
		}
	}
	return p.dialChecked(ctx, addrs, t.port, s)
}

func suffix(r string) string {
	if r == "" {
		return ""
	}
	return ": " + r
}

// resolve returns the literal, or the name's addresses from the host-side
// resolver, unmapped. It is called once per connection: what it returns is
// what is checked and what is dialled.
func (p *Proxy) resolve(ctx context.Context, t target) ([]netip.Addr, error) {
	if t.lit.IsValid() {
		return []netip.Addr{t.lit}, nil
	}
	addrs, err := p.cfg.Resolver.LookupNetIP(ctx, "ip", t.host)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", t.host, err)
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("resolve %s: no addresses", t.host)
	}
	out := make([]netip.Addr, len(addrs))
	for i, a := range addrs {
		out[i] = a.Unmap()
	}
	return out, nil
}

var errUnspecified = errors.New("an unspecified address (it would reach the host itself)")

// checkAddr refuses what no rule may allow (unspecified addresses, zones,
// the synthetic ranges themselves), then asks the Decider.
func (p *Proxy) checkAddr(host string, ip netip.Addr, port uint16) error {
	switch {
	case !ip.IsValid() || ip.IsUnspecified():
		return errUnspecified
	case ip.Zone() != "":
		return errors.New("a scoped (zoned) address")
	case p.cfg.Names != nil && p.cfg.Names.Contains(ip):
		return errors.New("an address in execgate's own synthetic range")
	}
	return p.cfg.Decider.CheckAddr(host, ip, port)
}

// dialChecked dials the checked addresses in order, never by name.
func (p *Proxy) dialChecked(ctx context.Context, addrs []netip.Addr, port uint16, s *session) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.DialTimeout)
	defer cancel()
	var errs []error
	for _, ip := range addrs {
		ap := netip.AddrPortFrom(ip, port)
		c, err := p.cfg.Dial(ctx, "tcp", ap.String())
		if err == nil {
			s.ev.Addr = ap
			return c, nil
		}
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("dial: %w", errors.Join(errs...))
}
