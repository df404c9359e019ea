package policy

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/execgate/execgate/profiles"
)

const connectDoc = `user = "nobody"
workdirs = ["/srv/app"]

[[connect]]
match = "{registry.npmjs.org,github.com,*.github.com}:443"
action = "allow"

[[connect]]
match = "*.railway.app:*"
action = "deny"
reason = "production infrastructure is changed by the release pipeline"

[[connect]]
match = "*.amazonaws.com:*"
action = "ask"

[[connect]]
match = "s3.amazonaws.com:443"
action = "allow"

[[connect]]
match = "10.20.0.0/16:5432"
action = "allow"
reason = "the team database"

[[connect]]
match = "10.20.9.0/24:*"
action = "deny"

[[connect]]
match = "[fd00:ec2::254]:80"
action = "allow"

[[connect]]
match = "*.corp.example:*"
action = "allow"

[[connect]]
match = "192.0.2.10:22"
action = "ask"
reason = "the build box"

[network]
mode = "proxy"
`

// modeLoc is where connectDoc sets network.mode: a miss cites it.
const modeLoc = "flow.toml:44"

// proxyProfile loads connectDoc, a network.mode = "proxy" profile.
func proxyProfile(t testing.TB) *profiles.Profile {
	t.Helper()
	p, err := profiles.ParseProfile("/etc/execgate/agents/flow.toml", []byte(connectDoc), nil)
	if err != nil {
		t.Fatal(err)
	}
	if p.Network != profiles.NetworkProxy || p.LocOf(profiles.KeyNetworkMode).String() != modeLoc {
		t.Fatalf("network.mode = %q at %s, want proxy at %s", p.Network, p.LocOf(profiles.KeyNetworkMode), modeLoc)
	}
	return p
}

func TestDecideConnect(t *testing.T) {
	p := proxyProfile(t)
	for _, tt := range []struct {
		name, host string
		port       uint16
		want       Decision
		rule       string // "" for none
		reason     string
	}{
		{"allowed registry", "registry.npmjs.org", 443, profiles.Allow, "flow.toml:5", "matches connect allow rule"},
		{"upper case, trailing dot", "Registry.NPMJS.org.", 443, profiles.Allow, "flow.toml:5", ""},
		{"subdomain", "codeload.github.com", 443, profiles.Allow, "flow.toml:5", ""},
		{"wrong port", "github.com", 22, profiles.Deny, modeLoc, "no [[connect]] rule allows github.com:22"},
		{"lookalike suffix", "github.com.evil.example", 443, profiles.Deny, modeLoc, "no [[connect]] rule"},
		{"lookalike prefix", "evilgithub.com", 443, profiles.Deny, modeLoc, "no [[connect]] rule"},
		{"deny with reason", "backboard.railway.app", 443, profiles.Deny, "flow.toml:9", "production infrastructure"},
		{"deny, not the apex", "railway.app", 443, profiles.Deny, modeLoc, "no [[connect]] rule"},
		{"ask beats allow", "s3.amazonaws.com", 443, profiles.Ask, "flow.toml:14", "matches connect ask rule \"*.amazonaws.com:*\""},
		{"ask", "ec2.amazonaws.com", 443, profiles.Ask, "flow.toml:14", ""},
		{"address allowed", "10.20.1.2", 5432, profiles.Allow, "flow.toml:22", "the team database"},
		{"mapped address allowed", "::ffff:10.20.1.2", 5432, profiles.Allow, "flow.toml:22", ""},
		{"deny beats allow", "10.20.9.9", 5432, profiles.Deny, "flow.toml:27", "matches connect deny rule"},
		{"address outside", "10.21.0.1", 5432, profiles.Deny, modeLoc, "an address is reached only through a rule that names it"},
		{"address ask", "192.0.2.10", 22, profiles.Ask, "flow.toml:39", "the build box"},
		{"IPv6 literal", "[fd00:ec2::254]", 80, profiles.Allow, "flow.toml:31", ""},
		{"a name rule does not open an address", "127.0.0.1", 443, profiles.Deny, modeLoc, "no [[connect]] rule"},
		{"non-ASCII", "gíthub.com", 443, profiles.Deny, "flow.toml", "xn--"},
		{"empty host", "", 443, profiles.Deny, "flow.toml", "bad destination: empty host"},
		{"port zero", "github.com", 0, profiles.Deny, "flow.toml", "port 0"},
		{"bad IPv4", "10.1.2", 443, profiles.Deny, "flow.toml", "bad destination"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			v := DecideConnect(p, tt.host, tt.port)
			if v.Decision != tt.want || v.Rule.String() != tt.rule || !strings.Contains(v.Reason, tt.reason) {
				t.Errorf("DecideConnect(%q, %d) = %s [%s] %q; want %s [%s] %q", tt.host, tt.port, v.Decision, v.Rule, v.Reason, tt.want, tt.rule, tt.reason)
			}
			if v.Miss != (strings.Contains(tt.reason, "no [[connect]] rule") || strings.Contains(tt.reason, "only through a rule")) {
				t.Errorf("Miss = %v", v.Miss)
			}
		})
	}
}

