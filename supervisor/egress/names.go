package egress

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"
)

// The default synthetic ranges.
//
// IPv4: 198.18.0.0/15 is reserved for benchmarking (RFC 2544, RFC 6890):
// it is never routed on the internet and, unlike RFC 1918 space, is not a
// site's own network, so a synthetic address cannot collide with a real
// destination a profile might name or private_ok might cover. It has
// 131070 usable addresses.
//
// IPv6: a ULA /64 (RFC 4193, fd00::/8) whose 40-bit global ID was picked
// at random once. The addresses exist only inside the run's namespace,
// which has no other routes, so a fixed prefix is safe and lets the
// namespace's redirect rules be static.
var (
	DefaultV4 = netip.MustParsePrefix("198.18.0.0/15")
	DefaultV6 = netip.MustParsePrefix("fd3c:9e55:71a4:e9a7::/64")
)

// DefaultMaxNames bounds a run's name map.
const DefaultMaxNames = 16384

// ErrNamesFull is returned when the map holds its maximum of names. Names
// already mapped keep their addresses; new names are refused (the DNS
// answers SERVFAIL). Entries are never evicted: reusing an address could
// make a client's cached answer for one name stand for another.
var ErrNamesFull = errors.New("egress: synthetic name map is full")

// Names is a run's bidirectional map between names and synthetic
// addresses. The i-th name (from 1) gets the i-th address of each range,
// so its A and AAAA answers are stable and map back to it.
type Names struct {
	v4, v6 netip.Prefix
	max    int

	mu      sync.Mutex
	byName  map[string]uint32
	byIndex []string // byIndex[i-1] is the name of index i
}

// NewNames returns an empty map over v4 (an IPv4 prefix of /30 or wider)
// and v6 (an IPv6 prefix of /64 or wider; the zero Prefix disables AAAA).
// max <= 0 means DefaultMaxNames; it must fit in v4.
func NewNames(v4, v6 netip.Prefix, max int) (*Names, error) {
	if !v4.IsValid() || !v4.Addr().Is4() || v4.Bits() > 30 {
		return nil, fmt.Errorf("egress: synthetic v4 range %v: need an IPv4 prefix of /30 or wider", v4)
	}
	if v6.IsValid() && (!v6.Addr().Is6() || v6.Addr().Is4In6() || v6.Bits() > 64) {
		return nil, fmt.Errorf("egress: synthetic v6 range %v: need an IPv6 prefix of /64 or wider", v6)
	}
	if max <= 0 {
		max = DefaultMaxNames
	}
	if room := 1<<(32-v4.Bits()) - 2; max > room {
		return nil, fmt.Errorf("egress: %d names do not fit in %v (%d addresses)", max, v4, room)
	}
	return &Names{v4: v4.Masked(), v6: v6.Masked(), max: max, byName: map[string]uint32{}}, nil
}

// Assign returns name's addresses, mapping it first if it is new. v6 is
// the zero Addr when AAAA is disabled.
func (n *Names) Assign(name string) (v4, v6 netip.Addr, err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	i, ok := n.byName[name]
	if !ok {
		if len(n.byIndex) >= n.max {
			return netip.Addr{}, netip.Addr{}, ErrNamesFull
		}
		n.byIndex = append(n.byIndex, name)
		i = uint32(len(n.byIndex))
		n.byName[name] = i
	}
	return n.addr4(i), n.addr6(i), nil
}

func (n *Names) addr4(i uint32) netip.Addr {
	b := n.v4.Addr().As4()
	binary.BigEndian.PutUint32(b[:], binary.BigEndian.Uint32(b[:])+i)
	return netip.AddrFrom4(b)
}

func (n *Names) addr6(i uint32) netip.Addr {
	if !n.v6.IsValid() {
		return netip.Addr{}
	}
	b := n.v6.Addr().As16()
	binary.BigEndian.PutUint64(b[8:], binary.BigEndian.Uint64(b[8:])+uint64(i))
	return netip.AddrFrom16(b)
}

// Contains reports whether ip lies in one of the synthetic ranges.
func (n *Names) Contains(ip netip.Addr) bool {
	ip = ip.Unmap()
	return n.v4.Contains(ip) || (n.v6.IsValid() && n.v6.Contains(ip))
}

// Lookup maps a synthetic address back to its name.
func (n *Names) Lookup(ip netip.Addr) (string, bool) {
	ip = ip.Unmap()
	var i uint64
	switch {
	case n.v4.Contains(ip):
		a, b := ip.As4(), n.v4.Addr().As4()
		i = uint64(binary.BigEndian.Uint32(a[:]) - binary.BigEndian.Uint32(b[:]))
	case n.v6.IsValid() && n.v6.Contains(ip):
		a, b := ip.As16(), n.v6.Addr().As16()
		i = binary.BigEndian.Uint64(a[8:]) - binary.BigEndian.Uint64(b[8:])
	default:
		return "", false
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if i == 0 || i > uint64(len(n.byIndex)) {
		return "", false
	}
	return n.byIndex[i-1], true
}

// Len is the number of names mapped.
func (n *Names) Len() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.byIndex)
}
