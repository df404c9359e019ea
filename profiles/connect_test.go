package profiles

import (
	"errors"
	"net/netip"
	"os"
	"strings"
	"testing"
)

func mustDest(t *testing.T, host string) Dest {
	t.Helper()
	d, err := ParseDest(host)
	if err != nil {
		t.Fatalf("ParseDest(%q): %v", host, err)
	}
	return d
}

func TestConnectPatternMatch(t *testing.T) {
	type dest struct {
		host string
		port uint16
	}
	for _, tt := range []struct {
		name, pattern string
		yes, no       []dest
	}{
		{"exact name", "registry.npmjs.org:443",
			[]dest{{"registry.npmjs.org", 443}, {"REGISTRY.NPMJS.ORG", 443}, {"registry.npmjs.org.", 443}, {"Registry.NpmJs.Org.", 443}},
			[]dest{{"registry.npmjs.org", 80}, {"npmjs.org", 443}, {"x.registry.npmjs.org", 443}, {"registry.npmjs.org.evil.com", 443},
				{"evil-registry.npmjs.org", 443}, {"registrynpmjs.org", 443}, {"registry.npmjs.or", 443}}},
		{"subdomain not apex", "*.example.com:443",
			[]dest{{"a.example.com", 443}, {"a.b.example.com", 443}, {"A.Example.COM.", 443}, {"evil.com.example.com", 443}},
			[]dest{{"example.com", 443}, {"example.com.", 443}, {"example.com.evil.com", 443}, {"exampleXcom", 443},
				{"aexample.com", 443}, {"a.example.com", 80}, {"a.example.co", 443}, {"a.example.com.evil", 443}}},
		{"upper-case pattern", "*.GitHub.COM.:*",
			[]dest{{"api.github.com", 1}, {"api.github.com", 65535}},
			[]dest{{"github.com", 443}}},
		{"alternatives", "{registry.npmjs.org,github.com,*.github.com}:443",
			[]dest{{"registry.npmjs.org", 443}, {"github.com", 443}, {"codeload.github.com", 443}},
			[]dest{{"npmjs.org", 443}, {"github.com", 22}, {"gitlab.com", 443}, {"{registry.npmjs.org", 443}}},
		{"alternative ports", "github.com:{22,443}",
			[]dest{{"github.com", 22}, {"github.com", 443}},
			[]dest{{"github.com", 80}, {"github.com", 2243}}},
		{"alternatives inside a label", "api.{github,gitlab}.com:443",
			[]dest{{"api.github.com", 443}, {"api.gitlab.com", 443}},
			[]dest{{"api.bitbucket.com", 443}, {"api.com", 443}}},
		{"any port", "pypi.org:*",
			[]dest{{"pypi.org", 1}, {"pypi.org", 443}, {"pypi.org", 65535}},
			[]dest{{"files.pypi.org", 443}}},
		{"star alone is every name, no address", "*:443",
			[]dest{{"anything.example", 443}, {"localhost", 443}, {"x", 443}},
			[]dest{{"x", 80}, {"10.0.0.1", 443}, {"[::1]", 443}, {"::1", 443}}},
		{"IPv4 literal", "192.0.2.7:8080",
			[]dest{{"192.0.2.7", 8080}, {"::ffff:192.0.2.7", 8080}, {"[::ffff:192.0.2.7]", 8080}},
			[]dest{{"192.0.2.8", 8080}, {"192.0.2.7", 80}, {"192.0.2.7.nip.io", 8080}}},
		{"IPv4 CIDR", "10.20.0.0/16:5432",
			[]dest{{"10.20.0.0", 5432}, {"10.20.255.255", 5432}, {"10.20.3.4", 5432}, {"::ffff:10.20.3.4", 5432}},
			[]dest{{"10.21.0.0", 5432}, {"10.19.255.255", 5432}, {"10.20.3.4", 5433}, {"10.20.example.com", 5432}}},
		{"IPv6 literal in brackets", "[2001:db8::1]:443",
			[]dest{{"2001:db8::1", 443}, {"[2001:db8::1]", 443}, {"2001:DB8:0:0:0:0:0:1", 443}},
			[]dest{{"2001:db8::2", 443}, {"2001:db8::1", 80}}},
		{"IPv6 CIDR", "[fd00::/8]:*",
			[]dest{{"fd12::1", 22}, {"fdff:ffff::", 443}},
			[]dest{{"fc00::1", 22}, {"10.0.0.1", 22}}},
		{"mapped IPv6 rule means IPv4", "[::ffff:10.0.0.0/104]:80",
			[]dest{{"10.1.2.3", 80}, {"::ffff:10.1.2.3", 80}},
			[]dest{{"11.0.0.1", 80}}},
		{"names never match addresses", "localhost:80",
			[]dest{{"localhost", 80}},
			[]dest{{"127.0.0.1", 80}, {"::1", 80}}},
		{"underscore and digits", "_acme-1.x9.example:443",
			[]dest{{"_ACME-1.x9.example", 443}},
			[]dest{{"acme-1.x9.example", 443}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, err := CompileConnectPattern(tt.pattern)
			if err != nil {
				t.Fatalf("CompileConnectPattern(%q): %v", tt.pattern, err)
			}
			for _, d := range tt.yes {
				if !p.Match(mustDest(t, d.host), d.port) {
					t.Errorf("%q must match %s:%d", tt.pattern, d.host, d.port)
				}
			}
			for _, d := range tt.no {
				dst, err := ParseDest(d.host)
				if err == nil && p.Match(dst, d.port) {
					t.Errorf("%q must not match %s:%d", tt.pattern, d.host, d.port)
				}
			}
		})
	}
}

