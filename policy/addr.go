package policy

import (
	"net/netip"
)

// AddrClass says why an address is not an ordinary public destination.
type AddrClass string

// The classes CheckAddr refuses. Public is the only one dialled without a
// rule or private_ok entry naming the address.
const (
	Public      AddrClass = ""
	Loopback    AddrClass = "loopback"
	Private     AddrClass = "private"    // RFC 1918, ULA fc00::/7, site-local fec0::/10
	LinkLocal   AddrClass = "link-local" // 169.254.0.0/16, fe80::/10
	CGNAT       AddrClass = "CGNAT"      // 100.64.0.0/10 (RFC 6598)
	Metadata    AddrClass = "cloud metadata"
	Reserved    AddrClass = "reserved"    // documentation, benchmarking, IETF, tunnels
	Multicast   AddrClass = "multicast"   // never a TCP destination
	Unspecified AddrClass = "unspecified" // 0.0.0.0/8, ::
	Broadcast   AddrClass = "broadcast"   // 255.255.255.255 (and the rest of 240/4)
)

// Exemptable reports whether a rule or private_ok may open the class.
// Multicast, unspecified and broadcast addresses are no destination at all
// (0.0.0.0 even means this host).
func (c AddrClass) Exemptable() bool {
	return c != Multicast && c != Unspecified && c != Broadcast
}

// metadataAddrs are the cloud instance-metadata and instance-local service
// addresses: credentials live there. They are opened only by a rule or a
// private_ok entry that names the exact address, never by a wider CIDR.
var metadataAddrs = []netip.Addr{
	netip.MustParseAddr("169.254.169.254"), // AWS, GCP, Azure, OCI, DigitalOcean, OpenStack
	netip.MustParseAddr("169.254.170.2"),   // AWS ECS task metadata and credentials
	netip.MustParseAddr("169.254.169.253"), // AWS VPC DNS
	netip.MustParseAddr("100.100.100.200"), // Alibaba Cloud
	netip.MustParseAddr("192.0.0.192"),     // Oracle Cloud (classic)
	netip.MustParseAddr("fd00:ec2::254"),   // AWS IMDS over IPv6
	netip.MustParseAddr("fd00:ec2::253"),   // AWS VPC DNS over IPv6
	netip.MustParseAddr("fd20:ce::254"),    // GCP metadata over IPv6
}

type classRange struct {
	p netip.Prefix
	c AddrClass
}

// v4Ranges are checked in order; the first that contains the address wins.
var v4Ranges = []classRange{
	{netip.MustParsePrefix("0.0.0.0/8"), Unspecified}, // "this network"
	{netip.MustParsePrefix("127.0.0.0/8"), Loopback},
	{netip.MustParsePrefix("10.0.0.0/8"), Private},
	{netip.MustParsePrefix("172.16.0.0/12"), Private},
	{netip.MustParsePrefix("192.168.0.0/16"), Private},
	{netip.MustParsePrefix("100.64.0.0/10"), CGNAT},
	{netip.MustParsePrefix("169.254.0.0/16"), LinkLocal},
	{netip.MustParsePrefix("192.0.0.0/24"), Reserved},    // IETF protocol assignments
	{netip.MustParsePrefix("192.0.2.0/24"), Reserved},    // TEST-NET-1
	{netip.MustParsePrefix("198.51.100.0/24"), Reserved}, // TEST-NET-2
	{netip.MustParsePrefix("203.0.113.0/24"), Reserved},  // TEST-NET-3
	{netip.MustParsePrefix("198.18.0.0/15"), Reserved},   // benchmarking
	{netip.MustParsePrefix("192.88.99.0/24"), Reserved},  // 6to4 relay anycast
	{netip.MustParsePrefix("224.0.0.0/4"), Multicast},
	{netip.MustParsePrefix("240.0.0.0/4"), Broadcast}, // reserved, and 255.255.255.255
}

var v6Ranges = []classRange{
	{netip.MustParsePrefix("::1/128"), Loopback},
	{netip.MustParsePrefix("::/128"), Unspecified},
	{netip.MustParsePrefix("::/96"), Reserved}, // IPv4-compatible (deprecated)
	{netip.MustParsePrefix("64:ff9b:1::/48"), Private},
	{netip.MustParsePrefix("100::/64"), Reserved},      // discard-only
	{netip.MustParsePrefix("2001::/32"), Reserved},     // Teredo: an obfuscated IPv4 inside
	{netip.MustParsePrefix("2001:db8::/32"), Reserved}, // documentation
	{netip.MustParsePrefix("3fff::/20"), Reserved},     // documentation (RFC 9637)
	{netip.MustParsePrefix("fc00::/7"), Private},
	{netip.MustParsePrefix("fe80::/10"), LinkLocal},
	{netip.MustParsePrefix("fec0::/10"), Private}, // site-local (deprecated)
	{netip.MustParsePrefix("ff00::/8"), Multicast},
}

var (
	nat64 = netip.MustParsePrefix("64:ff9b::/96")
	six4  = netip.MustParsePrefix("2002::/16")
)

// ClassifyAddr says what kind of destination addr is. An IPv4 address
// carried in IPv6 (IPv4-mapped ::ffff:0:0/96, NAT64 64:ff9b::/96, 6to4
// 2002::/16) is classified as the IPv4 address it reaches, so that
// [::ffff:127.0.0.1] is loopback and [64:ff9b::a9fe:a9fe] is metadata.
func ClassifyAddr(addr netip.Addr) AddrClass {
	if !addr.IsValid() {
		return Unspecified
	}
	addr = addr.WithZone("").Unmap()
	if v4, ok := embeddedV4(addr); ok {
		addr = v4
	}
	for _, m := range metadataAddrs {
		if addr == m {
			return Metadata
		}
	}
	ranges := v6Ranges
	if addr.Is4() {
		ranges = v4Ranges
	}
	for _, r := range ranges {
		if r.p.Contains(addr) {
			return r.c
		}
	}
	return Public
}

// embeddedV4 returns the IPv4 address a NAT64 or 6to4 address reaches.
func embeddedV4(a netip.Addr) (netip.Addr, bool) {
	b := a.As16()
	switch {
	case a.Is4():
		return netip.Addr{}, false
	case nat64.Contains(a):
		return netip.AddrFrom4([4]byte(b[12:16])), true
	case six4.Contains(a):
		return netip.AddrFrom4([4]byte(b[2:6])), true
	}
	return netip.Addr{}, false
}
