package supervisor

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/execgate/execgate/api"
	"github.com/execgate/execgate/audit"
	"github.com/execgate/execgate/policy"
	"github.com/execgate/execgate/profiles"
	"github.com/execgate/execgate/supervisor/egress"
	"github.com/execgate/execgate/supervisor/sandbox/netcapture"
)

// runEgress is one proxy-mode run's network: the egress proxy and DNS
// serving the endpoints in the run's namespace, deciding by the run's
// profile and journaling every connection with the run's id. It is the
// sandbox's Egress and the proxy's Decider and Asker.
type runEgress struct {
	s     *Server
	ri    *reqInfo
	req   api.ExecRequest
	out   *eventStream
	proxy *egress.Proxy
	dns   *egress.DNS

	mu      sync.Mutex
	ep      *netcapture.Endpoints
	servers []func() // stop the DNS servers
	wg      sync.WaitGroup
}

// newEgress makes the egress of a run of ri's profile.
func (s *Server) newEgress(ri *reqInfo, req api.ExecRequest, out *eventStream) (*runEgress, error) {
	names, err := egress.NewNames(egress.DefaultV4, egress.DefaultV6, 0)
	if err != nil {
		return nil, err
	}
	e := &runEgress{s: s, ri: ri, req: req, out: out, dns: &egress.DNS{Names: names}}
	e.proxy, err = egress.New(egress.Config{
		Decider: e, Asker: e, Resolver: s.hostResolver(), Names: names, OnEvent: e.record,
		MaxConns: ri.prof.Limits.Connections, MaxEgressBytes: ri.prof.Limits.EgressBytes,
		ConnsRule:  ri.prof.LocOf(profiles.KeyConnections).String(),
		EgressRule: ri.prof.LocOf(profiles.KeyEgressBytes).String(),
		OwnRule:    ri.prof.LocOf(profiles.KeyNetworkMode).String(),
	})
	if err != nil {
		return nil, err
	}
	return e, nil
}

// hostResolver is what the daemon resolves allowed names with: the host's
// resolver, or only the server execgate.toml's [network] resolver names.
func (s *Server) hostResolver() egress.Resolver {
	if !s.cfg.Resolver.IsValid() {
		return net.DefaultResolver
	}
	addr := s.cfg.Resolver.String()
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}}
}

// Serve serves the run's endpoints (sandbox.Egress).
func (e *runEgress) Serve(ep *netcapture.Endpoints) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.ep = ep
	serve := func(f func() error) {
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			// Each ends when Close closes its socket; that error is the
			// normal end.
			_ = f()
		}()
	}
	for _, ln := range ep.Transparent {
		serve(func() error { return e.proxy.ServeTransparent(ln) })
	}
	serve(func() error { return e.proxy.ServeHTTP(ep.HTTP) })
	serve(func() error { return e.proxy.ServeSOCKS5(ep.SOCKS) })
	serve(func() error { return e.dns.Serve(ep.DNS) })
	serve(func() error { return e.dns.ServeTCP(ep.DNSTCP) })
	return nil
}

// Close stops serving once the run has ended: open connections are cut
// (their disconnect records are written) and every endpoint is closed.
func (e *runEgress) Close() {
	_ = e.proxy.Close() // always nil; waits for the relays
	e.mu.Lock()
	if e.ep != nil {
		_ = e.ep.Close() // the DNS sockets; the proxy closed its own
	}
	e.mu.Unlock()
	e.wg.Wait()
}

// Decide decides a destination by the run's profile. A switch thrown
// during the run refuses every new connection.
func (e *runEgress) Decide(_ context.Context, host string, port uint16) egress.Verdict {
	if why := e.s.switches.refusal(e.ri.prof.Name); why != "" {
		return egress.Verdict{Action: egress.Deny, Rule: e.s.switchLoc().String(), Reason: why}
	}
	v := policy.DecideConnect(e.ri.prof, host, port)
	return egress.Verdict{Action: egressAction(v.Decision), Rule: v.Rule.String(), Reason: v.Reason}
}

func egressAction(d policy.Decision) egress.Action {
	switch d {
	case profiles.Allow:
		return egress.Allow
	case profiles.Ask:
		return egress.Ask
	}
	return egress.Deny
}

