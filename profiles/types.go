package profiles

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/execgate/execgate/pathglob"
)

// The enumerated settings are named string types: a comparison with a
// literal (p.Network == "host") still compiles, but callers use the
// constants, and each type validates and prints itself.

// Action is what a rule does when it matches.
type Action string

const (
	Allow Action = "allow"
	Ask   Action = "ask"
	Deny  Action = "deny"
)

func (a Action) String() string { return string(a) }

// Security is a profile's mode.
type Security string

const (
	SecurityDeny      Security = "deny"      // nothing runs
	SecurityAllowlist Security = "allowlist" // only what an allow rule matches
	SecurityFull      Security = "full"      // everything but what a deny rule matches
)

func (s Security) String() string { return string(s) }

// AskMode says when a request waits for a human.
type AskMode string

const (
	AskOff    AskMode = "off"
	AskOnMiss AskMode = "on-miss" // allowlist misses ask instead of failing
	AskAlways AskMode = "always"  // every request asks
)

func (a AskMode) String() string { return string(a) }

// NetworkMode is [network] mode: what network a run sees.
type NetworkMode string

const (
	NetworkNone NetworkMode = "none" // an empty network namespace (the default)
	NetworkHost NetworkMode = "host" // the host's network
	// NetworkProxy: only the destinations [[connect]] rules allow, through
	// execgate's egress proxy; package policy decides them (DecideConnect,
	// then CheckAddr on each address the name resolves to).
	NetworkProxy NetworkMode = "proxy"
)

func (n NetworkMode) String() string { return string(n) }

// AuditScript is [audit] script: how much of a script the journal keeps.
type AuditScript string

const (
	AuditScriptFull AuditScript = "full" // the whole script (the default)
	// AuditScriptSHA256 keeps the script's hash, and only the program of
	// each allowed invocation.
	AuditScriptSHA256 AuditScript = "sha256"
)

func (a AuditScript) String() string { return string(a) }

// ChangesMode is [changes] mode: whether what a run writes lands at once.
type ChangesMode string

const (
	ChangesDirect ChangesMode = "direct" // writes reach the real tree as they happen (the default)
	// ChangesReview: the run writes into a copy-on-write layer over each
	// workdir; at exit the change set is applied at once when within every
	// cap and outside protect, else held for a human.
	ChangesReview ChangesMode = "review"
	ChangesDryRun ChangesMode = "dry-run" // the change set is computed and reported, never applied
)

func (c ChangesMode) String() string { return string(c) }

// Changes is the profile's [changes] table. Caps are per run; a zero
// MaxFiles or MaxBytes is no cap. Caps apply in review and dry-run mode
// (where the change set exists); Protect applies in every mode (in direct
// mode as a read_only-style guard on the protected paths that exist).
type Changes struct {
	Mode     ChangesMode
	MaxFiles int // paths created, modified or deleted; 0: no cap
	// MaxDeleted caps deleted paths when HasMaxDeleted: max_deleted = 0
	// means no deletion without review. Without HasMaxDeleted there is no
	// cap (MaxDeleted is 0).
	MaxDeleted    int
	HasMaxDeleted bool
	MaxBytes      int64 // bytes of created and modified files; 0: no cap
	// Protect are the patterns under which any change needs a human, with
	// the syntax of [files] deny_read: absolute, ~/..., or floating (a
	// relative pattern such as "**/.git/**" or "backups/**" matches at any
	// depth, so under every workdir). Defaults' and profile's add up. Set
	// is compiled at parse time and again, against the agent's home, by
	// Resolve.
	Protect PathList
}

// Protected reports whether abs, or one of its ancestors, matches a
// protect pattern, and returns the first such pattern as written.
// Relative paths never match.
func (c *Changes) Protected(abs string) (pattern string, hit bool) {
	if c == nil || c.Protect.Set == nil {
		return "", false
	}
	return c.Protect.Set.Match(abs)
}

// Capped reports whether any of max_files, max_deleted or max_bytes is set.
func (c *Changes) Capped() bool {
	return c.MaxFiles > 0 || c.HasMaxDeleted || c.MaxBytes > 0
}

// NestedMode is a rule's nested key.
type NestedMode string

const (
	NestedRules NestedMode = "rules" // programs the command starts meet the rules (the default)
	NestedAny   NestedMode = "any"   // they are allowed unless a deny or ask rule matches
)