func TestConnectPatternErrors(t *testing.T) {
	for _, tt := range []struct{ name, pattern, want string }{
		{"empty", "", "empty match"},
		{"blank", "   ", "empty match"},
		{"no port", "example.com", "no port"},
		{"empty port", "example.com:", "empty port"},
		{"port zero", "example.com:0", "from 1 to 65535"},
		{"port too big", "example.com:65536", "from 1 to 65535"},
		{"leading zero port", "example.com:0443", "from 1 to 65535"},
		{"port range", "example.com:8000-8080", "ranges are not supported"},
		{"signed port", "example.com:+443", "want a number"},
		{"no host", ":443", "no host"},
		{"bare IPv6", "2001:db8::1:443", "goes in brackets"},
		{"IPv4 in brackets", "[192.0.2.1]:443", "only IPv6 goes in brackets"},
		{"unterminated bracket", "[2001:db8::1:443", "unterminated ["},
		{"no port after bracket", "[2001:db8::1]", "no port after ]"},
		{"zone", "[fe80::1%eth0]:22", "zones"},
		{"host bits", "10.20.0.1/16:5432", "did you mean 10.20.0.0/16"},
		{"bad CIDR", "10.20.0.0/33:5432", "not a CIDR"},
		{"bad IPv4", "256.1.1.1:80", "not an IP address"},
		{"short IPv4", "10.1.2:80", "not an IP address"},
		{"octal IPv4", "010.0.0.1:80", "not an IP address"},
		{"inner star", "a.*.example.com:443", "whole leading labels"},
		{"glob in label", "api*.example.com:443", "whole leading labels"},
		{"double star label", "*.*.example.com:443", "whole leading labels"},
		{"star apex only", "*.:443", "empty host"},
		{"star over address", "*.10.0.0.1:443", "not an IP address"},
		{"empty label", "a..example.com:443", "empty label"},
		{"leading dot", ".example.com:443", "empty label"},
		{"hyphen edge", "-x.example.com:443", "start or end with '-'"},
		{"long label", strings.Repeat("a", 64) + ".com:443", "longer than 63"},
		{"long name", strings.Repeat("a.", 127) + "com:443", "longer than 253"},
		{"non-ASCII", "bücher.example:443", "xn--"},
		{"slash in name", "example.com/path:443", "not a CIDR"},
		{"scheme", "https://example.com:443", "goes in brackets"},
		{"space", "example.com :443", "blanks"},
		{"backslash", "exa\\mple.com:443", "backslashes"},
		{"unmatched brace", "{a.com,b.com:443", "unmatched {"},
		{"bad alternative", "{a.com,b..com}:443", "alternative \"b..com:443\""},
		{"percent", "exa%mple.com:443", "not a host name character"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := CompileConnectPattern(tt.pattern)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("CompileConnectPattern(%q) = %v, want an error with %q", tt.pattern, err, tt.want)
			}
		})
	}
}

