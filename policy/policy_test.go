package policy

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/execgate/execgate/profiles"
	"github.com/execgate/execgate/shellparse"
)

// noAccounts is an account database with no accounts in it: what the
// tests decide must not depend on the accounts of the host they run on
// (a host with a flow user would give ~ another home).
func noAccounts() profiles.Accounts { return profiles.FixedAccounts() }

// load reads an example profile with no accounts known, so
// ErrUnknownAccount is expected and harmless here.
func load(t testing.TB, name string) *profiles.Profile {
	t.Helper()
	return loadWith(t, name, noAccounts())
}

func loadWith(t testing.TB, name string, acc profiles.Accounts) *profiles.Profile {
	t.Helper()
	cfg, err := profiles.LoadConfig("../examples/execgate.toml")
	if err != nil {
		t.Fatal(err)
	}
	p, err := profiles.Loader{Accounts: acc}.LoadFile("../examples/"+name+".toml", cfg.Defaults)
	if err != nil && !errors.Is(err, profiles.ErrUnknownAccount) {
		t.Fatal(err)
	}
	return p
}

// look resolves like a typical Debian host without depending on this one.
func look(name, dir, path string) shellparse.Program {
	if strings.HasPrefix(name, "/") {
		return shellparse.Program{Path: name}
	}
	if strings.Contains(name, "/") {
		return shellparse.Program{}
	}
	switch name {
	case "npm":
		return shellparse.Program{Path: "/usr/lib/node_modules/npm/bin/npm-cli.js", Alias: "npm"}
	case "sh":
		return shellparse.Program{Path: "/usr/bin/dash", Alias: "sh"}
	}
	return shellparse.Program{Path: "/usr/bin/" + name}
}

func decide(t testing.TB, p *profiles.Profile, script string) *Result {
	t.Helper()
	return Decide(p, script, Options{Dir: "/srv/fibreflow", LookPath: look})
}

// The incident, replayed against examples/flow.toml: each of flow's
// commands is denied by the rule that was written for it.
func TestIncident(t *testing.T) {
	flow := load(t, "flow")
	deny := []struct{ name, script, rule, invocation string }{
		{"checkout", "git checkout flow/a11y-badge-recordings", "flow.toml:14", "git checkout flow/a11y-badge-recordings"},
		{"build", "npm run build", "flow.toml:19", "npm run build"},
		{"add-all-and-commit", `git add -A && git commit -m "WCAG touch target fixes"`, "flow.toml:14", "git add -A"},
		// .env patterns are site-wide in the example execgate.toml, which
		// comes first.
		{"cat-env", "cat .env", "execgate.toml:21", "cat .env"},
		{"source-env", "source .env", "execgate.toml:21", "source .env"},
		{"redirect-env", "grep TOKEN < .env", "execgate.toml:21", "grep TOKEN <.env"},
		{"substitution-env", "echo $(cat ./config/.env.production)", "execgate.toml:21", "cat ./config/.env.production"},
		{"pem", "cat deploy/tls.pem", "flow.toml:37", "cat deploy/tls.pem"},
		{"bash-c", "bash -c 'git checkout main'", "flow.toml:14", "git checkout main"},
		{"env-wrapper", "env FOO=1 git checkout x", "flow.toml:14", "git checkout x"},
		{"git-global-options", "/usr/bin/git -C /srv/fibreflow checkout x", "flow.toml:14", "/usr/bin/git -C /srv/fibreflow checkout x"},
		{"timeout-wrapper", "timeout 5 npm run build", "flow.toml:19", "npm run build"},
		{"xargs", "xargs git checkout <<< main", "flow.toml:14", "git checkout <arguments read from stdin>"},
		// Further disguises of the same commands.
		{"git-alias", "git -c alias.co=checkout co -b x", "flow.toml:14", "git -c alias.co=checkout co -b x"},
		{"npm-run-script", "npm --silent run-script build", "flow.toml:19", "npm --silent run-script build"},
		{"dynamic-program", "G=git; $G checkout -b x", "", "$G checkout -b x"}, // any deny rule could match $G
		{"find-exec", "find . -maxdepth 0 -exec git checkout -b x \\;", "flow.toml:14", "git checkout -b x"},
		{"sudo", "sudo git status", "execgate.toml:15", "sudo git status"},
		// No account flow here: ~ is a home that matches nothing real.
		{"ssh-key", "cat ~/.ssh/id_rsa", "execgate.toml:21", "cat /nonexistent/home/of/flow/.ssh/id_rsa"},
	}
	for _, tt := range deny {
		t.Run("deny/"+tt.name, func(t *testing.T) {
			r := decide(t, flow, tt.script)
			if r.Decision != profiles.Deny {
				t.Fatalf("%q: decision %s, want deny (%s)", tt.script, r.Decision, r.Line())
			}
			if got := r.Decisive.Rule.String(); tt.rule != "" && got != tt.rule {
				t.Errorf("%q: rule %s, want %s (%s)", tt.script, got, tt.rule, r.Decisive.Reason)
			}
			if got := r.Decisive.Invocation(); got != tt.invocation {
				t.Errorf("%q: decisive invocation %q, want %q", tt.script, got, tt.invocation)
			}
		})
	}
	for _, s := range []string{"git status", "git diff HEAD~1", "npm test", "ls -la | grep src", "git log --oneline -3", "npm run lint", "cat README.md", "echo done"} {
		t.Run("allow/"+s, func(t *testing.T) {
			if r := decide(t, flow, s); r.Decision != profiles.Allow {
				t.Errorf("%q: %s, want allow", s, r.Line())
			}
		})
	}
	// A miss asks (ask = "on-miss"), pointing at the ask setting.
	t.Run("miss-asks", func(t *testing.T) {
		r := decide(t, flow, "curl https://example.com")
		if r.Decision != profiles.Ask || r.Decisive.Rule.String() != "flow.toml:6" {
			t.Errorf("miss: %s", r.Line())
		}
	})
}

