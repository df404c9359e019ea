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
// The package knows nothing of shells, sockets or the daemon.
package profiles
