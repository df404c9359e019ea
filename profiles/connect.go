package profiles

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/execgate/execgate/pathglob"
)

// ConnectRule is one [[connect]] table: which destinations (HOST:PORT) a
// run may reach in network.mode = "proxy".
type ConnectRule struct {
	Match   string
	Action  Action
	Reason  string
	Loc     Loc
	Pattern *ConnectPattern
}

// ConnectPattern is a compiled [[connect]] match: one or more HOST:PORT
// alternatives ({a,b} is expanded when compiling).
//
//   - A host name matches itself, case-insensitively, with a trailing dot
//     ignored.
//   - *.example.com matches every name below example.com (a.example.com,
//     a.b.example.com), never example.com itself. A * stands only for whole
//     leading labels.
//   - * alone matches every host name, but no IP literal: addresses are
//     named only by address patterns.
//   - An IP literal (192.0.2.1, [2001:db8::1]) or a CIDR (10.20.0.0/16,
//     [fd00::/8]) matches a destination address inside it. IPv6 goes in
//     brackets; an IPv4-mapped IPv6 literal means its IPv4 address.
//   - The port is a number from 1 to 65535, or * for any port.
type ConnectPattern struct {
	alts []connectAlt
}

type hostKind uint8

const (
	hostExact  hostKind = iota // name == the destination
	hostBelow                  // name is ".example.com": a proper suffix
	hostAny                    // every host name, no address
	hostPrefix                 // an address or CIDR
)

type connectAlt struct {
	kind   hostKind
	name   string // lower case; for hostBelow with the leading dot
	prefix netip.Prefix
	port   uint16 // 0: any port
}

// Limits of DNS names (RFC 1035): 253 characters written out, 63 a label.
const (
	maxHostName = 253
	maxLabel    = 63
)

// CompileConnectPattern compiles a [[connect]] match.
func CompileConnectPattern(src string) (*ConnectPattern, error) {
	if strings.TrimSpace(src) == "" {
		return nil, errors.New("empty match: want HOST:PORT, like \"registry.npmjs.org:443\"")
	}
	if strings.ContainsAny(src, " \t\r\n\\\x00") {
		return nil, fmt.Errorf("match %q: blanks, backslashes and NUL bytes have no place in HOST:PORT", src)
	}
	alts, err := pathglob.ExpandBraces(src)
	if err != nil {
		return nil, fmt.Errorf("match %q: %v", src, err)
	}
	p := &ConnectPattern{}
	for _, a := range alts {
		ca, err := compileConnectAlt(a)
		if err != nil {
			if len(alts) > 1 {
				return nil, fmt.Errorf("match %q: alternative %q: %v", src, a, err)
			}
			return nil, fmt.Errorf("match %q: %v", src, err)
		}
		p.alts = append(p.alts, ca)
	}
	return p, nil
}

func compileConnectAlt(s string) (connectAlt, error) {
	host, port, err := splitHostPort(s)
	if err != nil {
		return connectAlt{}, err
	}
	var a connectAlt
	if port != "*" {
		n, err := parsePort(port)
		if err != nil {
			return connectAlt{}, err
		}
		a.port = n
	}
	switch {
	case strings.HasPrefix(s, "["):
		a.kind = hostPrefix
		a.prefix, err = parseAddrOrPrefix(host, true)
	case host == "*":
		a.kind = hostAny
	case strings.ContainsAny(host, "/") || looksNumeric(host):
		a.kind = hostPrefix
		a.prefix, err = parseAddrOrPrefix(host, false)
	case strings.HasPrefix(host, "*."):
		a.kind = hostBelow
		var name string
		name, err = checkHostName(host[2:])
		a.name = "." + name
	default:
		a.kind = hostExact
		a.name, err = checkHostName(host)
	}
	return a, err
}

// splitHostPort splits HOST:PORT and [V6]:PORT, without the brackets.
func splitHostPort(s string) (string, string, error) {
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return "", "", errors.New("unterminated [ (write IPv6 as [2001:db8::1]:443)")
		}
		if !strings.HasPrefix(s[end+1:], ":") {
			return "", "", errors.New("no port after ]: want [ADDRESS]:PORT")
		}
		return s[1:end], s[end+2:], nil
	}
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return "", "", errors.New("no port: want HOST:PORT (the port may be *)")
	}
	host, port := s[:i], s[i+1:]
	if strings.ContainsAny(host, ":[]") {
		return "", "", errors.New("an IPv6 address goes in brackets: [2001:db8::1]:443")
	}
	if host == "" {
		return "", "", errors.New("no host before the port")
	}
	return host, port, nil
}

