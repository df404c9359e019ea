package egress

import (
	"errors"
	"net/netip"
	"strings"
)

var errBadHost = errors.New("not a valid host name or IP literal")

// normHost normalises a requested host: an IP literal (IPv6 with or
// without brackets, no zone; IPv4-mapped IPv6 is unmapped) comes back as
// lit, a name lower-cased without its trailing dot.
func normHost(s string) (host string, lit netip.Addr, err error) {
	if b, ok := strings.CutPrefix(s, "["); ok {
		v, ok := strings.CutSuffix(b, "]")
		ip, perr := netip.ParseAddr(v)
		if !ok || perr != nil || !ip.Is6() || ip.Zone() != "" {
			return "", netip.Addr{}, errBadHost
		}
		ip = ip.Unmap()
		return ip.String(), ip, nil
	}
	if ip, perr := netip.ParseAddr(s); perr == nil {
		if ip.Zone() != "" {
			return "", netip.Addr{}, errBadHost
		}
		ip = ip.Unmap()
		return ip.String(), ip, nil
	}
	name := strings.TrimSuffix(strings.ToLower(s), ".")
	if !validName(name) {
		return "", netip.Addr{}, errBadHost
	}
	return name, netip.Addr{}, nil
}

// validName accepts a lower-case DNS host name: labels of 1-63 of
// [a-z0-9_-], not starting or ending with '-', 253 bytes at most. A name
// whose labels are all numbers (decimal, octal or 0x-hex) is refused:
// inet_aton would read "2130706433" or "0x7f.1" as 127.0.0.1, so such a
// name must never reach a host-side resolver as a "name".
func validName(name string) bool {
	if len(name) == 0 || len(name) > 253 {
		return false
	}
	numeric := true
	for _, l := range strings.Split(name, ".") {
		if len(l) == 0 || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
		numeric = numeric && isNumberLabel(l)
	}
	return !numeric
}

func isNumberLabel(l string) bool {
	if h, ok := strings.CutPrefix(l, "0x"); ok {
		return strings.Trim(h, "0123456789abcdef") == ""
	}
	return strings.Trim(l, "0123456789") == ""
}
