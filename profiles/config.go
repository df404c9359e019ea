package profiles

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"time"
)

// Config is the daemon-wide execgate.toml.
type Config struct {
	File            string
	AgentsDir       string
	RunDir          string
	StateDir        string
	AgentSocket     string
	AdminSocket     string
	Audit           string // "journal", "file:PATH" or "auto"
	AdminUIDs       []uint32
	AdminGroups     []string
	ApprovalTimeout time.Duration
	ApprovalCommand []string
	// AllowDegraded lets the daemon start without the kernel exec check
	// (no seccomp user notification): it then runs on the static layer
	// and the sandbox alone, and says so on every start and in status.
	AllowDegraded bool
	// PrivateOK is [network] private_ok: the loopback, private, link-local
	// or CGNAT addresses and CIDRs an allowed connection may reach (a
	// site's internal registry, a test's own hosts). A metadata address
	// is reached only when an entry is exactly that address.
	PrivateOK PrefixList
	// Resolver is [network] resolver: the DNS server (an IP address and
	// port) the daemon asks when it resolves an allowed name on the host
	// side. The zero value means the host's /etc/resolv.conf.
	Resolver netip.AddrPort
	// ResolverLoc is where resolver was set (the zero Loc when it was not).
	ResolverLoc Loc
	Defaults    *Defaults
}

// Defaults is the [defaults] table every profile inherits.
type Defaults struct {
	raw rawProfile
	f   *file
}

type rawConfig struct {
	AgentsDir       *string  `toml:"agents_dir"`
	RunDir          *string  `toml:"run_dir"`
	StateDir        *string  `toml:"state_dir"`
	AgentSocket     *string  `toml:"agent_socket"`
	AdminSocket     *string  `toml:"admin_socket"`
	Audit           *string  `toml:"audit"`
	AdminUIDs       []int64  `toml:"admin_uids"`
	AdminGroups     []string `toml:"admin_groups"`
	ApprovalTimeout *string  `toml:"approval_timeout"`
	ApprovalCommand []string `toml:"approval_command"`
	AllowDegraded   bool     `toml:"allow_degraded"`
	Network         struct {
		PrivateOK []string `toml:"private_ok"`
		Resolver  *string  `toml:"resolver"`
	} `toml:"network"`
	Defaults rawProfile `toml:"defaults"`
}

// Default paths, as installed by `make install` and the systemd units.
const (
	DefaultConfigFile = "/etc/execgate/execgate.toml"
	DefaultAgentsDir  = "/etc/execgate/agents"
	DefaultRunDir     = "/run/execgate"
	DefaultStateDir   = "/var/lib/execgate"
)

// DefaultConfig is what the daemon uses when there is no execgate.toml.
func DefaultConfig() *Config {
	c, err := ParseConfig("(built-in)", nil)
	if err != nil {
		panic(err) // the empty document is valid
	}
	return c
}

// ParseConfig validates an execgate.toml. The [defaults] table is checked by
// loading it as a profile, so its errors are found before any agent needs it.
func ParseConfig(name string, data []byte) (*Config, error) {
	f := &file{name: name, data: data}
	var raw rawConfig
	if !f.decode(&raw) {
		return nil, f.errs
	}
	c := &Config{
		File:            name,
		AgentsDir:       DefaultAgentsDir,
		RunDir:          DefaultRunDir,
		StateDir:        DefaultStateDir,
		Audit:           "auto",
		AdminGroups:     []string{"execgate-admin"},
		ApprovalTimeout: 5 * time.Minute,
		AllowDegraded:   raw.AllowDegraded,
		Defaults:        &Defaults{raw: raw.Defaults, f: f},
	}
	applyPaths(f, &raw, c)
	if c.AgentSocket == "" {
		c.AgentSocket = filepath.Join(c.RunDir, "agent.sock")
	}
	if c.AdminSocket == "" {
		c.AdminSocket = filepath.Join(c.RunDir, "admin.sock")
	}
	if raw.Audit != nil {
		if err := ValidateAudit(*raw.Audit); err != nil {
			f.errorf("audit", "%v", err)
		}
		c.Audit = *raw.Audit
	}
	for _, u := range raw.AdminUIDs {
		if u < 0 || u > 1<<32-2 {
			f.errorf("admin_uids", "admin uid %d out of range", u)
			continue
		}
		c.AdminUIDs = append(c.AdminUIDs, uint32(u))
	}
	if raw.AdminGroups != nil {
		c.AdminGroups = raw.AdminGroups
	}
	if raw.ApprovalTimeout != nil {
		d, err := time.ParseDuration(*raw.ApprovalTimeout)
		if err != nil || d <= 0 {
			f.errorf("approval_timeout", "approval_timeout = %q: want a positive duration like \"5m\"", *raw.ApprovalTimeout)
		}
		c.ApprovalTimeout = d
	}
	if raw.ApprovalCommand != nil {
		if len(raw.ApprovalCommand) == 0 || !filepath.IsAbs(raw.ApprovalCommand[0]) {
			f.errorf("approval_command", "approval_command must be an argv list starting with an absolute path")
		}
		c.ApprovalCommand = raw.ApprovalCommand
	}
	c.PrivateOK = parsePrivateOK(f, raw.Network.PrivateOK)
	if r := raw.Network.Resolver; r != nil {
		c.Resolver = parseResolver(f, *r)
		c.ResolverLoc = f.loc("network.resolver")
	}
	if raw.Defaults.User != nil || raw.Defaults.UID != nil {
		f.errorf("defaults", "[defaults] cannot name an account: user and uid belong in each profile")
	}
	if len(f.errs) > 0 {
		return nil, f.errs
	}
	if es := checkDefaults(c); len(es) > 0 {
		return nil, es
	}
	return c, nil
}

