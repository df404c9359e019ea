package policy

import (
	"fmt"
	"net/netip"
	"strconv"

	"github.com/execgate/execgate/profiles"
)

// ConnectVerdict is the decision for one connection (DecideConnect) or for
// the address it would dial (CheckAddr).
type ConnectVerdict struct {
	Dest     profiles.Dest // the host, normalised; zero when it was invalid
	Host     string        // the host as given
	Port     uint16
	Addr     netip.Addr // CheckAddr: the address checked
	Decision Decision
	Rule     profiles.Loc // the rule or setting that decided
	Match    string       // the rule's pattern, or the private_ok entry
	Reason   string
	By       *profiles.ConnectRule // the rule that decided, if a rule did
	// Miss: no rule matched, and the connection is denied for that.
	Miss bool
	// Class is CheckAddr's classification of Addr (Public for an ordinary
	// address).
	Class AddrClass
}

// Target is the destination as HOST:PORT, IPv6 in brackets.
func (v *ConnectVerdict) Target() string {
	h := v.Dest.String()
	if h == "" {
		h = v.Host
	}
	return h + ":" + strconv.Itoa(int(v.Port))
}

// Line is the verdict in the shape of Result.Line:
// "backboard.railway.app:443: reason (flow.toml:52)".
func (v *ConnectVerdict) Line() string {
	return fmt.Sprintf("%s: %s (%s)", v.Target(), v.Reason, v.Rule)
}

// DecideConnect decides a connection to host:port against p: the profile's
// network mode first, then its [[connect]] rules (MatchConnect). host is a
// name or an IP literal as a client gives it (IPv6 with or without
// brackets); names are matched case-insensitively without a trailing dot,
// and a non-ASCII name is denied (clients send the xn-- form).
func DecideConnect(p *profiles.Profile, host string, port uint16) ConnectVerdict {
	v := ConnectVerdict{Host: host, Port: port, Decision: profiles.Deny, Rule: profiles.Loc{File: p.File}}
	d, err := profiles.ParseDest(host)
	if err != nil {
		v.Reason = "bad destination: " + err.Error()
		return v
	}
	v.Dest = d
	switch {
	case port == 0:
		v.Reason = "bad destination: port 0"
		return v
	case p.Security == profiles.SecurityDeny:
		v.Rule, v.Reason = p.SecurityLoc, "security = \"deny\": this agent may not run commands"
		return v
	case p.Network == profiles.NetworkNone:
		v.Rule, v.Reason = p.LocOf(profiles.KeyNetworkMode), "network.mode = \"none\": runs of this agent have no network"
		return v
	case p.Network == profiles.NetworkHost:
		v.Decision, v.Rule = profiles.Allow, p.LocOf(profiles.KeyNetworkMode)
		v.Reason = "network.mode = \"host\": runs use the host's network, and connections are not checked"
		return v
	}
	return MatchConnect(p, d, port)
}

// MatchConnect applies p's [[connect]] rules to a normalised destination,
// whatever the profile's network mode: deny > ask > allow, and a
// connection no rule allows is denied. Address patterns match only IP
// literal destinations, and name patterns only names.
func MatchConnect(p *profiles.Profile, d profiles.Dest, port uint16) ConnectVerdict {
	v := ConnectVerdict{Dest: d, Host: d.String(), Port: port}
	var yes [3]*profiles.ConnectRule // indexed by rank
	for i := range p.Connect {
		r := &p.Connect[i]
		if k := rank(r.Action); yes[k] == nil && r.Pattern.Match(d, port) {
			yes[k] = r
		}
	}
	for k := 2; k >= 0; k-- {
		if r := yes[k]; r != nil {
			v.Decision, v.Rule, v.Match, v.Reason, v.By = r.Action, r.Loc, r.Match, r.Reason, r
			if v.Reason == "" {
				v.Reason = fmt.Sprintf("matches connect %s rule %q", r.Action, r.Match)
			}
			return v
		}
	}
	v.Decision, v.Miss, v.Rule = profiles.Deny, true, p.LocOf(profiles.KeyNetworkMode)
	v.Reason = "no [[connect]] rule allows " + v.Target()
	if d.Addr.IsValid() {
		v.Reason += " (an address is reached only through a rule that names it, like \"" + d.String() + ":" + strconv.Itoa(int(port)) + "\")"
	}
	return v
}