func (n NestedMode) String() string { return string(n) }

// Loc is a place in a profile or config file.
type Loc struct {
	File string
	Line int
}

// String gives the short "flow.toml:14" form used in journal records.
func (l Loc) String() string {
	if l.File == "" {
		return ""
	}
	if l.Line <= 0 {
		return filepath.Base(l.File)
	}
	return fmt.Sprintf("%s:%d", filepath.Base(l.File), l.Line)
}

// Rule is one [[rule]] table.
type Rule struct {
	Match  string
	Action Action
	Reason string
	// NestedAny: every program the matched command starts, at any depth,
	// is allowed unless a deny or ask rule matches it (nested = "any",
	// NestedAny).
	NestedAny bool
	// Remembered: an admin approved exactly this before (approve
	// --remember). It beats ask rules; deny rules still beat it.
	Remembered bool
	// Cwd, when set (remembered approvals), limits the rule to commands
	// run in that working directory.
	Cwd     string
	Loc     Loc
	Pattern *Pattern
}

// PathList is a [files] list compiled for one agent's home.
type PathList struct {
	Patterns []string
	Locs     []Loc // where each pattern was written (profile or defaults)
	Set      *pathglob.Set
}

// LocOf returns where pattern was written.
func (l *PathList) LocOf(pattern string) Loc {
	for i, p := range l.Patterns {
		if p == pattern {
			return l.Locs[i]
		}
	}
	return Loc{}
}

// Limits are the per-run and per-agent resource caps. A zero value means
// "no limit".
type Limits struct {
	Timeout    time.Duration
	Memory     int64 // bytes
	Pids       int64
	CPU        float64 // cores
	Output     int64   // bytes per stream
	Concurrent int
	PerMinute  int // requests per rolling minute
	PerDay     int // requests per rolling 24 hours
	// Programs started inside runs (nested execs), counted apart from
	// requests: a build runs hundreds.
	ExecsPerMinute int
	ExecsPerDay    int
	// Connections caps a run's concurrent connections and EgressBytes the
	// bytes it may send out (limits.connections, limits.egress_bytes). They
	// load in every network mode and apply in network.mode = "proxy".
	Connections int
	EgressBytes int64 // bytes
}

// Profile is one agent's loaded, validated profile with defaults applied.
type Profile struct {
	Name   string // the file's base name without .toml
	File   string
	SHA256 string // of the profile file's bytes

	User string // account name, "" when given by uid
	UID  int64  // -1 until known
	GID  int64  // the account's primary group, -1 until known
	Home string // the account's home; a path that matches nothing when unknown

	Security Security
	Ask      AskMode
	Workdirs []string
	Shell    string // runs the script: /bin/bash unless the profile says

	Rules []Rule // defaults' rules first, then the profile's
	// Connect are the [[connect]] rules, defaults' first. They decide
	// connections in network.mode = "proxy" (policy.DecideConnect).
	Connect []ConnectRule
	// NestedAllow are allow patterns for programs started by an allowed
	// command (npm's sh -c, make's cc), never for the script's own
	// commands; deny rules still win.
	NestedAllow []Rule
	DenyRead    PathList
	ReadOnly    PathList

	Limits   Limits
	EnvPass  []string
	Network  NetworkMode
	Schedule *Schedule
	Audit    AuditOptions
	Changes  Changes

	// SecurityLoc and AskLoc say where the mode was set, for reasons.
	SecurityLoc, AskLoc Loc
	// Locs says where other settings were written (KeyPerMinute,
	// KeyScheduleWindows), in the profile or in execgate.toml's defaults.
	Locs map[string]Loc
}

// LocOf returns where a setting such as KeyConcurrent was written, or the
// profile file when it was not written (a built-in default). key must be
// one of Keys: any other key is a programming error that would silently
// lose the file:line, so in a test binary LocOf panics on it (the daemon
// itself falls back to the profile file).
func (p *Profile) LocOf(key string) Loc {
	if l, ok := p.Locs[key]; ok {
		return l
	}
	if !KnownKey(key) && testing.Testing() {
		panic(fmt.Sprintf("profiles: LocOf(%q): not a setting the loader records (see profiles.Keys)", key))
	}
	return Loc{File: p.File}
}

// AuditOptions is the profile's [audit] table.
type AuditOptions struct {
	Script AuditScript
}
