// Package profiles reads, validates and matches execgate agent profiles.
//
// A profile is one TOML file per agent (/etc/execgate/agents/NAME.toml); the
// daemon-wide execgate.toml supplies a [defaults] table that every profile
// inherits. Loading is strict: unknown keys, bad enums, durations, sizes,
// schedules and patterns are errors that name file:line.
//
// Rule patterns are matched against a normalised argv (see Pattern). Matching
// is three-valued, because a word such as $X or $(cmd) is not known until the
// command runs: a pattern matches Yes, No or Maybe, and the caller (package
// policy) decides what Maybe means for the rule's action.
//
// [[connect]] rules compile to ConnectPattern (HOST:PORT: names, *.domain,
// {a,b}, IP literals and CIDRs, a port or *), and ParseDest normalises a
// destination for matching; package policy decides connections with them.
// execgate.toml's [network] private_ok is Config.PrivateOK, and its
// [network] resolver (the DNS server the daemon asks for allowed names)
// is Config.Resolver.
//
// Enumerated settings are named string types with constants (Security,
// AskMode, NetworkMode, AuditScript, NestedMode), and the settings whose
// place is cited in reasons have Key constants for LocOf: callers use
// those, never literals.
//
// Accounts are looked up through an Accounts function the caller chooses:
// Loader.Accounts and Profile.ResolveWith take one, and the package-level
// LoadFile, LoadDir and Resolve use HostAccounts. Tests pass
// FixedAccounts, so that what they decide never depends on the accounts of
// the machine they run on.
//
// The package knows nothing of shells, sockets or the daemon.
package profiles