// CheckAddr checks an address an allowed name resolved to (or a literal).
func (e *runEgress) CheckAddr(_ string, ip netip.Addr, port uint16) error {
	v := policy.CheckAddr(e.ri.prof, &e.s.cfg.PrivateOK, ip, port)
	if v.Decision == profiles.Allow {
		return nil
	}
	return &egress.RuleError{Rule: v.Rule.String(), Reason: v.Reason}
}

// Ask holds a connection that asks while a human decides, as an exec
// that asks is held; the pending approval names the destination.
func (e *runEgress) Ask(ctx context.Context, host string, port uint16, v egress.Verdict) egress.Verdict {
	dest := net.JoinHostPort(host, strconv.Itoa(int(port)))
	rule := policy.DecideConnect(e.ri.prof, host, port).Rule // the Loc of v.Rule
	asks := []asked{{argv: []string{"connect", dest}, what: "connect"}}
	h, err := e.s.askHuman(ctx, e.ri, e.req, asks, rule, v.Reason, true, func(a api.Approval) {
		e.out.tell(api.Event{Event: api.EventPending, ID: a.ID, Invocation: "connect " + dest, Rule: v.Rule, Reason: v.Reason})
	})
	if err == nil && h.state == approved {
		return egress.Verdict{Action: egress.Allow, Rule: v.Rule, Reason: h.reason}
	}
	return egress.Verdict{Action: egress.Deny, Rule: v.Rule, Reason: h.state.String() + ": " + h.reason}
}

// record journals a connection event. The connect record of an allowed
// connection gates it: unrecorded, the proxy cuts it before any byte goes.
// A refusal is told to the client's stream too.
func (e *runEgress) record(ev egress.Event) error {
	rec := connectRecord(e.ri, ev)
	if ev.Kind != "connect" {
		e.s.note(rec)
		return nil
	}
	if err := e.s.record(rec); err != nil {
		e.s.logf("audit: %v: refusing a connection of run %s", err, e.ri.id)
		return fmt.Errorf("audit: %w", err)
	}
	if ev.Decision != egress.Allow {
		e.out.tell(api.Event{Event: api.EventDenied, ID: e.ri.id, Invocation: "connect " + destOf(ev), Rule: ev.Rule, Reason: ev.Reason})
	}
	return nil
}

func destOf(ev egress.Event) string {
	if ev.Host == "" {
		return "?"
	}
	return net.JoinHostPort(ev.Host, strconv.Itoa(int(ev.Port)))
}

// connectRecord is the journal record of a connect or disconnect event.
func connectRecord(ri *reqInfo, ev egress.Event) *audit.Record {
	dest := destOf(ev)
	decision := ev.Decision.String()
	var rec *audit.Record
	if ev.Kind == "connect" {
		pri, msg := audit.PriInfo, "CONNECT "+dest
		switch {
		case ev.Decision != egress.Allow:
			pri, msg = audit.PriWarning, fmt.Sprintf("CONNECT DENY %s (%s: %s)", dest, ev.Rule, ev.Reason)
		case ev.Err != "":
			pri, msg = audit.PriWarning, fmt.Sprintf("CONNECT %s failed: %s", dest, ev.Err)
		default:
			msg += fmt.Sprintf(" via %s (%s)", ev.Addr, ev.Rule)
		}
		argv, _ := json.Marshal([]string{"connect", dest})
		rec = ri.record(audit.EventConnect, pri, msg).Set(audit.FieldDecision, decision).Set(audit.FieldArgv, string(argv))
	} else {
		rec = ri.record(audit.EventDisconnect, audit.PriInfo, fmt.Sprintf("DISCONNECT %s out %d in %d bytes in %s",
			dest, ev.BytesOut, ev.BytesIn, ev.Duration.Round(time.Millisecond))).
			SetInt(audit.FieldBytesOut, ev.BytesOut).SetInt(audit.FieldBytesIn, ev.BytesIn).
			SetInt(audit.FieldDurationMS, ev.DurationMS())
	}
	rec.Set(audit.FieldHost, ev.Host).Set(audit.FieldProto, ev.Proto).Set(audit.FieldRule, ev.Rule).
		Set(audit.FieldReason, ev.Reason).Set(audit.FieldError, ev.Err)
	if ev.Port != 0 {
		rec.SetInt(audit.FieldPort, int64(ev.Port))
	}
	if ev.Addr.IsValid() {
		rec.Set(audit.FieldAddr, ev.Addr.String())
	}
	if ev.Client.IsValid() {
		rec.Set(audit.FieldClient, ev.Client.String())
	}
	return rec
}
