package profiles

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const goodProfile = `user = "nobody"
security = "allowlist"
ask = "on-miss"
workdirs = ["/srv/app"]

[[rule]]
match = "git status **"
action = "allow"

[[rule]]
match = "git checkout **"
action = "deny"
reason = "no branch switching"

[files]
deny_read = ["**/.env", "~/.ssh"]
read_only = ["/srv/app/.git"]

[limits]
timeout = "90s"
memory = "2GiB"
pids = 64
cpu = 2
output = "1MiB"
concurrent = 3
per_minute = 10
per_day = 100
connections = 16
egress_bytes = "256MiB"

[env]
pass = ["PATH", "LANG"]

[network]
mode = "host"

[schedule]
windows = ["Mon-Fri 07:00-19:00"]
timezone = "Africa/Johannesburg"

[audit]
script = "sha256"
`

func TestParseGoodProfile(t *testing.T) {
	p, err := ParseProfile("/etc/execgate/agents/flow.toml", []byte(goodProfile), nil)
	if err != nil {
		t.Fatalf("ParseProfile: %v", err)
	}
	if p.Name != "flow" || p.User != "nobody" || p.Security != SecurityAllowlist || p.Ask != AskOnMiss {
		t.Errorf("identity/modes = %q %q %q %q", p.Name, p.User, p.Security, p.Ask)
	}
	if len(p.Rules) != 2 || p.Rules[1].Loc.String() != "flow.toml:11" || p.Rules[1].Reason != "no branch switching" {
		t.Errorf("rules = %+v", p.Rules)
	}
	want := Limits{Timeout: 90 * time.Second, Memory: 2 << 30, Pids: 64, CPU: 2, Output: 1 << 20, Concurrent: 3, PerMinute: 10, PerDay: 100, Connections: 16, EgressBytes: 256 << 20}
	if p.Limits != want {
		t.Errorf("limits = %+v, want %+v", p.Limits, want)
	}
	if p.Network != "host" || p.Audit.Script != "sha256" || strings.Join(p.EnvPass, ",") != "PATH,LANG" {
		t.Errorf("rest = %q %q %q", p.Network, p.Audit.Script, p.EnvPass)
	}
	if p.Schedule == nil || len(p.Schedule.Windows) != 1 || p.Schedule.Loc.String() != "Africa/Johannesburg" {
		t.Errorf("schedule = %+v", p.Schedule)
	}
	if p.LocOf(KeyConnections).String() != "flow.toml:28" || p.LocOf(KeyEgressBytes).String() != "flow.toml:29" {
		t.Errorf("limits at %s and %s", p.LocOf(KeyConnections), p.LocOf(KeyEgressBytes))
	}
	if p.DenyRead.LocOf("~/.ssh").Line != 16 || len(p.DenyRead.Patterns) != 2 {
		t.Errorf("deny_read = %+v", p.DenyRead)
	}
	if len(p.SHA256) != 64 {
		t.Errorf("sha256 = %q", p.SHA256)
	}
}