// CheckAddr decides the address a connection would dial, after execgate
// has resolved the name itself (and before it dials that same address,
// so a changed DNS answer cannot redirect it):
//   - a [[connect]] deny rule naming the address (or a CIDR around it) and
//     port denies it;
//   - a public address is allowed;
//   - multicast, unspecified and broadcast addresses are always denied;
//   - a cloud metadata address is allowed only by an allow or ask rule or
//     a private_ok entry naming exactly that address;
//   - a loopback, private, link-local, CGNAT or reserved address is
//     allowed by an allow or ask rule whose address or CIDR contains it,
//     or by a private_ok entry (privateOK may be nil) that contains it.
//
// IPv4-mapped IPv6 addresses are checked as their IPv4 address.
func CheckAddr(p *profiles.Profile, privateOK *profiles.PrefixList, addr netip.Addr, port uint16) ConnectVerdict {
	v := ConnectVerdict{Port: port, Decision: profiles.Deny, Rule: p.LocOf(profiles.KeyNetworkMode)}
	if !addr.IsValid() {
		v.Reason = "no address to dial"
		return v
	}
	a := addr.WithZone("").Unmap()
	v.Addr, v.Dest, v.Host = a, profiles.Dest{Addr: a}, a.String()
	v.Class = ClassifyAddr(a)
	named := func(r *profiles.ConnectRule) bool {
		if v.Class == Metadata {
			return r.Pattern.NamesAddr(a, port)
		}
		return r.Pattern.Match(v.Dest, port)
	}
	var opener *profiles.ConnectRule
	for i := range p.Connect {
		r := &p.Connect[i]
		switch {
		case r.Action == profiles.Deny && r.Pattern.Match(v.Dest, port):
			v.Rule, v.Match, v.Reason, v.By = r.Loc, r.Match, r.Reason, r
			if v.Reason == "" {
				v.Reason = fmt.Sprintf("%s matches connect deny rule %q", a, r.Match)
			}
			return v
		case opener == nil && r.Action != profiles.Deny && named(r):
			opener = r
		}
	}
	return openAddr(v, opener, privateOK)
}

// openAddr finishes CheckAddr for an address no deny rule names.
func openAddr(v ConnectVerdict, opener *profiles.ConnectRule, privateOK *profiles.PrefixList) ConnectVerdict {
	a, what := v.Addr, fmt.Sprintf("%s is a %s address", v.Addr, v.Class)
	switch {
	case v.Class == Public:
		v.Decision, v.Reason = profiles.Allow, "a public address"
		return v
	case !v.Class.Exemptable():
		v.Reason = what + ": never a destination"
		return v
	case opener != nil:
		v.Decision, v.Rule, v.Match, v.By = profiles.Allow, opener.Loc, opener.Match, opener
		v.Reason = fmt.Sprintf("%s, and connect %s rule %q names it", what, opener.Action, opener.Match)
		return v
	}
	if privateOK != nil {
		var loc profiles.Loc
		var pfx netip.Prefix
		ok := false
		if v.Class == Metadata {
			loc, ok = privateOK.Names(a)
			pfx = netip.PrefixFrom(a, a.BitLen())
		} else {
			pfx, loc, ok = privateOK.Lookup(a)
		}
		if ok {
			v.Decision, v.Rule, v.Match = profiles.Allow, loc, pfx.String()
			v.Reason = fmt.Sprintf("%s, listed in private_ok (%s)", what, pfx)
			return v
		}
	}
	if v.Class == Metadata {
		v.Reason = what + ": refused unless a [[connect]] rule or a private_ok entry names exactly this address"
	} else {
		v.Reason = what + ": refused unless a [[connect]] rule names it or execgate.toml lists it in [network] private_ok"
	}
	return v
}
