// Package netcapture confines a run's network namespace so that the only
// thing the run can reach is execgate (DESIGN.md, "Network egress",
// network.mode = "proxy"), and lets the daemon open execgate's listening
// sockets inside that namespace without running a process there.
//
// Setup gives a fresh network namespace:
//
//   - lo up (127.0.0.1 and ::1);
//   - a black-hole interface DummyName (a dummy; an ifb where the kernel has
//     no dummy driver) with private addresses DummyAddr4 and DummyAddr6 and
//     IPv4 and IPv6 default routes through it, so that connect() to any
//     address routes instead of failing with ENETUNREACH. The interface
//     discards what it is given: nothing it "sends" goes anywhere, and its
//     counters show what tried to;
//   - one nftables table (TableName, family inet, so IPv4 and IPv6 alike),
//     loaded in a single atomic batch, shown here in nft syntax.
//
// The table:
//
//	table inet execgate {
//	  chain nat_out {    # type nat hook output priority dstnat
//	    meta oifname != "lo" meta l4proto tcp redirect to :Transparent
//	  }
//	  chain filter_out { # type filter hook output priority filter; policy drop
//	    # LOCAL is each of: meta oifname "lo" | ip daddr 127.0.0.0/8 | ip6 daddr ::1
//	    # (in OUTPUT, oif is the pre-NAT route's device, so a redirected
//	    # packet is only recognised by its new destination)
//	    LOCAL ct state established,related accept
//	    LOCAL meta l4proto tcp accept
//	    ip daddr 127.0.0.1 udp dport DNS accept
//	  }
//	}
//
// So every TCP connection that would leave the namespace is redirected to
// execgate's transparent listener on 127.0.0.1:Transparent (IPv4) or
// [::1]:Transparent (IPv6), where OriginalDst recovers the address the run
// dialled. TCP that stays inside the namespace (loopback, including the
// HTTP CONNECT and SOCKS5 ports and any server the run itself starts on
// localhost) is left alone. UDP is allowed only to 127.0.0.1:DNS and the
// replies to it; ICMP, ICMPv6, raw IP and every other protocol is dropped
// (a packet dropped in OUTPUT makes the sending call fail with EPERM),
// except ICMP errors related to an accepted local flow.
//
// Setup fails closed: the filter rules are loaded before any route exists,
// and if a later step fails the black-hole interface (and with it every
// route out) is deleted, so a half-configured namespace reaches nothing.
//
// ListenIn and ListenPacketIn open sockets inside another network namespace
// from a goroutine locked to its thread (setns there and back; if going back
// fails the thread is left locked, so the Go runtime ends it rather than
// reuse a thread stuck in the run's namespace). The sockets stay bound to
// that namespace for their whole life. Setup's netlink and nftables sockets
// are opened the same way (not through the libraries' own netns options:
// vishvananda/netlink ignores a failed setns back and unlocks the thread).
//
// Open is Setup plus execgate's endpoints (DefaultPorts) in the namespace,
// and Ports.Env the proxy variables a run gets. Setup also lowers the
// namespace's first privileged port to execgate's DNS port (the service
// has no CAP_NET_BIND_SERVICE) and makes reno its TCP congestion control
// (every connection there ends on loopback).
package netcapture
