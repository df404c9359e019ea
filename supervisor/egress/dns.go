package egress

import (
	"net"
	"net/netip"
	"strings"

	"github.com/miekg/dns"
)

// DNSTTL is the TTL of synthetic answers. The map is stable for the run,
// so answers can be cached for as long as the run lasts.
const DNSTTL = 300

// DNS is the run's resolver: it answers every name from Names and never
// forwards anything upstream. It implements dns.Handler.
//
//   - A and AAAA: the name's synthetic address (AAAA is empty when v6 is
//     disabled); localhost and *.localhost (RFC 6761) get 127.0.0.1 / ::1.
//   - PTR under in-addr.arpa / ip6.arpa: the name a synthetic address
//     stands for, NXDOMAIN for any other address.
//   - any other type of an ordinary name: NOERROR with no answer (the name
//     "exists", it just has no such record), so clients fall back to A.
//   - a full map: SERVFAIL for new names. Opcodes other than QUERY:
//     NOTIMP. A class other than IN, or not exactly one question: REFUSED
//     or FORMERR.
type DNS struct {
	Names *Names
}

// ServeDNS answers one query.
func (d *DNS) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	// A failed write is the client's loss (it retries or times out);
	// there is no one else to tell.
	_ = w.WriteMsg(d.Answer(r))
}

// Answer builds the reply to r.
func (d *DNS) Answer(r *dns.Msg) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	m.RecursionAvailable = true
	switch {
	case r.Opcode != dns.OpcodeQuery:
		m.Rcode = dns.RcodeNotImplemented
	case len(r.Question) != 1:
		m.Rcode = dns.RcodeFormatError
	case r.Question[0].Qclass != dns.ClassINET:
		m.Rcode = dns.RcodeRefused
	default:
		d.answer(m, r.Question[0])
	}
	return m
}

func (d *DNS) answer(m *dns.Msg, q dns.Question) {
	name := strings.TrimSuffix(strings.ToLower(q.Name), ".")
	if strings.HasSuffix(name, ".in-addr.arpa") || strings.HasSuffix(name, ".ip6.arpa") {
		d.answerPTR(m, q)
		return
	}
	if name == "" || !validName(name) {
		m.Rcode = dns.RcodeNameError
		return
	}
	var v4, v6 netip.Addr
	if name == "localhost" || strings.HasSuffix(name, ".localhost") {
		v4, v6 = netip.AddrFrom4([4]byte{127, 0, 0, 1}), netip.IPv6Loopback()
	} else if q.Qtype == dns.TypeA || q.Qtype == dns.TypeAAAA {
		var err error
		if v4, v6, err = d.Names.Assign(name); err != nil {
			m.Rcode = dns.RcodeServerFailure
			return
		}
	}
	hdr := dns.RR_Header{Name: q.Name, Class: dns.ClassINET, Ttl: DNSTTL, Rrtype: q.Qtype}
	switch {
	case q.Qtype == dns.TypeA && v4.IsValid():
		m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: net.IP(v4.AsSlice())})
	case q.Qtype == dns.TypeAAAA && v6.IsValid():
		m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr, AAAA: net.IP(v6.AsSlice())})
	}
}

func (d *DNS) answerPTR(m *dns.Msg, q dns.Question) {
	ip, ok := reverseAddr(q.Name)
	name, mapped := "", false
	if ok {
		name, mapped = d.Names.Lookup(ip)
	}
	if !mapped {
		m.Rcode = dns.RcodeNameError
		return
	}
	if q.Qtype == dns.TypePTR {
		hdr := dns.RR_Header{Name: q.Name, Class: dns.ClassINET, Ttl: DNSTTL, Rrtype: dns.TypePTR}
		m.Answer = append(m.Answer, &dns.PTR{Hdr: hdr, Ptr: dns.Fqdn(name)})
	}
}

// reverseAddr parses a reverse-lookup name into its address.
func reverseAddr(name string) (netip.Addr, bool) {
	name = strings.ToLower(dns.Fqdn(name))
	if s, ok := strings.CutSuffix(name, ".in-addr.arpa."); ok {
		l := strings.Split(s, ".")
		if len(l) != 4 {
			return netip.Addr{}, false
		}
		ip, err := netip.ParseAddr(l[3] + "." + l[2] + "." + l[1] + "." + l[0])
		return ip, err == nil
	}
	s, ok := strings.CutSuffix(name, ".ip6.arpa.")
	l := strings.Split(s, ".")
	if !ok || len(l) != 32 {
		return netip.Addr{}, false
	}
	var b strings.Builder
	for i := 31; i >= 0; i-- {
		if len(l[i]) != 1 {
			return netip.Addr{}, false
		}
		b.WriteString(l[i])
		if i%4 == 0 && i > 0 {
			b.WriteByte(':')
		}
	}
	ip, err := netip.ParseAddr(b.String())
	return ip, err == nil
}

// Serve answers on pc (UDP) until it is closed; ServeTCP on ln.
func (d *DNS) Serve(pc net.PacketConn) error {
	return (&dns.Server{PacketConn: pc, Handler: d}).ActivateAndServe()
}

// ServeTCP answers DNS over TCP on ln until it is closed.
func (d *DNS) ServeTCP(ln net.Listener) error {
	return (&dns.Server{Listener: ln, Handler: d}).ActivateAndServe()
}