func TestParseDest(t *testing.T) {
	for _, tt := range []struct{ in, name, addr, err string }{
		{in: "Example.COM.", name: "example.com"},
		{in: "localhost", name: "localhost"},
		{in: "10.0.0.1", addr: "10.0.0.1"},
		{in: "::ffff:127.0.0.1", addr: "127.0.0.1"},
		{in: "[::1]", addr: "::1"},
		{in: "2001:DB8::1", addr: "2001:db8::1"},
		{in: "", err: "empty host"},
		{in: ".", err: "empty host"},
		{in: "a..b", err: "empty label"},
		{in: "-.example.com", err: "start or end with '-'"},
		{in: "bücher.example", err: "xn--"},
		{in: "ex ample.com", err: "not a host name character"},
		{in: "[10.0.0.1]", err: "only IPv6"},
		{in: "fe80::1%eth0", err: "not a valid IPv6"},
		{in: "1.2.3", err: "neither an IPv4 address"},
		{in: "0x7f.0.0.1", err: "neither an IPv4 address"},
		{in: "2130706433", err: "neither an IPv4 address"}, // 127.0.0.1 as a number
		{in: "127.0.0.1.", err: "neither an IPv4 address"},
		{in: "example.com:443", err: "not a valid IPv6"},
	} {
		t.Run(tt.in, func(t *testing.T) {
			d, err := ParseDest(tt.in)
			switch {
			case tt.err != "":
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Errorf("ParseDest(%q) = %+v, %v; want error %q", tt.in, d, err, tt.err)
				}
			case err != nil:
				t.Errorf("ParseDest(%q): %v", tt.in, err)
			case d.Name != tt.name || tt.addr != "" && d.Addr != netip.MustParseAddr(tt.addr) || tt.addr == "" && d.Addr.IsValid():
				t.Errorf("ParseDest(%q) = %+v, want name %q addr %q", tt.in, d, tt.name, tt.addr)
			}
		})
	}
}

func TestParsePrefix(t *testing.T) {
	for _, tt := range []struct{ in, want, err string }{
		{in: "10.0.0.0/8", want: "10.0.0.0/8"},
		{in: "127.0.0.1", want: "127.0.0.1/32"},
		{in: "fd00::/8", want: "fd00::/8"},
		{in: "[fd00::/8]", want: "fd00::/8"},
		{in: "::1", want: "::1/128"},
		{in: "::ffff:10.0.0.0/104", want: "10.0.0.0/8"},
		{in: "10.0.0.1/8", err: "did you mean 10.0.0.0/8"},
		{in: "10.0.0.0/40", err: "not a CIDR"},
		{in: "example.com", err: "not an IP address"},
		{in: "", err: "want an address"},
		{in: " 10.0.0.0/8", err: "want an address"},
		{in: "fe80::1%eth0", err: "zones"},
	} {
		t.Run(tt.in, func(t *testing.T) {
			p, err := ParsePrefix(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Errorf("ParsePrefix(%q) = %v, %v; want error %q", tt.in, p, err, tt.err)
				}
				return
			}
			if err != nil || p.String() != tt.want {
				t.Errorf("ParsePrefix(%q) = %v, %v; want %s", tt.in, p, err, tt.want)
			}
		})
	}
}

const connectProfile = `user = "nobody"
workdirs = ["/srv/app"]

[network]
mode = "proxy"

[[connect]]
match = "{registry.npmjs.org,github.com,*.github.com}:443"
action = "allow"

[[connect]]
match = "*.railway.app:*"
action = "deny"
reason = "production infrastructure is changed by the release pipeline"
`