// Each bad profile must fail with an error at the right line that says
// what is wrong.
func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, doc string
		line      int
		want      string
	}{
		{"unknown key", "user = \"a\"\nworkdirs = [\"/x\"]\nsecurty = \"full\"\n", 3, "unknown key securty"},
		{"unknown table key", "user = \"a\"\nworkdirs = [\"/x\"]\n[limits]\nmemroy = \"1GiB\"\n", 4, "unknown key limits.memroy"},
		{"bad enum", "user = \"a\"\nworkdirs = [\"/x\"]\nsecurity = \"open\"\n", 3, "want deny, allowlist or full"},
		{"bad ask", "user = \"a\"\nworkdirs = [\"/x\"]\nask = \"sometimes\"\n", 3, "want off, on-miss or always"},
		{"bad duration", "user = \"a\"\nworkdirs = [\"/x\"]\n[limits]\ntimeout = \"10 minutes\"\n", 4, "positive duration"},
		{"bad size", "user = \"a\"\nworkdirs = [\"/x\"]\n[limits]\nmemory = \"2 gallons\"\n", 4, "unknown unit"},
		{"negative size", "user = \"a\"\nworkdirs = [\"/x\"]\n[limits]\nmemory = -5\n", 4, "positive size"},
		{"bad cpu", "user = \"a\"\nworkdirs = [\"/x\"]\n[limits]\ncpu = 0\n", 4, "cores"},
		{"bad pids", "user = \"a\"\nworkdirs = [\"/x\"]\n[limits]\npids = 0\n", 4, "whole number"},
		{"wrong type", "user = \"a\"\nworkdirs = [\"/x\"]\n[limits]\npids = \"many\"\n", 4, "pids"},
		{"rule without action", "user = \"a\"\nworkdirs = [\"/x\"]\n[[rule]]\nmatch = \"git push\"\n", 3, "no action"},
		{"rule without match", "user = \"a\"\nworkdirs = [\"/x\"]\n[[rule]]\naction = \"deny\"\n", 3, "without match"},
		{"empty pattern", "user = \"a\"\nworkdirs = [\"/x\"]\n[[rule]]\nmatch = \"  \"\naction = \"deny\"\n", 4, "empty match pattern"},
		{"unbalanced brace", "user = \"a\"\nworkdirs = [\"/x\"]\n[[rule]]\nmatch = \"git {push,pull **\"\naction = \"deny\"\n", 4, "unmatched {"},
		{"unterminated quote", "user = \"a\"\nworkdirs = [\"/x\"]\n[[rule]]\nmatch = \"git 'push\"\naction = \"deny\"\n", 4, "unterminated"},
		{"bad action", "user = \"a\"\nworkdirs = [\"/x\"]\n[[rule]]\nmatch = \"ls\"\naction = \"permit\"\n", 5, "want allow, ask or deny"},
		{"second rule", "user = \"a\"\nworkdirs = [\"/x\"]\n[[rule]]\nmatch = \"ls\"\naction = \"allow\"\n[[rule]]\nmatch = \"x ** y **\"\naction = \"nope\"\n", 8, "want allow, ask or deny"},
		{"program ** not alone", "user = \"a\"\nworkdirs = [\"/x\"]\n[[rule]]\nmatch = \"** rm\"\naction = \"deny\"\n", 4, "must stand alone"},
		{"relative program path", "user = \"a\"\nworkdirs = [\"/x\"]\n[[rule]]\nmatch = \"bin/git **\"\naction = \"deny\"\n", 4, "absolute"},
		{"no account", "workdirs = [\"/x\"]\n", 0, "must name its agent's account"},
		{"both user and uid", "user = \"a\"\nuid = 5\nworkdirs = [\"/x\"]\n", 2, "not both"},
		{"root", "uid = 0\nworkdirs = [\"/x\"]\n", 1, "may not run as root"},
		{"no workdirs", "user = \"a\"\n", 0, "workdirs"},
		{"relative workdir", "user = \"a\"\nworkdirs = [\"srv\"]\n", 2, "absolute"},
		{"bad glob", "user = \"a\"\nworkdirs = [\"/x\"]\n[files]\ndeny_read = [\"/a/[x\"]\n", 4, "bad glob"},
		{"bad window", "user = \"a\"\nworkdirs = [\"/x\"]\n[schedule]\nwindows = [\"Mon-Fry 07:00-19:00\"]\n", 4, "unknown day"},
		{"bad tz", "user = \"a\"\nworkdirs = [\"/x\"]\n[schedule]\nwindows = [\"daily 07:00-19:00\"]\ntimezone = \"Mars/Olympus\"\n", 5, "timezone"},
		{"read_only pattern", "user = \"a\"\nworkdirs = [\"/x\"]\n[files]\nread_only = [\"**/.git\"]\n", 4, "not a pattern"},
		{"bad nested", "user = \"a\"\nworkdirs = [\"/x\"]\n[[rule]]\nmatch = \"ls\"\naction = \"allow\"\nnested = \"some\"\n", 6, "want any or rules"},
		{"nested on deny", "user = \"a\"\nworkdirs = [\"/x\"]\n[[rule]]\nmatch = \"ls\"\naction = \"deny\"\nnested = \"any\"\n", 6, "only makes sense on an allow rule"},
		{"bad nested_allow", "user = \"a\"\nworkdirs = [\"/x\"]\nnested_allow = [\"** x\"]\n", 3, "must stand alone"},
		{"bad network", "user = \"a\"\nworkdirs = [\"/x\"]\n[network]\nmode = \"bridge\"\n", 4, "want none, proxy or host"},
		{"bad connections", "user = \"a\"\nworkdirs = [\"/x\"]\n[limits]\nconnections = 0\n", 4, "connections = 0: want a whole number from 1"},
		{"negative connections", "user = \"a\"\nworkdirs = [\"/x\"]\n[limits]\nconnections = -3\n", 4, "connections = -3: want a whole number from 1"},
		{"huge connections", "user = \"a\"\nworkdirs = [\"/x\"]\n[limits]\nconnections = 4294967296\n", 4, "connections = 4294967296"},
		{"connections not a number", "user = \"a\"\nworkdirs = [\"/x\"]\n[limits]\nconnections = \"many\"\n", 4, "connections"},
		{"bad egress_bytes unit", "user = \"a\"\nworkdirs = [\"/x\"]\n[limits]\negress_bytes = \"5 parsecs\"\n", 4, "egress_bytes: \"5 parsecs\": unknown unit"},
		{"zero egress_bytes", "user = \"a\"\nworkdirs = [\"/x\"]\n[limits]\negress_bytes = 0\n", 4, "egress_bytes: 0: want a positive size"},
		{"egress_bytes not a size", "user = \"a\"\nworkdirs = [\"/x\"]\n[limits]\negress_bytes = 1.5\n", 4, "egress_bytes: want a size"},
		{"egress_bytes misspelt", "user = \"a\"\nworkdirs = [\"/x\"]\n[limits]\negress = \"1GiB\"\n", 4, "unknown key limits.egress"},
		{"bad env", "user = \"a\"\nworkdirs = [\"/x\"]\n[env]\npass = [\"A-B\"]\n", 4, "not an environment variable"},
		{"syntax", "user = \"a\nworkdirs = [\"/x\"]\n", 1, "TOML syntax"},
		{"nul", "user = \"a\"\x00\n", 0, "NUL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseProfile("/agents/x.toml", []byte(tt.doc), nil)
			var es Errors
			if !errors.As(err, &es) || len(es) == 0 {
				t.Fatalf("err = %v, want Errors", err)
			}
			found := false
			for _, e := range es {
				if strings.Contains(e.Msg, tt.want) && (tt.line == 0 || e.Loc.Line == tt.line) {
					found = true
				}
			}
			if !found {
				t.Errorf("errors = %q, want %q at line %d", err, tt.want, tt.line)
			}
			if !strings.Contains(err.Error(), "/agents/x.toml") {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}
}

func TestAllErrorsReported(t *testing.T) {
	doc := "user = \"a\"\nworkdirs = [\"/x\"]\nsecurity = \"open\"\nask = \"maybe\"\n[limits]\ntimeout = \"x\"\n"
	_, err := ParseProfile("/a/x.toml", []byte(doc), nil)
	var es Errors
	if !errors.As(err, &es) || len(es) != 3 {
		t.Fatalf("want 3 errors in one pass, got %v", err)
	}
}

func TestDefaultsInherited(t *testing.T) {
	cfg, err := ParseConfig("/etc/execgate/execgate.toml", []byte(`
agents_dir = "/etc/execgate/agents"
[defaults]
security = "full"
[[defaults.rule]]
match = "sudo **"
action = "deny"
[defaults.files]
deny_read = ["~/.ssh"]
[defaults.limits]
timeout = "5m"
memory = "1GiB"
[defaults.network]
mode = "host"
`))
	if err != nil {
		t.Fatal(err)
	}
	p, err := ParseProfile("/etc/execgate/agents/a.toml", []byte("user = \"a\"\nworkdirs = [\"/x\"]\n[limits]\nmemory = \"3GiB\"\n[files]\ndeny_read = [\"**/.env\"]\n[[rule]]\nmatch = \"ls\"\naction = \"allow\"\n"), cfg.Defaults)
	if err != nil {
		t.Fatal(err)
	}
	if p.Security != SecurityFull || p.Network != "host" || p.Limits.Timeout != 5*time.Minute {
		t.Errorf("inherited scalars: %q %q %v", p.Security, p.Network, p.Limits.Timeout)
	}
	if p.Limits.Memory != 3<<30 {
		t.Errorf("profile value must override the default: memory = %d", p.Limits.Memory)
	}
	if strings.Join(p.DenyRead.Patterns, ",") != "~/.ssh,**/.env" {
		t.Errorf("deny_read must add up: %q", p.DenyRead.Patterns)
	}
	if len(p.Rules) != 2 || p.Rules[0].Match != "sudo **" || p.Rules[0].Loc.String() != "execgate.toml:6" {
		t.Errorf("defaults' rules come first with their own location: %+v", p.Rules)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tt := range []struct{ name, doc, want string }{
		{"audit", "audit = \"syslog\"\n", "want journal, auto or file:"},
		{"relative-run-dir", "run_dir = \"run\"\n", "absolute"},
		{"defaults-user", "[defaults]\nuser = \"x\"\n", "cannot name an account"},
		{"defaults-security", "[defaults]\nsecurity = \"lax\"\n", "want deny, allowlist or full"},
		{"defaults-pids", "[defaults.limits]\npids = -1\n", "whole number"},
		{"approval-command", "approval_command = [\"notify\"]\n", "absolute path"},
		{"unknown-key", "bogus = 1\n", "unknown key bogus"},
		{"defaults-rule", "[[defaults.rule]]\nmatch = \"x\"\naction = \"y\"\n", "want allow, ask or deny"},
		{"defaults-network", "[defaults.network]\nmode = \"socks\"\n", "want none, proxy or host"},
		{"defaults-connections", "[defaults.limits]\nconnections = 0\n", "execgate.toml:2: connections = 0: want a whole number from 1"},
		{"defaults-egress_bytes", "[defaults.limits]\negress_bytes = \"lots\"\n", "execgate.toml:2: egress_bytes: \"lots\""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig("/etc/execgate/execgate.toml", []byte(tt.doc))
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "execgate.toml:") {
				t.Errorf("ParseConfig(%q) = %v, want %q at a line of execgate.toml", tt.doc, err, tt.want)
			}
		})
	}
	c := DefaultConfig()
	if c.AgentSocket != "/run/execgate/agent.sock" || c.ApprovalTimeout != 5*time.Minute {
		t.Errorf("DefaultConfig = %+v", c)
	}
}