func parsePort(s string) (uint16, error) {
	if s == "" {
		return 0, errors.New("empty port: want a number from 1 to 65535, or *")
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("port %q: want a number from 1 to 65535, or * (ranges are not supported)", s)
		}
	}
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 || s[0] == '0' {
		return 0, fmt.Errorf("port %q: want a number from 1 to 65535, or *", s)
	}
	return uint16(n), nil
}

// looksNumeric: a last label of only digits is an IPv4 address or nothing
// (no top-level domain is numeric), so "10.1.2" is an error, not a name.
func looksNumeric(host string) bool {
	last := host[strings.LastIndexByte(host, '.')+1:]
	if last == "" {
		return false
	}
	for _, c := range []byte(last) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// parseAddrOrPrefix reads an address or a CIDR in canonical form. An
// IPv4-mapped IPv6 address stands for its IPv4 address.
func parseAddrOrPrefix(s string, v6 bool) (netip.Prefix, error) {
	if strings.ContainsRune(s, '%') {
		return netip.Prefix{}, fmt.Errorf("%q: zones (%%eth0) are not supported", s)
	}
	var pfx netip.Prefix
	if strings.ContainsRune(s, '/') {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a CIDR like 10.20.0.0/16 or [fd00::/8]", s)
		}
		if p != p.Masked() {
			return netip.Prefix{}, fmt.Errorf("%q has host bits set: did you mean %s?", s, p.Masked())
		}
		pfx = p
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an IP address", s)
		}
		pfx = netip.PrefixFrom(a, a.BitLen())
	}
	if pfx.Addr().Is4() == v6 && !pfx.Addr().Is4In6() {
		if v6 {
			return netip.Prefix{}, fmt.Errorf("%q: only IPv6 goes in brackets", s)
		}
		return netip.Prefix{}, fmt.Errorf("%q: an IPv6 address goes in brackets", s)
	}
	return unmapPrefix(pfx), nil
}

// unmapPrefix turns ::ffff:a.b.c.d/N (N >= 96) into a.b.c.d/(N-96).
func unmapPrefix(p netip.Prefix) netip.Prefix {
	if !p.Addr().Is4In6() || p.Bits() < 96 {
		return p
	}
	return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
}

// checkHostName validates a host name as written in a pattern and returns
// it in lower case without a trailing dot.
func checkHostName(h string) (string, error) {
	h = strings.TrimSuffix(h, ".")
	if h == "" {
		return "", errors.New("empty host name")
	}
	for i := 0; i < len(h); i++ {
		if h[i] >= 0x80 {
			return "", fmt.Errorf("host %q is not ASCII: write its xn-- (punycode) form", h)
		}
	}
	if strings.ContainsAny(h, "*?[]") {
		return "", fmt.Errorf("host %q: a * stands only for whole leading labels (*.example.com), or alone for any name", h)
	}
	return validName(h)
}

// validName checks an ASCII host name: letters, digits, '-' and '_', labels
// of 1 to 63 characters that neither start nor end with '-', 253 in all.
func validName(h string) (string, error) {
	if len(h) > maxHostName {
		return "", fmt.Errorf("host name longer than %d characters", maxHostName)
	}
	for _, l := range strings.Split(h, ".") {
		switch {
		case l == "":
			return "", fmt.Errorf("host %q has an empty label", h)
		case len(l) > maxLabel:
			return "", fmt.Errorf("host %q has a label longer than %d characters", h, maxLabel)
		case l[0] == '-' || l[len(l)-1] == '-':
			return "", fmt.Errorf("host %q: a label may not start or end with '-'", h)
		}
		for _, c := range []byte(l) {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return "", fmt.Errorf("host %q: %q is not a host name character", h, c)
			}
		}
	}
	return strings.ToLower(h), nil
}

// Dest is a connection's destination host, normalised: a host name in
// lower case without a trailing dot, or an address (IPv4-mapped IPv6
// unmapped).
type Dest struct {
	Name string     // set for a host name
	Addr netip.Addr // set for an IP literal
}

// String gives the host as a client would write it before ":PORT".
func (d Dest) String() string {
	if d.Addr.IsValid() {
		if d.Addr.Is6() {
			return "[" + d.Addr.String() + "]"
		}
		return d.Addr.String()
	}
	return d.Name
}