func TestParseConnectRules(t *testing.T) {
	cfg, err := ParseConfig("/etc/execgate/execgate.toml", []byte("[network]\nprivate_ok = [\"10.0.0.0/8\", \"fd00::/8\", \"127.0.0.1\"]\n\n[[defaults.connect]]\nmatch = \"169.254.169.254:*\"\naction = \"deny\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := len(cfg.PrivateOK.Prefixes); got != 3 || cfg.PrivateOK.Locs[2].String() != "execgate.toml:2" {
		t.Errorf("private_ok = %+v", cfg.PrivateOK)
	}
	p, err := ParseProfile("/etc/execgate/agents/flow.toml", []byte(connectProfile), cfg.Defaults)
	if err != nil {
		t.Fatal(err)
	}
	if p.Network != NetworkProxy || p.LocOf(KeyNetworkMode).String() != "flow.toml:5" {
		t.Errorf("network = %q at %s", p.Network, p.LocOf(KeyNetworkMode))
	}
	want := []struct {
		match string
		act   Action
		loc   string
	}{{"169.254.169.254:*", Deny, "execgate.toml:5"}, {"{registry.npmjs.org,github.com,*.github.com}:443", Allow, "flow.toml:8"}, {"*.railway.app:*", Deny, "flow.toml:12"}}
	if len(p.Connect) != len(want) {
		t.Fatalf("connect rules = %+v", p.Connect)
	}
	for i, w := range want {
		r := p.Connect[i]
		if r.Match != w.match || r.Action != w.act || r.Loc.String() != w.loc || r.Pattern == nil {
			t.Errorf("rule %d = %q %q %s, want %q %q %s", i, r.Match, r.Action, r.Loc, w.match, w.act, w.loc)
		}
	}
	if p.Connect[2].Reason != "production infrastructure is changed by the release pipeline" {
		t.Errorf("reason = %q", p.Connect[2].Reason)
	}
}

// network.mode = "proxy" loads, from the profile or from [defaults], and
// [[connect]] rules load with mode none too (nothing leaves anyway; admins
// can prepare rules and try them with execgate check --connect).
func TestProxyModeLoads(t *testing.T) {
	p, err := ParseProfile("/a/flow.toml", []byte(connectProfile), nil)
	if err != nil || p.Network != NetworkProxy || len(p.Connect) != 2 || p.LocOf(KeyNetworkMode).String() != "flow.toml:5" {
		t.Fatalf("proxy mode: %v", err)
	}
	cfg, err := ParseConfig("/etc/execgate/execgate.toml", []byte("[defaults.network]\nmode = \"proxy\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	p, err = ParseProfile("/a/flow.toml", []byte("user = \"nobody\"\nworkdirs = [\"/x\"]\n"), cfg.Defaults)
	if err != nil || p.Network != NetworkProxy || p.LocOf(KeyNetworkMode).String() != "execgate.toml:2" {
		t.Fatalf("proxy mode from [defaults]: %v (%q at %s)", err, p.Network, p.LocOf(KeyNetworkMode))
	}
	doc := strings.Replace(connectProfile, "mode = \"proxy\"", "mode = \"none\"", 1)
	p, err = ParseProfile("/a/flow.toml", []byte(doc), nil)
	if err != nil || len(p.Connect) != 2 || p.Network != NetworkNone {
		t.Fatalf("mode none with [[connect]]: %v", err)
	}
}

func TestConnectLoadErrors(t *testing.T) {
	head := "user = \"nobody\"\nworkdirs = [\"/x\"]\n[network]\nmode = \"proxy\"\n" // 4 lines
	for _, tt := range []struct{ name, doc, want string }{
		{"no match", "[[connect]]\naction = \"allow\"\n", "a.toml:5: [[connect]] without match"},
		{"no action", "[[connect]]\nmatch = \"a.com:443\"\n", "a.toml:5: connect rule \"a.com:443\" has no action"},
		{"bad action", "[[connect]]\nmatch = \"a.com:443\"\naction = \"permit\"\n", "a.toml:7: action = \"permit\": want allow, ask or deny"},
		{"bad pattern", "[[connect]]\nmatch = \"a.com\"\naction = \"allow\"\n", "a.toml:6: match \"a.com\": no port"},
		{"second rule", "[[connect]]\nmatch = \"a.com:1\"\naction = \"allow\"\n[[connect]]\nmatch = \"*.*.b:1\"\naction = \"deny\"\n", "a.toml:9: match \"*.*.b:1\""},
		{"unknown key", "[[connect]]\nmatch = \"a.com:443\"\naction = \"allow\"\nport = 443\n", "a.toml:8: unknown key connect.port"},
		{"nested key", "[[connect]]\nmatch = \"a.com:443\"\naction = \"allow\"\nnested = \"any\"\n", "a.toml:8: unknown key connect.nested"},
		{"match not a string", "[[connect]]\nmatch = 443\naction = \"allow\"\n", "a.toml:6"},
		{"bad mode", "", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			doc := head + tt.doc
			if tt.name == "bad mode" {
				doc, tt.want = strings.Replace(head, "proxy", "socks", 1), "a.toml:4: mode = \"socks\": want none, proxy or host"
			}
			_, err := ParseProfile("/agents/a.toml", []byte(doc), nil)
			var es Errors
			if !errors.As(err, &es) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ParseProfile:\n%s\n= %v\nwant %q", doc, err, tt.want)
			}
		})
	}
	t.Run("host mode", func(t *testing.T) {
		doc := "user = \"nobody\"\nworkdirs = [\"/x\"]\n[network]\nmode = \"host\"\n[[connect]]\nmatch = \"a.com:443\"\naction = \"allow\"\n"
		_, err := ParseProfile("/agents/a.toml", []byte(doc), nil)
		if err == nil || !strings.Contains(err.Error(), "a.toml:5: [[connect]] rules decide nothing with network.mode = \"host\"") {
			t.Errorf("host mode with [[connect]]: %v", err)
		}
	})
}