func TestSizes(t *testing.T) {
	for in, want := range map[any]int64{"2GiB": 2 << 30, "16MiB": 16 << 20, "512M": 512 << 20, "1GB": 1e9, "1.5GiB": 3 << 29, int64(4096): 4096, "100": 100} {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%v) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []any{"", "GiB", "-1GiB", "1 parsec", 1.5, int64(0)} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%v): want error", in)
		}
	}
}

// testAccounts are the accounts the tests know, whatever the host has:
// an agent "nobody" (uid and group 65534, as on Debian) and nothing else.
func testAccounts() Accounts {
	return FixedAccounts(Identity{User: "nobody", UID: 65534, GID: 65534, Home: "/nonexistent"})
}

var testLoader = Loader{Accounts: testAccounts()}

// A profile that its own agent can write must be refused: otherwise the
// agent could rewrite its own policy.
func TestWritableProfileRefused(t *testing.T) {
	if os.Getuid() != 0 {
		t.Fatal("this test needs root to chown files (make test runs as root)")
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	name := filepath.Join(dir, "nobodyagent.toml")
	if err := os.WriteFile(name, []byte("user = \"nobody\"\nworkdirs = [\"/tmp\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := testLoader.LoadFile(name, nil); err != nil {
		t.Fatalf("root-owned 0644 profile: %v", err)
	}
	for _, tc := range []struct {
		name  string
		setup func()
		want  string
	}{
		{"owned by agent", func() { os.Chown(name, 65534, 0) }, "owned by the agent"},
		{"world-writable", func() { os.Chown(name, 0, 0); os.Chmod(name, 0o666) }, "world-writable"},
		{"group-writable by agent's group", func() { os.Chmod(name, 0o664); os.Chown(name, 0, 65534) }, "group-writable"},
		{"directory writable", func() { os.Chown(name, 0, 0); os.Chmod(name, 0o644); os.Chmod(dir, 0o777) }, "directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.setup()
			_, err := testLoader.LoadFile(name, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
			}
		})
	}
	t.Run("sticky directory", func(t *testing.T) {
		os.Chown(name, 0, 0)
		os.Chmod(name, 0o644)
		os.Chmod(dir, 0o777|os.ModeSticky) // sticky: the agent cannot replace root's file
		if _, err := testLoader.LoadFile(name, nil); err != nil {
			t.Errorf("sticky world-writable dir: %v", err)
		}
	})
}

func TestUnknownAccount(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "ghost.toml")
	os.WriteFile(name, []byte("user = \"no-such-user-xyz\"\nworkdirs = [\"/tmp\"]\n[files]\ndeny_read = [\"~/.ssh\"]\n"), 0o644)
	p, err := testLoader.LoadFile(name, nil)
	if !errors.Is(err, ErrUnknownAccount) || p == nil {
		t.Fatalf("LoadFile = %v, %v; want profile and ErrUnknownAccount", p, err)
	}
	if p.DenyRead.Set == nil {
		t.Error("patterns must still be compiled for checks")
	}
	var e *Error
	if !errors.As(err, &e) || e.Loc.Line != 1 {
		t.Errorf("error must point at the user line: %v", err)
	}
}

