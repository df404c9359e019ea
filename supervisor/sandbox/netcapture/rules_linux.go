package netcapture

import (
	"fmt"
	"net"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// loadRules adds TableName with its two chains in one batch: the kernel
// applies all of it or none of it.
func loadRules(c *nftables.Conn, p Ports) error {
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return fmt.Errorf("list tables: %w", err)
	}
	for _, t := range tables {
		if t.Name == TableName {
			return fmt.Errorf("table inet %s already exists", TableName)
		}
	}
	t := c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: TableName})
	nat := c.AddChain(&nftables.Chain{
		Name: "nat_out", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityNATDest,
	})
	drop := nftables.ChainPolicyDrop
	filter := c.AddChain(&nftables.Chain{
		Name: "filter_out", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityFilter,
		Policy: &drop,
	})
	c.AddRule(&nftables.Rule{Table: t, Chain: nat, Exprs: redirectRule(p.Transparent)})
	for _, e := range filterRules(p.DNS) {
		c.AddRule(&nftables.Rule{Table: t, Chain: filter, Exprs: e})
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("load table inet %s: %w", TableName, err)
	}
	return nil
}

// redirectRule: meta oifname != "lo" meta l4proto tcp redirect to :port.
func redirectRule(port uint16) []expr.Any {
	e := []expr.Any{}
	e = append(e, oifLo(expr.CmpOpNeq)...)
	e = append(e, l4proto(unix.IPPROTO_TCP)...)
	return append(e,
		&expr.Immediate{Register: 1, Data: binaryutil.BigEndian.PutUint16(port)},
		&expr.Redir{RegisterProtoMin: 1},
	)
}

// filterRules are the accepts of filter_out, whose policy drops the rest.
//
// "Stays local" needs two tests, because in OUTPUT chains meta oif is the
// device of the route taken before NAT: a redirected packet (to 127.0.0.1
// or ::1) still shows the dummy. So a packet stays local if it is routed
// to lo, or if its destination (after NAT) is 127.0.0.0/8 or ::1. For each
// of those: conntrack replies and related ICMP errors, and TCP, are
// accepted. UDP only to 127.0.0.1:DNS.
func filterRules(dns uint16) [][]expr.Any {
	var rules [][]expr.Any
	for _, local := range [][]expr.Any{oifLo(expr.CmpOpEq), dstLoopback4(), dstLoopback6()} {
		rules = append(rules,
			cat(local, ctEstablishedOrRelated(), accept()),
			cat(local, l4proto(unix.IPPROTO_TCP), accept()))
	}
	udpDNS := cat(nfproto(unix.NFPROTO_IPV4), l4proto(unix.IPPROTO_UDP), []expr.Any{
		// ip daddr 127.0.0.1
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{127, 0, 0, 1}},
		// udp dport DNS
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(dns)},
	}, accept())
	return append(rules, udpDNS)
}

// ctEstablishedOrRelated: ct state established,related.
func ctEstablishedOrRelated() []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{
			SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED),
			Xor:  binaryutil.NativeEndian.PutUint32(0),
		},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
	}
}

// dstLoopback4: meta nfproto ipv4 ip daddr 127.0.0.0/8.
func dstLoopback4() []expr.Any {
	return cat(nfproto(unix.NFPROTO_IPV4), []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{127}},
	})
}

// dstLoopback6: meta nfproto ipv6 ip6 daddr ::1.
func dstLoopback6() []expr.Any {
	return cat(nfproto(unix.NFPROTO_IPV6), []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 24, Len: 16},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: net.IPv6loopback},
	})
}

func nfproto(proto byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
	}
}

func oifLo(op expr.CmpOp) []expr.Any {
	name := make([]byte, unix.IFNAMSIZ)
	copy(name, "lo")
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: op, Register: 1, Data: name},
	}
}

func l4proto(proto byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
	}
}

func accept() []expr.Any {
	return []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}}
}

func cat(parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}
