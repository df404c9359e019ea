// Package egress is execgate's egress proxy for network.mode = "proxy":
// the only way out of a run's network namespace.
//
// One Proxy serves one run. It has three front ends, all decided the
// same way:
//
//   - ServeHTTP: an HTTP proxy (CONNECT, and absolute-form http://
//     requests, forwarded with Connection: close) for HTTP_PROXY and
//     HTTPS_PROXY. A refusal is a 403 whose body gives the reason and rule.
//   - ServeSOCKS5: SOCKS5 CONNECT without authentication, by name or IP
//     literal, for ALL_PROXY. A refusal is reply 0x02.
//   - ServeTransparent: TCP connections the namespace's NAT rules
//     redirect to it, decided by their SO_ORIGINAL_DST. A refusal is a
//     reset.
//
// DNS is the run's resolver. It answers every A/AAAA query with an address
// from a synthetic range (Names: 198.18.0.0/15 and a ULA /64), so a client
// that ignores the proxy variables still connects to an address execgate
// maps back to the name. It never forwards a query.
//
// For each connection the proxy: applies the limits (MaxConns,
// MaxEgressBytes), maps a synthetic address back to its name, asks the
// Decider about HOST:PORT (an Asker holds ask verdicts), resolves the name
// once on the host side, refuses unless every address passes CheckAddr,
// dials only the checked addresses (a changed DNS answer cannot redirect
// it), and relays bytes both ways (kernel splice), counting them. Each
// connection yields a "connect" Event and, once established, a
// "disconnect" Event with byte counts and duration, for the journal.
//
// What puts the run behind it (the netns and its routes, the nftables
// redirect, resolv.conf and hosts, the proxy variables) is
// supervisor/sandbox and its netcapture; the daemon's Decider, Asker and
// journal records are supervisor/connect.go.
//
// Decisions worth keeping: any refused address among a name's answers
// refuses the connection (a mixed answer is a rebinding smell); the
// unspecified, zoned and synthetic addresses are refused whatever the
// Decider says; egress bytes count run to destination only, and the
// budget is reserved in chunks only once the run has data to send;
// loopback legs use reno, since a pacing default (bbr) halves a relay.
package egress
