package netcapture

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Names and addresses Setup gives the namespace. The addresses are private
// and only ever exist inside the run's namespace, so they cannot collide
// with anything on the host.
const (
	DummyName = "eg0"
	TableName = "execgate"
)

var (
	DummyAddr4 = &net.IPNet{IP: net.IPv4(10, 254, 0, 2).To4(), Mask: net.CIDRMask(32, 32)}
	DummyAddr6 = &net.IPNet{IP: net.ParseIP("fd65:6567:6174::2"), Mask: net.CIDRMask(128, 128)}
)

// Ports are execgate's listeners inside the run's namespace, all on
// loopback. Transparent takes every redirected TCP connection (on
// 127.0.0.1 and ::1); DNS is the UDP port on 127.0.0.1 the run may send to
// (53, for resolv.conf). HTTP and SOCKS need no rule (loopback TCP is
// open); they are checked only so that they cannot shadow the other two.
type Ports struct {
	Transparent, HTTP, SOCKS, DNS uint16
}

func (p Ports) validate() error {
	if p.Transparent == 0 || p.DNS == 0 {
		return errors.New("netcapture: Transparent and DNS ports are required")
	}
	seen := map[uint16]bool{}
	for _, port := range []uint16{p.Transparent, p.HTTP, p.SOCKS} {
		if port != 0 && seen[port] {
			return fmt.Errorf("netcapture: TCP port %d given twice", port)
		}
		seen[port] = true
	}
	return nil
}

// testFail, when set by tests, is called before each step of Setup and a
// non-nil result makes that step fail.
var testFail func(step string) error

func failpoint(name string) error {
	if testFail != nil {
		return testFail(name)
	}
	return nil
}

func step(name string, f func() error) error {
	if err := failpoint(name); err != nil {
		return fmt.Errorf("netcapture: %s: %w", name, err)
	}
	if err := f(); err != nil {
		return fmt.Errorf("netcapture: %s: %w", name, err)
	}
	return nil
}

// Setup confines the fresh network namespace nsFd as the package doc
// describes. It fails closed: the filter is loaded before any route out
// exists, and on a later failure the dummy interface, and with it every
// route out, is removed. Setup refuses a namespace it has already set up.
func Setup(nsFd int, p Ports) error {
	if err := p.validate(); err != nil {
		return err
	}
	return InNetns(nsFd, func() error { return setupHere(p) })
}

// setupHere runs on a thread inside the run's namespace, so the netlink and
// nftables sockets it opens are that namespace's.
func setupHere(p Ports) error {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netcapture: netlink handle: %w", err)
	}
	defer h.Close()
	nft, err := nftables.New(nftables.AsLasting())
	if err != nil {
		return fmt.Errorf("netcapture: nftables conn: %w", err)
	}
	defer nft.CloseLasting()
	if err := step("loopback up", func() error { return loUp(h) }); err != nil {
		return err
	}
	if err := step("sysctls", func() error { return tune(p.lowest()) }); err != nil {
		return err
	}
	if err := step("nftables", func() error { return loadRules(nft, p) }); err != nil {
		return err
	}
	var dummy netlink.Link
	err = step("add dummy", func() error {
		var err error
		dummy, err = addDummy(h)
		return err
	})
	if err != nil {
		return err
	}
	if err := step("dummy routes", func() error { return routeOut(h, dummy) }); err != nil {
		if derr := h.LinkDel(dummy); derr != nil {
			// Still closed: the filter is loaded and drops all of it.
			return errors.Join(err, fmt.Errorf("netcapture: delete dummy: %w", derr))
		}
		return err
	}
	return nil
}

// lowest is the lowest of the ports.
func (p Ports) lowest() uint16 {
	low := p.Transparent
	for _, port := range []uint16{p.HTTP, p.SOCKS, p.DNS} {
		if port != 0 && port < low {
			low = port
		}
	}
	return low
}

// tune sets this namespace's sysctls (/proc/sys/net is the opening
// thread's namespace's: this one):
//   - the first privileged port is lowered to low, so the daemon binds its
//     endpoints (DNS on 53) without CAP_NET_BIND_SERVICE, which the
//     service unit does not grant; binding 53-1023 in a namespace of its
//     own, where execgate's ports are taken first, gives the run nothing;
//   - TCP congestion control is reno: every connection here ends on
//     loopback, where a pacing default (bbr) would make each of the run's
//     sends wait for a timer and halve an upload through execgate.
func tune(low uint16) error {
	if low < 1024 {
		if err := os.WriteFile("/proc/sys/net/ipv4/ip_unprivileged_port_start", []byte(strconv.Itoa(int(low))), 0); err != nil {
			return err
		}
	}
	return os.WriteFile("/proc/sys/net/ipv4/tcp_congestion_control", []byte("reno"), 0)
}

func loUp(h *netlink.Handle) error {
	lo, err := h.LinkByName("lo")
	if err != nil {
		return err
	}
	return h.LinkSetUp(lo)
}

// addDummy creates the black-hole interface, down and without addresses:
// a dummy, or where the kernel has no dummy driver (CONFIG_DUMMY=n, as on
// the kernel this was written on) an ifb, which with no tc redirect in
// front of it likewise counts and discards every packet it is given.
func addDummy(h *netlink.Handle) (netlink.Link, error) {
	attrs := netlink.NewLinkAttrs()
	attrs.Name = DummyName
	err := h.LinkAdd(&netlink.Dummy{LinkAttrs: attrs})
	if errors.Is(err, unix.EOPNOTSUPP) {
		err = h.LinkAdd(&netlink.Ifb{LinkAttrs: attrs})
	}
	if err != nil {
		return nil, err
	}
	return h.LinkByName(DummyName)
}

// routeOut gives the dummy its addresses, brings it up and makes it the
// default route for IPv4 and IPv6.
func routeOut(h *netlink.Handle, dummy netlink.Link) error {
	if err := h.AddrAdd(dummy, &netlink.Addr{IPNet: DummyAddr4}); err != nil {
		return fmt.Errorf("address %s: %w", DummyAddr4, err)
	}
	// No duplicate address detection: a tentative address could not be a
	// source, and there is no one on a dummy link to collide with.
	if err := h.AddrAdd(dummy, &netlink.Addr{IPNet: DummyAddr6, Flags: unix.IFA_F_NODAD}); err != nil {
		return fmt.Errorf("address %s: %w", DummyAddr6, err)
	}
	if err := h.LinkSetUp(dummy); err != nil {
		return fmt.Errorf("link up: %w", err)
	}
	for _, r := range []*netlink.Route{
		{LinkIndex: dummy.Attrs().Index, Family: unix.AF_INET, Scope: netlink.SCOPE_LINK,
			Dst: &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}},
		{LinkIndex: dummy.Attrs().Index, Family: unix.AF_INET6,
			Dst: &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}},
	} {
		if err := failpoint(fmt.Sprintf("route family %d", r.Family)); err != nil {
			return err
		}
		if err := h.RouteAdd(r); err != nil {
			return fmt.Errorf("default route %s: %w", r.Dst, err)
		}
	}
	return nil
}
