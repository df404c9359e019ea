// Package policy decides a script against an agent's profile: it parses the
// script with shellparse, matches every invocation with the profile's rules
// and [files] lists, and combines the results (deny > ask > allow; one
// denied invocation denies the script).
//
// The same per-invocation function serves the static layer (the whole
// script, before anything runs) and the runtime exec check (one execve), so
// the two layers cannot drift apart.
//
// Connections are decided the same way: DecideConnect applies the network
// mode and the [[connect]] rules (deny > ask > allow, a miss is denied),
// and CheckAddr decides the address execgate resolved before it dials it
// (loopback, private, link-local, CGNAT, metadata ... refused unless a
// rule names the address or private_ok lists it; see ClassifyAddr).
package policy
