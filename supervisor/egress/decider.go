package egress

import (
	"context"
	"net/netip"
)

// Action is a connection decision.
type Action int

// The actions, as policy's [[connect]] rules name them.
const (
	Deny Action = iota // the zero value, so a missing decision refuses
	Allow
	Ask
)

func (a Action) String() string {
	switch a {
	case Allow:
		return "allow"
	case Ask:
		return "ask"
	default:
		return "deny"
	}
}

// Verdict is what a Decider says about one destination.
type Verdict struct {
	Action Action
	Rule   string // file:line of the deciding rule, "" when none matched
	Reason string
}

// Decider decides destinations. policy's [[connect]] rules implement it
// (through a small adapter in the daemon); tests use fakes.
type Decider interface {
	// Decide decides HOST:PORT by name. host is a lower-case name without
	// a trailing dot, or an IP literal (IPv6 without brackets).
	Decide(ctx context.Context, host string, port uint16) Verdict
	// CheckAddr is called for every address host resolved to (or the
	// literal itself) before anything is dialled. A non-nil error refuses
	// the connection with its text as the reason (loopback, private,
	// link-local, CGNAT, multicast, metadata unless named or private_ok).
	CheckAddr(host string, ip netip.Addr, port uint16) error
}

// Asker holds an ask verdict until a human decides it. It returns the
// final verdict (Allow or Deny). Without an Asker, ask is refused.
type Asker interface {
	Ask(ctx context.Context, host string, port uint16, v Verdict) Verdict
}

// Resolver resolves names on the host side. *net.Resolver implements it.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// RuleError is a CheckAddr refusal that names the rule or setting that
// decided it, so the connection's record cites it rather than the rule that
// allowed the name.
type RuleError struct {
	Rule   string // file:line
	Reason string
}

func (e *RuleError) Error() string { return e.Reason }
