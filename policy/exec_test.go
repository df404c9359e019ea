package policy

import (
	"testing"

	"github.com/execgate/execgate/profiles"
)

func mkProfile(t *testing.T, doc string) *profiles.Profile {
	t.Helper()
	p, err := profiles.ParseProfile("/a/p.toml", []byte("uid = 4242\nworkdirs = [\"/srv\"]\n"+doc), nil)
	if err != nil {
		t.Fatal(err)
	}
	p.ResolveWith(noAccounts())
	return p
}

func TestDecideExec(t *testing.T) {
	full := mkProfile(t, `security = "full"
[[rule]]
match = "git {checkout,switch,branch} **"
action = "deny"
[files]
deny_read = ["**/.env"]
`)
	allow := mkProfile(t, `security = "allowlist"
nested_allow = ["node **"]
[[rule]]
match = "npm test **"
action = "allow"
[[rule]]
match = "make **"
action = "allow"
nested = "any"
[[rule]]
match = "git push **"
action = "deny"
`)
	npmRule, makeRule := &allow.Rules[0], &allow.Rules[1]
	git := func(args ...string) Exec {
		return Exec{Path: "/usr/bin/git", Argv: append([]string{"git"}, args...), Cwd: "/srv"}
	}
	tests := []struct {
		name string
		p    *profiles.Profile
		e    Exec
		want profiles.Action
	}{
		{"deny rule", full, git("checkout", "-b", "x"), profiles.Deny},
		{"global options", full, git("-C", "/srv", "-c", "a.b=c", "switch", "x"), profiles.Deny},
		{"alias on the command line", full, git("-c", "alias.co=checkout", "co", "x"), profiles.Deny},
		{"unknown subcommand may be an alias", full, git("co", "x"), profiles.Deny},
		{"renamed link", full, Exec{Path: "/usr/bin/git", Argv: []string{"./g", "checkout", "x"}}, profiles.Deny},
		{"argv[0] lies", full, Exec{Path: "/usr/bin/git", Argv: []string{"ls", "checkout", "x"}}, profiles.Deny},
		{"allowed in full", full, git("status"), profiles.Allow},
		{"file rule at run time", full, Exec{Path: "/usr/bin/cat", Argv: []string{"cat", ".env"}, Cwd: "/srv"}, profiles.Deny},
		{"empty argv", full, Exec{Path: "/usr/bin/git"}, profiles.Allow},
		{"allow rule", allow, Exec{Path: "/usr/bin/npm", Alias: "npm", Argv: []string{"npm", "test"}}, profiles.Allow},
		{"shell running a script", allow, Exec{Path: "/usr/bin/dash", Alias: "sh", Argv: []string{"sh", "-c", "jest"}}, profiles.Allow},
		{"miss", allow, Exec{Path: "/usr/bin/jest", Argv: []string{"jest"}}, profiles.Deny},
		{"nested_allow", allow, Exec{Path: "/usr/bin/node", Argv: []string{"node", "x.js"}}, profiles.Allow},
		{"under nested any", allow, Exec{Path: "/usr/bin/cc", Argv: []string{"cc", "-c", "a.c"}, UnderAny: makeRule}, profiles.Allow},
		{"deny beats nested any", allow, Exec{Path: "/usr/bin/git", Argv: []string{"git", "push"}, UnderAny: makeRule}, profiles.Deny},
		{"interpreter of an allowed script", allow, Exec{Path: "/usr/bin/node", Argv: []string{"node", "/usr/bin/npm", "test"}, Continues: npmRule}, profiles.Allow},
		{"deny beats the interpreter rule", allow, Exec{Path: "/usr/bin/git", Argv: []string{"git", "push", "x"}, Continues: npmRule}, profiles.Deny},
		{"dashed git name", full, Exec{Path: "/usr/bin/git", Argv: []string{"git-switch", "-c", "x"}}, profiles.Deny},
		{"git exec path", full, Exec{Path: "/usr/lib/git-core/git-checkout", Identity: "git", Argv: []string{"/usr/lib/git-core/git-checkout", "-bx"}}, profiles.Deny},
		{"git-upload-pack is not an alias", full, Exec{Path: "/usr/bin/git", Argv: []string{"git-upload-pack", "../remote.git"}}, profiles.Allow},
		{"dynamic loader", full, Exec{Path: "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", Argv: []string{"/lib64/ld-linux-x86-64.so.2", "/usr/bin/git", "status"}}, profiles.Deny},
		{"script file is not transparent", allow, Exec{Path: "/usr/bin/bash", Argv: []string{"bash", "x.sh"}}, profiles.Deny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := DecideExec(tt.p, tt.e)
			if v.Decision != tt.want {
				t.Errorf("%s: %s (%s: %s), want %s", tt.name, v.Decision, v.Rule, v.Reason, tt.want)
			}
		})
	}
	if v := DecideExec(allow, Exec{Path: "/usr/bin/make", Argv: []string{"make", "test"}}); v.By == nil || !v.By.NestedAny {
		t.Errorf("make: the verdict must name its nested = any rule: %+v", v)
	}
}