func TestLoadDirKeepsGoodProfiles(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "good.toml"), []byte("uid = 4242\nworkdirs = [\"/tmp\"]\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "bad.toml"), []byte("uid = 4243\nworkdirs = \"/tmp\"\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "README.md"), []byte("not a profile"), 0o644)
	ps, errs := testLoader.LoadDir(dir, nil)
	if ps["good"] == nil || ps["bad"] != nil || len(errs) != 1 || errs["bad"] == nil || !strings.Contains(errs["bad"].Error(), "bad.toml:2") {
		t.Errorf("LoadDir = %v, %v", ps, errs)
	}
	if ps["good"].UID != 4242 {
		t.Errorf("uid = %d", ps["good"].UID)
	}
}

func TestExamplesLoad(t *testing.T) {
	cfg, err := LoadConfig("../examples/execgate.toml")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"flow", "reviewer", "builder"} {
		t.Run(n, func(t *testing.T) {
			// Unknown here, whatever the host has.
			p, err := testLoader.LoadFile("../examples/"+n+".toml", cfg.Defaults)
			if p == nil || !errors.Is(err, ErrUnknownAccount) {
				t.Fatalf("%s: %v, want the profile and ErrUnknownAccount", n, err)
			}
			if p.Home != "/nonexistent/home/of/"+n {
				t.Errorf("home %q without an account", p.Home)
			}
			// Known, with a home of its own.
			known := Loader{Accounts: FixedAccounts(Identity{User: p.User, UID: 5000, GID: 5000, Home: "/home/" + n})}
			p, err = known.LoadFile("../examples/"+n+".toml", cfg.Defaults)
			if err != nil || p.UID != 5000 || p.GID != 5000 || p.Home != "/home/"+n {
				t.Errorf("with the account: %v, uid %d gid %d home %q", err, p.UID, p.GID, p.Home)
			}
		})
	}
}