func TestPrivateOKErrors(t *testing.T) {
	for _, tt := range []struct{ name, doc, want string }{
		{"host bits", "[network]\nprivate_ok = [\"10.1.0.0/8\"]\n", "execgate.toml:2: private_ok: \"10.1.0.0/8\" has host bits set"},
		{"name", "[network]\nprivate_ok = [\"registry.local\"]\n", "execgate.toml:2: private_ok: \"registry.local\" is not an IP address"},
		{"not a list", "[network]\nprivate_ok = \"10.0.0.0/8\"\n", "execgate.toml:2"},
		{"unknown key", "[network]\nprivate = [\"10.0.0.0/8\"]\n", "execgate.toml:2: unknown key network.private"},
		{"second entry", "[network]\nprivate_ok = [\n  \"10.0.0.0/8\",\n  \"300.0.0.0/8\",\n]\n", "execgate.toml:2: private_ok: \"300.0.0.0/8\" is not a CIDR"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig("/etc/execgate/execgate.toml", []byte(tt.doc))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ParseConfig(%q) = %v, want %q", tt.doc, err, tt.want)
			}
		})
	}
}

// limits.connections and limits.egress_bytes merge with [defaults] like the
// other limits, are recorded with file:line, and load in every network mode
// (defaults may set them for every agent; they apply in proxy mode).
func TestEgressLimits(t *testing.T) {
	cfg, err := ParseConfig("/etc/execgate/execgate.toml", []byte("[defaults.limits]\nconnections = 32\negress_bytes = \"1GiB\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, doc     string
		conns         int
		egress        int64
		connLoc, eLoc string
	}{
		{"inherited", "user = \"a\"\nworkdirs = [\"/x\"]\n[network]\nmode = \"proxy\"\n", 32, 1 << 30, "execgate.toml:2", "execgate.toml:3"},
		{"profile overrides one", "user = \"a\"\nworkdirs = [\"/x\"]\n[network]\nmode = \"proxy\"\n[limits]\nconnections = 4\n", 4, 1 << 30, "b.toml:6", "execgate.toml:3"},
		{"decimal and plain sizes", "user = \"a\"\nworkdirs = [\"/x\"]\n[limits]\negress_bytes = \"50MB\"\n", 32, 50e6, "execgate.toml:2", "b.toml:4"},
		{"a number of bytes", "user = \"a\"\nworkdirs = [\"/x\"]\n[limits]\negress_bytes = 4096\n", 32, 4096, "execgate.toml:2", "b.toml:4"},
		{"mode none", "user = \"a\"\nworkdirs = [\"/x\"]\n[network]\nmode = \"none\"\n[limits]\nconnections = 2\n", 2, 1 << 30, "b.toml:6", "execgate.toml:3"},
		{"mode host", "user = \"a\"\nworkdirs = [\"/x\"]\n[network]\nmode = \"host\"\n[limits]\negress_bytes = \"2GiB\"\n", 32, 2 << 30, "execgate.toml:2", "b.toml:6"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, err := ParseProfile("/agents/b.toml", []byte(tt.doc), cfg.Defaults)
			if err != nil {
				t.Fatal(err)
			}
			if p.Limits.Connections != tt.conns || p.Limits.EgressBytes != tt.egress {
				t.Errorf("limits = %d connections, %d bytes; want %d, %d", p.Limits.Connections, p.Limits.EgressBytes, tt.conns, tt.egress)
			}
			if got := p.LocOf(KeyConnections).String(); got != tt.connLoc {
				t.Errorf("LocOf(KeyConnections) = %s, want %s", got, tt.connLoc)
			}
			if got := p.LocOf(KeyEgressBytes).String(); got != tt.eLoc {
				t.Errorf("LocOf(KeyEgressBytes) = %s, want %s", got, tt.eLoc)
			}
		})
	}
	p, err := ParseProfile("/agents/b.toml", []byte("user = \"a\"\nworkdirs = [\"/x\"]\n"), nil)
	if err != nil || p.Limits.Connections != 0 || p.Limits.EgressBytes != 0 || p.LocOf(KeyEgressBytes) != (Loc{File: "/agents/b.toml"}) {
		t.Errorf("unset: %v %+v %+v", err, p.Limits, p.LocOf(KeyEgressBytes))
	}
}