// With flow's account known, ~ is its home: the account lookup is the
// caller's (here a fixed one), never the host's by accident.
func TestHomeFromAccounts(t *testing.T) {
	flow := loadWith(t, "flow", profiles.FixedAccounts(profiles.Identity{User: "flow", UID: 4242, GID: 4242, Home: "/home/flow"}))
	if flow.UID != 4242 || flow.Home != "/home/flow" {
		t.Fatalf("uid %d home %q, want 4242 /home/flow", flow.UID, flow.Home)
	}
	r := decide(t, flow, "cat ~/.ssh/id_rsa")
	if r.Decision != profiles.Deny || r.Decisive.Invocation() != "cat /home/flow/.ssh/id_rsa" {
		t.Errorf("%s: %s", r.Decisive.Invocation(), r.Line())
	}
}

// One denied invocation denies the whole script, wherever it is.
func TestOneDenyDeniesAll(t *testing.T) {
	flow := load(t, "flow")
	for _, s := range []string{
		"git status; git push",
		"git status && (cd x; { git push; })",
		"if git status; then git push; fi",
		"ls | while read x; do git push; done",
	} {
		t.Run(s, func(t *testing.T) {
			if r := decide(t, flow, s); r.Decision != profiles.Deny {
				t.Errorf("%q: %s", s, r.Line())
			}
		})
	}
}

func TestModes(t *testing.T) {
	mk := func(extra string) *profiles.Profile {
		p, err := profiles.ParseProfile("/a/m.toml", []byte("uid = 4242\nworkdirs = [\"/srv\"]\n"+extra+`
[[rule]]
match = "git status"
action = "allow"
[[rule]]
match = "git push **"
action = "deny"
[[rule]]
match = "git push --dry-run"
action = "allow"
[[rule]]
match = "npm install **"
action = "ask"
`), nil)
		if err != nil {
			t.Fatal(err)
		}
		p.ResolveWith(noAccounts())
		return p
	}
	tests := []struct {
		mode, script string
		want         profiles.Action
	}{
		{"security = \"deny\"", "git status", profiles.Deny},
		{"security = \"deny\"", "", profiles.Deny},
		{"security = \"allowlist\"", "git status", profiles.Allow},
		{"security = \"allowlist\"", "git log", profiles.Deny},
		{"security = \"allowlist\"\nask = \"on-miss\"", "git log", profiles.Ask},
		{"security = \"allowlist\"", "git push --dry-run", profiles.Deny}, // deny > allow
		{"security = \"allowlist\"", "npm install x", profiles.Ask},       // ask > allow miss
		{"security = \"full\"", "git log", profiles.Allow},
		{"security = \"full\"", "git push origin", profiles.Deny},
		{"security = \"full\"", "npm install left-pad", profiles.Ask},
		{"security = \"full\"", "npm install x; git push", profiles.Deny}, // deny > ask across invocations
		{"security = \"full\"\nask = \"always\"", "git log", profiles.Ask},
		{"security = \"full\"\nask = \"always\"", "git push", profiles.Deny},
		{"security = \"allowlist\"", "echo hi; cd /; true", profiles.Allow}, // builtins exec nothing
		{"security = \"allowlist\"", "env A=1 git status", profiles.Allow},  // wrappers defer to what they run
		{"security = \"allowlist\"", "env A=1 git log", profiles.Deny},
		{"security = \"allowlist\"", "sh -c 'git status'", profiles.Allow},
		{"security = \"allowlist\"", "bash deploy.sh", profiles.Deny}, // a script file needs a rule
	}
	for _, tt := range tests {
		mode := strings.ReplaceAll(tt.mode, "\n", " ")
		t.Run(mode+"/"+tt.script, func(t *testing.T) {
			r := Decide(mk(tt.mode), tt.script, Options{Dir: "/srv", LookPath: look})
			if r.Decision != tt.want {
				t.Errorf("[%s] %q: %s, want %s", mode, tt.script, r.Line(), tt.want)
			}
		})
	}
}

