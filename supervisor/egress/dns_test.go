package egress

import (
	"net"
	"net/netip"
	"testing"

	"github.com/miekg/dns"
)

func startDNS(t *testing.T, n *Names) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })           // test over
	go func() { _ = (&DNS{Names: n}).Serve(pc) }() // ends when pc closes
	return pc.LocalAddr().String()
}

func TestDNS(t *testing.T) {
	n, err := NewNames(DefaultV4, DefaultV6, 3)
	if err != nil {
		t.Fatal(err)
	}
	addr := startDNS(t, n)
	ask := func(name string, qt uint16, class uint16) *dns.Msg {
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(name), qt)
		m.Question[0].Qclass = class
		r, err := dns.Exchange(m, addr)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return r
	}
	first := ask("Example.COM", dns.TypeA, dns.ClassINET)
	tests := []struct {
		name  string
		qt    uint16
		class uint16
		rcode int
		want  string // the answer's address or target, "" for none
	}{
		{"example.com.", dns.TypeA, dns.ClassINET, dns.RcodeSuccess, "198.18.0.1"},
		{"example.com", dns.TypeAAAA, dns.ClassINET, dns.RcodeSuccess, "fd3c:9e55:71a4:e9a7::1"},
		{"other.test", dns.TypeA, dns.ClassINET, dns.RcodeSuccess, "198.18.0.2"},
		{"example.com", dns.TypeMX, dns.ClassINET, dns.RcodeSuccess, ""},
		{"example.com", dns.TypeTXT, dns.ClassINET, dns.RcodeSuccess, ""},
		{"example.com", dns.TypeHTTPS, dns.ClassINET, dns.RcodeSuccess, ""},
		{"localhost", dns.TypeA, dns.ClassINET, dns.RcodeSuccess, "127.0.0.1"},
		{"db.localhost", dns.TypeAAAA, dns.ClassINET, dns.RcodeSuccess, "::1"},
		{"1.0.18.198.in-addr.arpa", dns.TypePTR, dns.ClassINET, dns.RcodeSuccess, "example.com."},
		{"1.0.0.127.in-addr.arpa", dns.TypePTR, dns.ClassINET, dns.RcodeNameError, ""},
		{"example.com", dns.TypeA, dns.ClassCHAOS, dns.RcodeRefused, ""},
		{"bad_-.", dns.TypeA, dns.ClassINET, dns.RcodeNameError, ""},
		{"third.test", dns.TypeA, dns.ClassINET, dns.RcodeSuccess, "198.18.0.3"},
		{"full.test", dns.TypeA, dns.ClassINET, dns.RcodeServerFailure, ""},
		{"example.com", dns.TypeA, dns.ClassINET, dns.RcodeSuccess, "198.18.0.1"}, // mapped names still answer
	}
	for _, tt := range tests {
		r := ask(tt.name, tt.qt, tt.class)
		got := ""
		if len(r.Answer) == 1 {
			switch rr := r.Answer[0].(type) {
			case *dns.A:
				got = rr.A.String()
			case *dns.AAAA:
				got = rr.AAAA.String()
			case *dns.PTR:
				got = rr.Ptr
			}
		} else if len(r.Answer) > 1 {
			got = "several"
		}
		if r.Rcode != tt.rcode || got != tt.want {
			t.Errorf("%s %s: rcode %s answer %q, want %s %q", tt.name, dns.TypeToString[tt.qt],
				dns.RcodeToString[r.Rcode], got, dns.RcodeToString[tt.rcode], tt.want)
		}
	}
	if a := first.Answer[0].(*dns.A).A.String(); a != "198.18.0.1" {
		t.Fatalf("first answer %s", a)
	}
	if name, ok := n.Lookup(netip.MustParseAddr("fd3c:9e55:71a4:e9a7::2")); !ok || name != "other.test" {
		t.Fatalf("v6 reverse %q %v", name, ok)
	}
	if _, ok := n.Lookup(netip.MustParseAddr("198.18.0.4")); ok {
		t.Fatal("unassigned address maps to a name")
	}
}

func TestNewNamesBounds(t *testing.T) {
	if _, err := NewNames(netip.MustParsePrefix("198.18.0.0/30"), netip.Prefix{}, 3); err == nil {
		t.Fatal("3 names fit in a /30")
	}
	if _, err := NewNames(netip.MustParsePrefix("fd00::/64"), netip.Prefix{}, 1); err == nil {
		t.Fatal("v6 accepted as the v4 range")
	}
	n, err := NewNames(netip.MustParsePrefix("198.18.0.0/30"), netip.Prefix{}, 2)
	if err != nil {
		t.Fatal(err)
	}
	if _, v6, err := n.Assign("a.test"); err != nil || v6.IsValid() {
		t.Fatalf("%v %v", v6, err)
	}
}