func TestResolver(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"127.0.0.1:53", "127.0.0.1:53"},
		{"10.0.0.2:5353", "10.0.0.2:5353"},
		{"[::1]:53", "[::1]:53"},
		{"[2001:db8::53]:53", "[2001:db8::53]:53"},
		{"[::ffff:192.0.2.1]:53", "192.0.2.1:53"}, // mapped: unmapped
		{"[fe80::1%eth0]:53", "[fe80::1%eth0]:53"},
	} {
		t.Run(tt.in, func(t *testing.T) {
			cfg, err := ParseConfig("/etc/execgate/execgate.toml", []byte("[network]\nprivate_ok = [\"127.0.0.1\"]\nresolver = \""+tt.in+"\"\n"))
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Resolver.String() != tt.want || cfg.ResolverLoc.String() != "execgate.toml:3" {
				t.Errorf("resolver = %s at %s, want %s at execgate.toml:3", cfg.Resolver, cfg.ResolverLoc, tt.want)
			}
		})
	}
	if c := DefaultConfig(); c.Resolver.IsValid() || c.ResolverLoc != (Loc{}) {
		t.Errorf("default resolver = %s at %+v, want the zero value (the host's resolv.conf)", c.Resolver, c.ResolverLoc)
	}
}

func TestResolverErrors(t *testing.T) {
	for _, tt := range []struct{ name, value, want string }{
		{"name", `"dns.example.com:53"`, `execgate.toml:3: resolver = "dns.example.com:53": want an IP address and port`},
		{"localhost", `"localhost:53"`, `execgate.toml:3: resolver = "localhost:53": want an IP address and port`},
		{"no port", `"127.0.0.1"`, `execgate.toml:3: resolver = "127.0.0.1": want an IP address and port`},
		{"IPv6 without brackets", `"::1:53"`, `execgate.toml:3: resolver = "::1:53": want`},
		{"IPv6 without port", `"[::1]"`, `execgate.toml:3: resolver = "[::1]": want`},
		{"empty", `""`, `execgate.toml:3: resolver = "": want`},
		{"port 0", `"127.0.0.1:0"`, `execgate.toml:3: resolver = "127.0.0.1:0": port 0`},
		{"port too large", `"127.0.0.1:65536"`, `execgate.toml:3: resolver = "127.0.0.1:65536": want`},
		{"URL", `"udp://127.0.0.1:53"`, `execgate.toml:3: resolver = "udp://127.0.0.1:53": want`},
		{"spaces", `" 127.0.0.1:53"`, `execgate.toml:3: resolver = " 127.0.0.1:53": want`},
		{"unspecified", `"0.0.0.0:53"`, `execgate.toml:3: resolver = "0.0.0.0:53": 0.0.0.0 is not a server's address`},
		{"IPv6 unspecified", `"[::]:53"`, `is not a server's address`},
		{"multicast", `"224.0.0.251:5353"`, `224.0.0.251 is not a server's address`},
		{"broadcast", `"255.255.255.255:53"`, `is not a server's address`},
		{"a list", `["127.0.0.1:53"]`, `execgate.toml:3`},
		{"a number", `53`, `execgate.toml:3`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			doc := "[network]\nprivate_ok = [\"127.0.0.1\"]\nresolver = " + tt.value + "\n"
			_, err := ParseConfig("/etc/execgate/execgate.toml", []byte(doc))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ParseConfig(%q) = %v, want %q", doc, err, tt.want)
			}
		})
	}
	t.Run("unknown key", func(t *testing.T) {
		_, err := ParseConfig("/etc/execgate/execgate.toml", []byte("[network]\nresolvers = [\"127.0.0.1:53\"]\n"))
		if err == nil || !strings.Contains(err.Error(), "execgate.toml:2: unknown key network.resolvers") {
			t.Errorf("ParseConfig: %v", err)
		}
	})
}