func TestFixedAccounts(t *testing.T) {
	acc := FixedAccounts(Identity{User: "flow", UID: 4242, GID: 100, Groups: []uint32{100, 27}, Home: "/home/flow"})
	id, err := acc("flow", -1)
	if err != nil || id.UID != 4242 || id.Home != "/home/flow" || len(id.Groups) != 2 {
		t.Errorf("by name: %+v %v", id, err)
	}
	id.Groups[0] = 0 // a copy: the database does not change
	if id, _ := acc("", 4242); id == nil || id.User != "flow" || id.Groups[0] != 100 {
		t.Errorf("by uid: %+v", id)
	}
	if _, err := acc("builder", -1); !errors.Is(err, ErrUnknownAccount) {
		t.Errorf("unknown name: %v", err)
	}
	// A bare uid is a service identity, as on a host.
	if id, err := acc("", 7000); err != nil || id.UID != 7000 || id.GID != 7000 || id.Home != "" {
		t.Errorf("bare uid: %+v %v", id, err)
	}
	// Root is refused whatever the database says.
	p, err := ParseProfile("/a/toor.toml", []byte("user = \"toor\"\nworkdirs = [\"/x\"]\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.ResolveWith(FixedAccounts(Identity{User: "toor"})); err == nil || !strings.Contains(err.Error(), "may not run as root") {
		t.Errorf("an account with uid 0: %v", err)
	}
}

// HostAccounts asks the host: root is there on every machine.
func TestHostAccounts(t *testing.T) {
	id, err := HostAccounts("root", -1)
	if err != nil || id.UID != 0 || id.Home == "" {
		t.Errorf("root: %+v %v", id, err)
	}
	if _, err := HostAccounts("no-such-user-xyz", -1); !errors.Is(err, ErrUnknownAccount) {
		t.Errorf("unknown user: %v", err)
	}
}

// Every key callers may cite with LocOf is recorded by the loader, at the
// line that sets it, in the profile or in execgate.toml's defaults.
func TestEveryKeyRecorded(t *testing.T) {
	lines := map[string]string{
		KeyTimeout: "timeout = \"1m\"", KeyPids: "pids = 5", KeyConcurrent: "concurrent = 2",
		KeyPerMinute: "per_minute = 3", KeyPerDay: "per_day = 4", KeyExecsPerMinute: "execs_per_minute = 5",
		KeyExecsPerDay: "execs_per_day = 6", KeyScheduleWindows: "windows = [\"daily 00:00-24:00\"]",
		KeyNetworkMode: "mode = \"host\"", KeyConnections: "connections = 7", KeyEgressBytes: "egress_bytes = \"1GiB\"",
		KeyChangesMode: "mode = \"review\"", KeyChangesMaxFiles: "max_files = 200", KeyChangesMaxDeleted: "max_deleted = 0",
		KeyChangesMaxBytes: "max_bytes = \"50MiB\"", KeyChangesProtect: "protect = [\"**/.git/**\"]",
	}
	for _, key := range Keys() {
		if lines[key] == "" {
			t.Fatalf("key %s: no line in this test: add one", key)
		}
	}
	for _, key := range Keys() {
		t.Run(key, func(t *testing.T) {
			table, _, _ := strings.Cut(key, ".")
			doc := "uid = 4242\nworkdirs = [\"/x\"]\n[" + table + "]\n" + lines[key] + "\n"
			p, err := ParseProfile("/agents/k.toml", []byte(doc), nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := p.LocOf(key); got.String() != "k.toml:4" {
				t.Errorf("LocOf(%s) = %q, want k.toml:4", key, got)
			}
			cfg, err := ParseConfig("/etc/execgate/execgate.toml", []byte("[defaults."+table+"]\n"+lines[key]+"\n"))
			if err != nil {
				t.Fatal(err)
			}
			p, err = ParseProfile("/agents/k.toml", []byte("uid = 4242\nworkdirs = [\"/x\"]\n"), cfg.Defaults)
			if err != nil {
				t.Fatal(err)
			}
			if got := p.LocOf(key); got.String() != "execgate.toml:2" {
				t.Errorf("inherited: LocOf(%s) = %q, want execgate.toml:2", key, got)
			}
			// Not set anywhere: the profile file.
			p, _ = ParseProfile("/agents/k.toml", []byte("uid = 4242\nworkdirs = [\"/x\"]\n"), nil)
			if got := p.LocOf(key); got != (Loc{File: "/agents/k.toml"}) {
				t.Errorf("unset: LocOf(%s) = %+v", key, got)
			}
		})
	}
	t.Run("unknown key", func(t *testing.T) {
		p, _ := ParseProfile("/agents/k.toml", []byte("uid = 4242\nworkdirs = [\"/x\"]\n"), nil)
		defer func() {
			if recover() == nil {
				t.Error("LocOf of a key the loader never records must panic in tests")
			}
		}()
		p.LocOf("limits.per_minuet")
	})
}