func TestDecideConnectModes(t *testing.T) {
	doc := "user = \"nobody\"\nworkdirs = [\"/x\"]\nsecurity = \"%s\"\n[network]\nmode = \"%s\"\n"
	for _, tt := range []struct {
		name, security, mode string
		want                 Decision
		rule, reason         string
	}{
		{"none", "allowlist", "none", profiles.Deny, "a.toml:5", "network.mode = \"none\": runs of this agent have no network"},
		{"host", "full", "host", profiles.Allow, "a.toml:5", "connections are not checked"},
		{"security deny", "deny", "host", profiles.Deny, "a.toml:3", "may not run commands"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, err := profiles.ParseProfile("/agents/a.toml", []byte(fmt.Sprintf(doc, tt.security, tt.mode)), nil)
			if err != nil {
				t.Fatal(err)
			}
			v := DecideConnect(p, "github.com", 443)
			if v.Decision != tt.want || v.Rule.String() != tt.rule || !strings.Contains(v.Reason, tt.reason) {
				t.Errorf("= %s [%s] %q; want %s [%s] %q", v.Decision, v.Rule, v.Reason, tt.want, tt.rule, tt.reason)
			}
		})
	}
	// Mode not written: the default none, cited at the profile file.
	p, err := profiles.ParseProfile("/agents/a.toml", []byte("user = \"nobody\"\nworkdirs = [\"/x\"]\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if v := DecideConnect(p, "github.com", 443); v.Decision != profiles.Deny || v.Rule.String() != "a.toml" {
		t.Errorf("default mode: %s [%s] %q", v.Decision, v.Rule, v.Reason)
	}
}

func TestConnectVerdictLine(t *testing.T) {
	p := proxyProfile(t)
	v := DecideConnect(p, "backboard.railway.app", 443)
	if got, want := v.Line(), "backboard.railway.app:443: production infrastructure is changed by the release pipeline (flow.toml:9)"; got != want {
		t.Errorf("Line() = %q, want %q", got, want)
	}
	v = DecideConnect(p, "2001:db8::1", 443)
	if got := v.Target(); got != "[2001:db8::1]:443" {
		t.Errorf("Target() = %q", got)
	}
}

func TestClassifyAddr(t *testing.T) {
	for _, tt := range []struct {
		addr string
		want AddrClass
	}{
		{"8.8.8.8", Public},
		{"1.1.1.1", Public},
		{"2606:4700::1111", Public},
		{"0.0.0.0", Unspecified},
		{"0.255.255.255", Unspecified},
		{"::", Unspecified},
		{"127.0.0.1", Loopback},
		{"127.255.255.254", Loopback},
		{"::1", Loopback},
		{"::ffff:127.0.0.1", Loopback},
		{"10.0.0.0", Private},
		{"10.255.255.255", Private},
		{"9.255.255.255", Public},
		{"11.0.0.0", Public},
		{"172.16.0.1", Private},
		{"172.31.255.255", Private},
		{"172.15.255.255", Public},
		{"172.32.0.0", Public},
		{"192.168.1.1", Private},
		{"192.169.0.0", Public},
		{"::ffff:192.168.1.1", Private},
		{"fc00::1", Private},
		{"fdff:ffff::1", Private},
		{"fe00::1", Public},
		{"fec0::1", Private},
		{"100.64.0.0", CGNAT},
		{"100.127.255.255", CGNAT},
		{"100.63.255.255", Public},
		{"100.128.0.0", Public},
		{"169.254.0.1", LinkLocal},
		{"169.254.255.255", LinkLocal},
		{"fe80::1", LinkLocal},
		{"febf::1", LinkLocal},
		{"169.254.169.254", Metadata},
		{"::ffff:169.254.169.254", Metadata},
		{"169.254.170.2", Metadata},
		{"100.100.100.200", Metadata},
		{"fd00:ec2::254", Metadata},
		{"192.0.0.192", Metadata},
		{"64:ff9b::a9fe:a9fe", Metadata}, // NAT64 of 169.254.169.254
		{"64:ff9b::7f00:1", Loopback},    // NAT64 of 127.0.0.1
		{"64:ff9b::808:808", Public},     // NAT64 of 8.8.8.8
		{"2002:a00:1::", Private},        // 6to4 of 10.0.0.1
		{"2002:7f00:1::1", Loopback},     // 6to4 of 127.0.0.1
		{"::a00:1", Reserved},            // IPv4-compatible
		{"2001:db8::1", Reserved},
		{"2001::1", Reserved}, // Teredo
		{"192.0.2.1", Reserved},
		{"198.51.100.1", Reserved},
		{"203.0.113.255", Reserved},
		{"198.18.0.1", Reserved},
		{"198.19.255.255", Reserved},
		{"198.20.0.0", Public},
		{"224.0.0.1", Multicast},
		{"239.255.255.250", Multicast},
		{"ff02::1", Multicast},
		{"::ffff:224.0.0.1", Multicast},
		{"240.0.0.1", Broadcast},
		{"255.255.255.255", Broadcast},
		{"223.255.255.255", Public},
	} {
		t.Run(tt.addr, func(t *testing.T) {
			if got := ClassifyAddr(netip.MustParseAddr(tt.addr)); got != tt.want {
				t.Errorf("ClassifyAddr(%s) = %q, want %q", tt.addr, got, tt.want)
			}
		})
	}
	if got := ClassifyAddr(netip.MustParseAddr("fe80::1%eth0")); got != LinkLocal {
		t.Errorf("zoned link-local = %q", got)
	}
	if got := ClassifyAddr(netip.Addr{}); got != Unspecified {
		t.Errorf("zero Addr = %q", got)
	}
}