// checkDefaults checks the [defaults] table once through the profile code
// path, and returns the errors located in execgate.toml.
func checkDefaults(c *Config) Errors {
	probe := []byte("uid = 1\nworkdirs = [\"/\"]\n")
	_, err := ParseProfile(filepath.Join(c.AgentsDir, "defaults-check.toml"), probe, c.Defaults)
	if err == nil {
		return nil
	}
	var es Errors
	for _, e := range err.(Errors) {
		if e.Loc.File == c.File {
			es = append(es, e)
		}
	}
	return es
}

// parsePrivateOK reads [network] private_ok: addresses and CIDRs.
func parsePrivateOK(f *file, entries []string) PrefixList {
	var l PrefixList
	for _, e := range entries {
		pfx, err := ParsePrefix(e)
		if err != nil {
			f.errorf("network.private_ok", "private_ok: %v", err)
			continue
		}
		l.Prefixes = append(l.Prefixes, pfx)
		l.Locs = append(l.Locs, f.loc("network.private_ok"))
	}
	return l
}

// parseResolver reads [network] resolver: an IP literal and a port
// ("127.0.0.1:53", "[2001:db8::53]:53"). A name is refused: resolving it
// would need a resolver already.
func parseResolver(f *file, s string) netip.AddrPort {
	const want = `want an IP address and port, like "127.0.0.1:53" or "[::1]:53"`
	ap, err := netip.ParseAddrPort(s)
	switch {
	case err != nil:
		f.errorf("network.resolver", "resolver = %q: %s (a name would need a resolver of its own)", s, want)
	case ap.Port() == 0:
		f.errorf("network.resolver", "resolver = %q: port 0: %s", s, want)
	case ap.Addr().Unmap().IsUnspecified() || ap.Addr().IsMulticast() || ap.Addr().Unmap() == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		f.errorf("network.resolver", "resolver = %q: %s is not a server's address: %s", s, ap.Addr(), want)
	default:
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return netip.AddrPort{}
}

// ValidateAudit checks an audit sink setting.
func ValidateAudit(s string) error {
	switch {
	case s == "journal" || s == "auto":
		return nil
	case strings.HasPrefix(s, "file:") && filepath.IsAbs(s[len("file:"):]):
		return nil
	}
	return fmt.Errorf("audit = %q: want journal, auto or file:/absolute/path", s)
}

// LoadConfig reads and validates an execgate.toml.
func LoadConfig(name string) (*Config, error) {
	data, err := readFile(name)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return ParseConfig(name, data)
}

// applyPaths sets the directories and sockets execgate.toml names.
func applyPaths(f *file, raw *rawConfig, c *Config) {
	paths := []struct {
		key string
		v   *string
		dst *string
	}{
		{"agents_dir", raw.AgentsDir, &c.AgentsDir},
		{"run_dir", raw.RunDir, &c.RunDir},
		{"state_dir", raw.StateDir, &c.StateDir},
		{"agent_socket", raw.AgentSocket, &c.AgentSocket},
		{"admin_socket", raw.AdminSocket, &c.AdminSocket},
	}
	for _, p := range paths {
		if p.v == nil {
			continue
		}
		if !filepath.IsAbs(*p.v) {
			f.errorf(p.key, "%s = %q: want an absolute path", p.key, *p.v)
		}
		*p.dst = filepath.Clean(*p.v)
	}
}
