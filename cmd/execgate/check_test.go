package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/execgate/execgate/profiles"
)

// Proxy-mode decisions: exit 0, 1 and 3, and the address check of an IP
// literal.
func TestCheckConnectProxyMode(t *testing.T) {
	doc := `user = "nobody"
workdirs = ["/tmp"]
[[connect]]
match = "{registry.npmjs.org,github.com,*.github.com}:443"
action = "allow"
[[connect]]
match = "*.amazonaws.com:*"
action = "ask"
reason = "cloud APIs need a human"
[[connect]]
match = "*.railway.app:*"
action = "deny"
reason = "production infrastructure"
[[connect]]
match = "{10.0.0.0/8,192.168.0.0/16}:5432"
action = "allow"
[network]
mode = "proxy"
`
	p, err := profiles.ParseProfile("/agents/flow.toml", []byte(doc), nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := profiles.ParseConfig("/etc/execgate/execgate.toml", []byte("[network]\nprivate_ok = [\"10.0.0.0/8\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, target string
		json         bool
		code         int
		want         []string
	}{
		{"allow", "github.com:443", false, exitOK, []string{"ALLOW  github.com:443\n       [flow.toml:4] matches connect allow rule", "=> ALLOW\n", "(the address the name resolves to is checked"}},
		{"ask", "ec2.us-east-1.amazonaws.com:443", false, exitAsk, []string{"=> ASK: ec2.us-east-1.amazonaws.com:443: cloud APIs need a human (flow.toml:7)"}},
		{"deny", "backboard.railway.app:443", false, exitDeny, []string{"=> DENY: backboard.railway.app:443: production infrastructure (flow.toml:11)"}},
		{"miss", "gitlab.com:443", false, exitDeny, []string{"=> DENY: gitlab.com:443: no [[connect]] rule allows gitlab.com:443 (flow.toml:18)"}},
		{"apex of a wildcard", "amazonaws.com:443", false, exitDeny, []string{"no [[connect]] rule allows amazonaws.com:443"}},
		// An IP literal is reached only through a rule that names it, and
		// that rule opens the private address too (private_ok matters for
		// the addresses names resolve to).
		{"private literal", "192.168.1.5:5432", false, exitOK, []string{"address: ALLOW [flow.toml:15] 192.168.1.5 is a private address, and connect allow rule"}},
		{"literal not named", "10.1.2.3:22", false, exitDeny, []string{"no [[connect]] rule allows 10.1.2.3:22 (an address is reached only through a rule that names it"}},
		{"json", "[::ffff:10.9.9.9]:5432", true, exitOK, []string{`"connect": "10.9.9.9:5432"`, `"address": {`, `"decision": "allow"`}},
		{"bad host", "gíthub.com:443", false, exitDeny, []string{"bad destination", "xn--"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := checkConnect(p, cfg, tt.target, tt.json, &out, &errb)
			if code != tt.code {
				t.Errorf("exit %d, want %d\n%s%s", code, tt.code, out.String(), errb.String())
			}
			for _, w := range tt.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
		})
	}
}