// Words not knowable before running: without the runtime exec check they
// are denied where a deny rule could match; with it, they are left to it.
func TestUnknowable(t *testing.T) {
	flow := load(t, "flow")
	for _, s := range []string{"$G checkout x", "git $SUB x", `sh -c "$S"`, "eval $CMD", "git co -b x",
		"PATH=/tmp/evil:$PATH; git status", "hash -p /usr/bin/git g; g checkout x", "export PATH=.; ls"} {
		t.Run("static/"+s, func(t *testing.T) {
			r := Decide(flow, s, Options{Dir: "/srv/fibreflow", LookPath: look})
			if r.Decision == profiles.Allow {
				t.Errorf("static only: %q allowed", s)
			}
		})
	}
	full, _ := profiles.ParseProfile("/a/f.toml", []byte("uid = 4242\nworkdirs = [\"/srv\"]\nsecurity = \"full\"\n[[rule]]\nmatch = \"git checkout **\"\naction = \"deny\"\n"), nil)
	full.ResolveWith(noAccounts())
	r := Decide(full, "$G checkout x", Options{Dir: "/srv", LookPath: look, RuntimeCheck: true})
	if r.Decision != profiles.Allow || !r.Verdicts[0].Deferred {
		t.Errorf("with the runtime check: %s deferred=%v", r.Line(), r.Verdicts[0].Deferred)
	}
	r = Decide(full, "$G checkout x", Options{Dir: "/srv", LookPath: look})
	if r.Decision != profiles.Deny || !strings.Contains(r.Decisive.Reason, "not knowable") {
		t.Errorf("without the runtime check: %s", r.Line())
	}
}

func TestFileRules(t *testing.T) {
	flow := load(t, "flow")
	for _, s := range []string{
		"cat /srv/fibreflow/.env", "cat ../fibreflow/.env", "dd if=.env of=/tmp/x", "tar cf - .env.local",
		"base64 config/.env.production", "while read l; do echo $l; done < .env", "cat < id_rsa", "less ~/.aws/credentials",
		"cp .env /tmp/x", "ln -s .env y", "grep -r TOKEN --include=.env .", "git show HEAD:.env", "git show main:config/.env.production",
		"echo x > /srv/fibreflow/.git/HEAD", // read_only
	} {
		t.Run("deny/"+s, func(t *testing.T) {
			if r := decide(t, flow, s); r.Decision != profiles.Deny {
				t.Errorf("%q: %s", s, r.Line())
			}
		})
	}
	for _, s := range []string{"cat .envrc", "cat env.txt", "cat .git/HEAD", "echo x > notes.txt"} {
		t.Run("allow/"+s, func(t *testing.T) {
			if r := decide(t, flow, s); r.Decision != profiles.Allow {
				t.Errorf("%q: %s, want allow", s, r.Line())
			}
		})
	}
}

// Bad input gets a clear error and a deny, never a panic or a hang.
func TestBadInput(t *testing.T) {
	flow := load(t, "flow")
	tests := []struct {
		name, script string
		want         string
	}{
		{"too-large", strings.Repeat("a", 10<<20), "larger than"},
		{"nul", "ls\x00rm", "NUL"},
		{"not-utf8", "ls \xff\xfe", "UTF-8"},
		{"too-deep", strings.Repeat("( ", 10000) + "ls" + strings.Repeat(" )", 10000), "nested deeper"},
		{"unterminated", "echo 'unterminated", "1:6: parse error"},
		{"incomplete", "if true; then", "parse error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := decide(t, flow, tt.script)
			if r.Decision != profiles.Deny || r.Err == nil || !strings.Contains(r.Line(), tt.want) {
				t.Errorf("%.40q: %s, want deny with %q", tt.script, r.Line(), tt.want)
			}
		})
	}
}

// corpus is the benchmark's realistic agent command lines.
func corpus(t testing.TB) []string {
	b, err := os.ReadFile(filepath.Join("testdata", "corpus.txt"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out
}

func TestCorpusDecides(t *testing.T) {
	flow := load(t, "flow")
	c := corpus(t)
	if len(c) < 50 {
		t.Fatalf("corpus has %d lines, want at least 50", len(c))
	}
	counts := map[profiles.Action]int{}
	for _, s := range c {
		r := Decide(flow, s, Options{Dir: "/srv/fibreflow"})
		if r.Err != nil {
			t.Errorf("%q: %v", s, r.Err)
		}
		counts[r.Decision]++
	}
	if counts[profiles.Allow] == 0 || counts[profiles.Deny] == 0 {
		t.Errorf("corpus should exercise both outcomes: %v", counts)
	}
}