// examples/builder.toml is the proxy-mode example: it loads with its rules
// and limits, and examples/execgate.toml's commented [network] block is
// valid once uncommented.
func TestNetworkExamples(t *testing.T) {
	cfg, err := LoadConfig("../examples/execgate.toml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Resolver.IsValid() || len(cfg.PrivateOK.Prefixes) != 0 {
		t.Errorf("examples/execgate.toml sets [network] (it is an example in comments): %+v %s", cfg.PrivateOK, cfg.Resolver)
	}
	p, err := ParseProfile("/etc/execgate/agents/builder.toml", mustRead(t, "../examples/builder.toml"), cfg.Defaults)
	if err != nil {
		t.Fatal(err)
	}
	if p.Network != NetworkProxy || p.Limits.Connections < 1 || p.Limits.EgressBytes < 1 {
		t.Errorf("builder: network %q, limits %+v", p.Network, p.Limits)
	}
	var allow, deny int
	for _, r := range p.Connect {
		switch {
		case r.Action == Allow:
			allow++
		case r.Action == Deny && r.Reason != "":
			deny++
		default:
			t.Errorf("builder: rule %q at %s: a deny rule without a reason, or an ask", r.Match, r.Loc)
		}
	}
	if allow < 2 || deny < 5 {
		t.Errorf("builder: %d allow and %d deny rules", allow, deny)
	}

	var lines []string
	for _, l := range strings.Split(string(mustRead(t, "../examples/execgate.toml")), "\n") {
		for _, k := range []string{"[network]", "private_ok = ", "resolver = "} {
			if strings.HasPrefix(l, "# "+k) {
				l = l[2:]
			}
		}
		lines = append(lines, l)
	}
	cfg, err = ParseConfig("/etc/execgate/execgate.toml", []byte(strings.Join(lines, "\n")))
	if err != nil {
		t.Fatalf("examples/execgate.toml with [network] uncommented: %v", err)
	}
	if !cfg.Resolver.IsValid() || len(cfg.PrivateOK.Prefixes) == 0 {
		t.Errorf("uncommented: resolver %s, private_ok %+v", cfg.Resolver, cfg.PrivateOK)
	}
}

func mustRead(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