// ParseDest normalises a destination host as a client names it: a host
// name, an IPv4 address, or an IPv6 address with or without brackets. A
// non-ASCII name is refused (clients send its xn-- form), as are empty
// labels and characters no host name has.
func ParseDest(host string) (Dest, error) {
	h := host
	if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
		h = h[1 : len(h)-1]
	}
	if strings.ContainsRune(h, ':') {
		a, err := netip.ParseAddr(h)
		if err != nil || a.Zone() != "" {
			return Dest{}, fmt.Errorf("host %q is not a valid IPv6 address", host)
		}
		return Dest{Addr: a.Unmap()}, nil
	}
	if h != host {
		return Dest{}, fmt.Errorf("host %q: only IPv6 goes in brackets", host)
	}
	if h != "" && looksNumeric(strings.TrimSuffix(h, ".")) {
		a, err := netip.ParseAddr(h)
		if err != nil {
			return Dest{}, fmt.Errorf("host %q is neither an IPv4 address nor a host name", host)
		}
		return Dest{Addr: a}, nil
	}
	for i := 0; i < len(h); i++ {
		if h[i] >= 0x80 {
			return Dest{}, fmt.Errorf("host %q is not ASCII: use its xn-- (punycode) form", host)
		}
	}
	n, err := validName(strings.TrimSuffix(h, "."))
	if h == "" || h == "." {
		err = errors.New("empty host")
	}
	if err != nil {
		return Dest{}, err
	}
	return Dest{Name: n}, nil
}

// Match reports whether the pattern matches a destination and port.
func (p *ConnectPattern) Match(d Dest, port uint16) bool {
	for i := range p.alts {
		if p.alts[i].match(d, port) {
			return true
		}
	}
	return false
}

func (a *connectAlt) match(d Dest, port uint16) bool {
	if a.port != 0 && a.port != port {
		return false
	}
	if d.Addr.IsValid() {
		return a.kind == hostPrefix && a.prefix.Contains(d.Addr.Unmap())
	}
	switch a.kind {
	case hostExact:
		return d.Name == a.name
	case hostBelow:
		return len(d.Name) > len(a.name) && strings.HasSuffix(d.Name, a.name)
	case hostAny:
		return d.Name != ""
	}
	return false
}

// NamesAddr reports whether the pattern names addr exactly (an address
// alternative of one address, not a wider CIDR) on port.
func (p *ConnectPattern) NamesAddr(addr netip.Addr, port uint16) bool {
	addr = addr.Unmap()
	for _, a := range p.alts {
		if a.kind == hostPrefix && a.prefix.IsSingleIP() && a.prefix.Addr() == addr && (a.port == 0 || a.port == port) {
			return true
		}
	}
	return false
}

// PrefixList is a list of addresses and CIDRs from a config file, with
// where each was written.
type PrefixList struct {
	Prefixes []netip.Prefix
	Locs     []Loc
}

// Lookup returns the first entry that contains addr, and its location.
func (l *PrefixList) Lookup(addr netip.Addr) (netip.Prefix, Loc, bool) {
	addr = addr.Unmap()
	for i, p := range l.Prefixes {
		if p.Contains(addr) {
			return p, l.Locs[i], true
		}
	}
	return netip.Prefix{}, Loc{}, false
}

// Names reports whether an entry is exactly addr (a single address).
func (l *PrefixList) Names(addr netip.Addr) (Loc, bool) {
	addr = addr.Unmap()
	for i, p := range l.Prefixes {
		if p.IsSingleIP() && p.Addr() == addr {
			return l.Locs[i], true
		}
	}
	return Loc{}, false
}

// ParsePrefix reads one private_ok entry: an address (10.1.2.3, 2001:db8::1)
// or a CIDR in canonical form (10.0.0.0/8, fd00::/8). Brackets are not
// needed here, as there is no port.
func ParsePrefix(s string) (netip.Prefix, error) {
	t := s
	if strings.HasPrefix(t, "[") && strings.HasSuffix(t, "]") {
		t = t[1 : len(t)-1]
	}
	if strings.TrimSpace(t) != t || t == "" {
		return netip.Prefix{}, fmt.Errorf("%q: want an address or CIDR like \"10.0.0.0/8\"", s)
	}
	addrPart, _, _ := strings.Cut(t, "/")
	return parseAddrOrPrefix(t, strings.ContainsRune(addrPart, ':'))
}