func TestCheckAddr(t *testing.T) {
	p := proxyProfile(t)
	cfg, err := profiles.ParseConfig("/etc/execgate/execgate.toml", []byte("[network]\nprivate_ok = [\"127.0.0.0/8\", \"172.16.0.0/12\", \"169.254.0.0/16\", \"100.100.100.200\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	ok := &cfg.PrivateOK
	for _, tt := range []struct {
		name       string
		addr       string
		port       uint16
		privateOK  *profiles.PrefixList
		want       Decision
		rule, frag string
	}{
		{"public", "140.82.112.3", 443, nil, profiles.Allow, modeLoc, "a public address"},
		{"loopback refused", "127.0.0.1", 443, nil, profiles.Deny, modeLoc, "127.0.0.1 is a loopback address: refused unless"},
		{"loopback private_ok", "127.0.0.1", 443, ok, profiles.Allow, "execgate.toml:2", "listed in private_ok (127.0.0.0/8)"},
		{"mapped loopback private_ok", "::ffff:127.0.0.1", 443, ok, profiles.Allow, "execgate.toml:2", ""},
		{"IPv6 loopback not listed", "::1", 443, ok, profiles.Deny, modeLoc, "loopback"},
		{"private named by a rule", "10.20.3.4", 5432, nil, profiles.Allow, "flow.toml:22", "connect allow rule \"10.20.0.0/16:5432\" names it"},
		{"private, rule's port differs", "10.20.3.4", 443, nil, profiles.Deny, modeLoc, "private address"},
		{"deny rule beats private_ok and allow", "10.20.9.1", 5432, ok, profiles.Deny, "flow.toml:27", "matches connect deny rule"},
		{"ask rule names it", "192.0.2.10", 22, nil, profiles.Allow, "flow.toml:39", "connect ask rule"},
		{"private not listed", "192.168.0.1", 443, ok, profiles.Deny, modeLoc, "192.168.0.1 is a private address"},
		{"CGNAT", "100.64.1.1", 443, ok, profiles.Deny, modeLoc, "CGNAT"},
		{"metadata under a listed CIDR", "169.254.169.254", 80, ok, profiles.Deny, modeLoc, "names exactly this address"},
		{"link-local under a listed CIDR", "169.254.1.1", 80, ok, profiles.Allow, "execgate.toml:2", "link-local"},
		{"metadata listed exactly", "100.100.100.200", 80, ok, profiles.Allow, "execgate.toml:2", "cloud metadata"},
		{"metadata named by a rule", "fd00:ec2::254", 80, nil, profiles.Allow, "flow.toml:31", ""},
		{"metadata rule's port differs", "fd00:ec2::254", 443, nil, profiles.Deny, modeLoc, "cloud metadata"},
		{"NAT64 metadata", "64:ff9b::a9fe:a9fe", 80, ok, profiles.Deny, modeLoc, "cloud metadata"},
		{"multicast never", "224.0.0.1", 80, &profiles.PrefixList{Prefixes: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}, Locs: []profiles.Loc{{}}}, profiles.Deny, modeLoc, "never a destination"},
		{"unspecified never", "0.0.0.0", 80, nil, profiles.Deny, modeLoc, "never a destination"},
		{"broadcast never", "255.255.255.255", 80, nil, profiles.Deny, modeLoc, "never a destination"},
		{"a name rule opens no address", "10.1.1.1", 443, nil, profiles.Deny, modeLoc, "private address"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			v := CheckAddr(p, tt.privateOK, netip.MustParseAddr(tt.addr), tt.port)
			if v.Decision != tt.want || v.Rule.String() != tt.rule || !strings.Contains(v.Reason, tt.frag) {
				t.Errorf("CheckAddr(%s, %d) = %s [%s] %q; want %s [%s] %q", tt.addr, tt.port, v.Decision, v.Rule, v.Reason, tt.want, tt.rule, tt.frag)
			}
		})
	}
	if v := CheckAddr(p, ok, netip.Addr{}, 443); v.Decision != profiles.Deny {
		t.Errorf("no address: %+v", v)
	}
}
