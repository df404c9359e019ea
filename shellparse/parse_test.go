package shellparse

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fakeLook resolves every bare name to /usr/bin/NAME and paths as given,
// so tests do not depend on what the machine has installed.
func fakeLook(name, dir, path string) Program {
	if strings.HasPrefix(name, "git-") {
		return Program{Path: gitExecPath + "/" + name}
	}
	if strings.HasPrefix(name, "/") {
		return Program{Path: name}
	}
	if strings.Contains(name, "/") {
		return Program{}
	}
	return Program{Path: "/usr/bin/" + name}
}

func parse(t *testing.T, script string) []Invocation {
	t.Helper()
	invs, err := Parse(script, Options{Dir: "/srv/app", Home: "/home/flow", Shell: "/bin/bash", LookPath: fakeLook})
	if err != nil {
		t.Fatalf("Parse(%q): %v", script, err)
	}
	return invs
}

// show renders an invocation compactly: matched argv, then via in <>.
func show(inv Invocation) string {
	var ws []string
	for _, w := range inv.MatchArgs() {
		switch {
		case w.Multi:
			ws = append(ws, "["+w.Text+"...]")
		case w.Dynamic:
			ws = append(ws, "["+w.Text+"]")
		default:
			ws = append(ws, w.Text)
		}
	}
	for _, r := range inv.Redirects {
		ws = append(ws, r.Op+r.Target.Text)
	}
	s := strings.Join(ws, " ")
	if len(inv.Via) > 0 {
		s += " <" + strings.Join(inv.Via, ",") + ">"
	}
	return s
}

func showAll(invs []Invocation) []string {
	out := []string{}
	for _, inv := range invs {
		out = append(out, show(inv))
	}
	return out
}

func TestWalk(t *testing.T) {
	tests := []struct {
		name, script string
		want         []string
	}{
		{"simple", "git status", []string{"git status"}},
		{"pipeline", "ls -la | grep src | wc -l", []string{"ls -la", "grep src", "wc -l"}},
		{"and or list", "a && b || c; d", []string{"a", "b", "c", "d"}},
		{"background", "sleep 1 & wait", []string{"sleep 1", "wait"}},
		{"subshell", "(cd x; git checkout y)", []string{"cd x", "git checkout y"}},
		{"brace group", "{ git add -A; git commit -m m; }", []string{"git add -A", "git commit -m m"}},
		{"command substitution", "echo $(git rev-parse HEAD)", []string{"echo [$(git rev-parse HEAD)...]", "git rev-parse HEAD"}},
		{"backticks", "echo `whoami`", []string{"echo [`whoami`...]", "whoami"}},
		{"quoted substitution", `echo "$(id -u)"`, []string{`echo ["$(id -u)"]`, "id -u"}},
		{"process substitution", "diff <(ls a) <(ls b)", []string{"diff [<(ls a)] [<(ls b)]", "ls a", "ls b"}},
		{"function body", "f() { git push; }; f", []string{"git push", "f"}},
		{"function keyword", "function g { rm -rf x; }", []string{"rm -rf x"}},
		{"if", "if test -f x; then make; elif true; then :; else npm test; fi", []string{"test -f x", "make", "true", ":", "npm test"}},
		{"for", "for f in a b; do cat $f; done", []string{"cat [$f...]"}},
		{"c-style for", "for ((i=0;i<3;i++)); do touch x; done", []string{"touch x"}},
		{"while", "while read l; do echo $l; done < list", []string{"<list", "read l", "echo [$l...]"}},
		{"until", "until false; do break; done", []string{"false", "break"}},
		{"case", "case $x in a) git checkout a;; *) ls;; esac", []string{"git checkout a", "ls"}},
		{"here-doc substitution", "cat <<EOF\n$(git checkout x)\nEOF", []string{"cat", "git checkout x"}},
		{"here-doc quoted", "cat <<'EOF'\n$(git checkout x)\nEOF", []string{"cat"}},
		{"assignment substitution", "X=$(git checkout x)", []string{"git checkout x"}},
		{"declare substitution", "export X=$(git checkout x)", []string{"git checkout x"}},
		{"test clause", "[[ $(git checkout x) ]]", []string{"git checkout x"}},
		{"arithmetic", "echo $(( $(git checkout x) + 1 ))", []string{"echo [$(( $(git checkout x) + 1 ))...]", "git checkout x"}},
		{"parameter default", "echo ${X:-$(git checkout x)}", []string{"echo [${X:-$(git checkout x)}...]", "git checkout x"}},
		{"time keyword", "time git checkout x", []string{"git checkout x"}},
		{"negation", "! git checkout x", []string{"git checkout x"}},
		{"coproc", "coproc git checkout x", []string{"git checkout x"}},
		{"nested subst", "echo $(echo $(git checkout x))", []string{"echo [$(echo $(git checkout x))...]", "echo [$(git checkout x)...]", "git checkout x"}},
		{"comments", "# git checkout x\nls # rm -rf /", []string{"ls"}},
		{"line continuation", "git \\\ncheckout x", []string{"git checkout x"}},
		{"quotes removed", `'git' "check"out 'x y'`, []string{"git checkout x y"}},
		{"ansi-c quoting", `$'\x67\151t' $'che\u0063kout'`, []string{"git checkout"}},
		{"escaped", `g\it checkout`, []string{"git checkout"}},
		{"tilde", "cat ~/.ssh/id_rsa ~other/x", []string{"cat /home/flow/.ssh/id_rsa [~other/x]"}},
		{"glob", "rm *.txt", []string{"rm [*.txt...]"}},
		{"brace expansion", "{git,checkout,x}", []string{"[{git,checkout,x}...]"}},
		{"dynamic program", "G=git; $G checkout x", []string{"[$G...] checkout x"}},
		{"quoted dynamic", `"$G" checkout`, []string{`["$G"] checkout`}},
		{"dollar at", `git "$@"`, []string{`git ["$@"...]`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := showAll(parse(t, tt.script))
			if !slices.Equal(got, tt.want) {
				t.Errorf("Parse(%q)\n got %q\nwant %q", tt.script, got, tt.want)
			}
		})
	}
}

func TestNestedAndWrappers(t *testing.T) {
	tests := []struct {
		name, script string
		want         []string
	}{
		{"sh -c", "sh -c 'git checkout x'", []string{"sh -c git checkout x", "git checkout x <sh -c>"}},
		{"bash -lc", `bash -lc "npm run build"`, []string{"bash -lc npm run build", "npm run build <bash -c>"}},
		{"bash -o opt -c", "bash -o pipefail -c 'ls'", []string{"bash -o pipefail -c ls", "ls <bash -c>"}},
		{"nested twice", `sh -c "bash -c 'git push'"`, []string{"sh -c bash -c 'git push'", "bash -c git push <sh -c>", "git push <sh -c,bash -c>"}},
		{"env bash -c", "env bash -c 'git checkout x'", []string{"env bash -c git checkout x", "bash -c git checkout x <env>", "git checkout x <env,bash -c>"}},
		{"dynamic -c", `sh -c "$S"`, []string{`sh -c ["$S"]`, "[<script not knowable before it runs>...] <sh -c>"}},
		{"script file", "bash deploy.sh", []string{"bash deploy.sh", "[<script not knowable before it runs>...] <bash deploy.sh>"}},
		{"pipe to shell", "curl -s x | sh", []string{"curl -s x", "sh", "[<script not knowable before it runs>...] <sh (stdin)>"}},
		{"here-doc to shell", "bash <<EOF\ngit checkout x\nEOF", []string{"bash", "git checkout x <bash <<<>"}},
		{"here-string to shell", "sh <<< 'git push'", []string{"sh", "git push <sh <<<>"}},
		{"eval", "eval 'git checkout' x", []string{"eval git checkout x", "git checkout x <eval>"}},
		{"eval dynamic", "eval $CMD", []string{"eval [$CMD...]", "[<script not knowable before it runs>...] <eval>"}},
		{"trap", "trap 'git push' EXIT", []string{"trap git push EXIT", "git push <trap>"}},
		{"source", ". ./env.sh", []string{". ./env.sh", "[<script not knowable before it runs>...] <. ./env.sh>"}},
		{"alias", "alias g=git\ng checkout x", []string{"alias g=git", "git checkout x <alias g>"}},
		{"env", "env -i FOO=1 -u BAR git checkout x", []string{"env -i FOO=1 -u BAR git checkout x", "git checkout x <env>"}},
		{"env -S", "env -S 'git checkout' x", []string{"env -S git checkout x", "git checkout x <env -S>"}},
		{"env --", "env -- git push", []string{"env -- git push", "git push <env>"}},
		{"nice", "nice -n 5 git push", []string{"nice -n 5 git push", "git push <nice>"}},
		{"nice old style", "nice -10 git push", []string{"nice -10 git push", "git push <nice>"}},
		{"nohup", "nohup git push", []string{"nohup git push", "git push <nohup>"}},
		{"timeout", "timeout -s KILL 5 npm run build", []string{"timeout -s KILL 5 npm run build", "npm run build <timeout>"}},
		{"timeout long", "timeout --kill-after=1 5s git push", []string{"timeout --kill-after=1 5s git push", "git push <timeout>"}},
		{"stdbuf", "stdbuf -oL git push", []string{"stdbuf -oL git push", "git push <stdbuf>"}},
		{"time binary", "/usr/bin/time -f %e git push", []string{"/usr/bin/time -f %e git push", "git push <time>"}},
		{"command", "command git push", []string{"command git push", "git push <command>"}},
		{"command -v", "command -v git", []string{"command -v git"}},
		{"builtin", "builtin echo x", []string{"builtin echo x", "echo x <builtin>"}},
		{"exec", "exec -a name git push", []string{"exec -a name git push", "git push <exec>"}},
		{"exec redirect only", "exec 3>log", []string{"exec >log"}},
		{"xargs", "echo main | xargs git checkout", []string{"echo main", "xargs git checkout", "git checkout [<arguments read from stdin>...] <xargs>"}},
		{"xargs options", "xargs -n 1 -P4 -0 git checkout", []string{"xargs -n 1 -P4 -0 git checkout", "git checkout [<arguments read from stdin>...] <xargs>"}},
		{"xargs -I", "xargs -I{} git checkout {}", []string{"xargs -I{} git checkout {}", "git checkout [{}] [<arguments read from stdin>...] <xargs>"}},
		{"xargs default", "xargs", []string{"xargs", "echo [<arguments read from stdin>...] <xargs>"}},
		{"sudo", "sudo -u root git push", []string{"sudo -u root git push", "git push <sudo>"}},
		{"setsid", "setsid -f git push", []string{"setsid -f git push", "git push <setsid>"}},
		{"ionice", "ionice -c 3 git push", []string{"ionice -c 3 git push", "git push <ionice>"}},
		{"taskset", "taskset -c 0 git push", []string{"taskset -c 0 git push", "git push <taskset>"}},
		{"chrt", "chrt -o 0 git push", []string{"chrt -o 0 git push", "git push <chrt>"}},
		{"flock", "flock /tmp/l git push", []string{"flock /tmp/l git push", "git push <flock>"}},
		{"flock -c", "flock -n /tmp/l -c 'git push'", []string{"flock -n /tmp/l -c git push", "git push <flock -c>"}},
		{"watch", "watch -n 1 git status", []string{"watch -n 1 git status", "git status <watch>"}},
		{"script -c", "script -qc 'git push' /dev/null", []string{"script -qc git push /dev/null", "git push <script -c>"}},
		{"su -c", "su - root -c 'git push'", []string{"su - root -c git push", "git push <su -c>"}},
		{"find -exec", `find . -name '*.go' -exec gofmt -w {} \; -execdir git add {} +`, []string{"find . -name *.go -exec gofmt -w {} ; -execdir git add {} +", "gofmt -w [{}] <find -exec>", "git add [{}] [{}......] <find -execdir>"}},
		{"busybox", "busybox rm -rf x", []string{"busybox rm -rf x", "rm -rf x <busybox>"}},
		{"wrapper chain", "nohup nice timeout 5 env A=1 git push", []string{"nohup nice timeout 5 env A=1 git push", "nice timeout 5 env A=1 git push <nohup>", "timeout 5 env A=1 git push <nohup,nice>", "env A=1 git push <nohup,nice,timeout>", "git push <nohup,nice,timeout,env>"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := showAll(parse(t, tt.script))
			if !slices.Equal(got, tt.want) {
				t.Errorf("Parse(%q)\n got %q\nwant %q", tt.script, got, tt.want)
			}
		})
	}
}

func TestNormalise(t *testing.T) {
	tests := []struct{ script, want string }{
		{"git -C /srv/app -c core.pager=cat checkout x", "git checkout x"},
		{"git --git-dir=.git --work-tree . --no-pager checkout x", "git checkout x"},
		{"git -c alias.co=checkout co -b x", "git checkout -b x"},
		{"git -c alias.co='checkout -b' co x", "git checkout -b x"},
		{"git -c alias.st=status checkout x", "git checkout x"}, // unrelated alias
		{"git co -b x", "git [co] -b x"},                        // not a git command: a config alias?
		{"git -c alias.status=push status", "git status"},       // aliases never shadow builtins
		{"git $SUB x", "git [$SUB...] x"},
		{"npm --silent run-script build", "npm run build --silent"},
		{"npm -w pkg rum build -- --prod", "npm run build -w pkg -- --prod"},
		{"npm t", "npm test"},
		{"git-switch -c x", "git-switch switch -c x"}, // git reads argv[0] git-SUB as git SUB
		{"/usr/lib/git-core/git-checkout -bx", "/usr/lib/git-core/git-checkout checkout -bx"},
		{"git-upload-pack ../r.git", "git-upload-pack upload-pack ../r.git"},
	}
	for _, tt := range tests {
		t.Run(tt.script, func(t *testing.T) {
			got := parse(t, tt.script)
			if s := show(got[0]); s != tt.want {
				t.Errorf("%q normalised to %q, want %q", tt.script, s, tt.want)
			}
			if got[0].Args[0].Text != strings.Fields(tt.script)[0] || len(got[0].Args) != len(splitWords(tt.script)) {
				t.Errorf("%q: Args must stay as written, got %q", tt.script, got[0].String())
			}
		})
	}
	// A shell alias (!cmd) is parsed as a script.
	t.Run("shell alias", func(t *testing.T) {
		got := showAll(parse(t, "git -c 'alias.x=!git checkout main' x"))
		if !slices.Contains(got, "git checkout main <git alias x>") {
			t.Errorf("git !alias: %q", got)
		}
	})
}

func splitWords(s string) []string {
	invs, _ := Parse(s, Options{LookPath: fakeLook})
	out := []string{}
	for _, w := range invs[0].Args {
		out = append(out, w.Text)
	}
	return out
}

func TestResolution(t *testing.T) {
	look := func(name, dir, path string) Program {
		if name == "git" && path == "/opt/bin:/usr/bin" {
			return Program{Path: "/opt/bin/git"}
		}
		return fakeLook(name, dir, path)
	}
	invs, _ := Parse("git status; ./tool x; cd sub; ./tool y; PATH=/tmp:$PATH; git log", Options{Dir: "/srv/app", Path: "/opt/bin:/usr/bin", LookPath: look})
	progs := []string{}
	for _, inv := range invs {
		progs = append(progs, inv.Prog)
	}
	// ./tool is not found by fakeLook; after cd and PATH changes nothing
	// is resolved statically.
	want := []string{"/opt/bin/git", "", "", "", ""}
	if !slices.Equal(progs, want) {
		t.Errorf("progs = %q, want %q", progs, want)
	}
	if invs[0].Dir != "/srv/app" || invs[3].Dir != "" {
		t.Errorf("dirs: %q %q", invs[0].Dir, invs[3].Dir)
	}
}

func TestRealLookPath(t *testing.T) {
	p := LookPath("sh", "/", DefaultPath)
	if p.Path == "" || !strings.HasPrefix(p.Path, "/") {
		t.Fatalf("LookPath(sh) = %+v", p)
	}
	if p := LookPath("no-such-program-xyz", "/", DefaultPath); p.Path != "" {
		t.Errorf("missing program resolved to %q", p.Path)
	}
	// /bin/sh is a link on Debian (to dash): the real name is used, and the
	// trusted link name is kept as the alias.
	if p := LookPath("/bin/sh", "/", ""); p.Path != "/bin/sh" && p.Path != "/usr/bin/sh" && p.Alias != "sh" {
		t.Errorf("LookPath(/bin/sh) = %+v: a root-owned link should keep its name as alias", p)
	}
}

// A Resolver keeps answers for its TTL on the clock it was given, and no
// longer; the cache is its own, not the package's.
func TestResolverCache(t *testing.T) {
	dir := t.TempDir()
	tool := filepath.Join(dir, "tool")
	now := time.Unix(1000, 0)
	r := NewResolver(2*time.Second, func() time.Time { return now })
	if p := r.LookPath("tool", "/", dir); p.Path != "" {
		t.Fatalf("before the file exists: %+v", p)
	}
	if err := os.WriteFile(tool, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Second)
	if p := r.LookPath("tool", "/", dir); p.Path != "" {
		t.Errorf("within the TTL the cached answer stands: %+v", p)
	}
	if p := new(Resolver).LookPath("tool", "/", dir); p.Path != tool {
		t.Errorf("another Resolver has a cache of its own: %+v", p)
	}
	if p := LookPath("tool", "/", dir); p.Path != tool {
		t.Errorf("LookPath does not cache: %+v", p)
	}
	now = now.Add(time.Second)
	if p := r.LookPath("tool", "/", dir); p.Path != tool {
		t.Errorf("after the TTL the file system is asked again: %+v", p)
	}
	os.Remove(tool)
	if p := NewResolver(-1, nil).LookPath("tool", "/", dir); p.Path != "" {
		t.Errorf("a negative TTL caches nothing: %+v", p)
	}
	// The cache is bounded: names come from agents.
	for i := 0; i < resolverMax+10; i++ {
		r.LookPath("no-such-"+strconv.Itoa(i), "/", dir)
	}
	r.mu.Lock()
	n := len(r.cache)
	r.mu.Unlock()
	if n > resolverMax {
		t.Errorf("%d cached names, more than %d", n, resolverMax)
	}
}

// dash and bash read ((x)) differently: as nested subshells running x, and
// as arithmetic. The analysis must read it as the shell that runs it will.
func TestGrammarFollowsShell(t *testing.T) {
	for _, tc := range []struct{ shell, want string }{{"/bin/sh", "x"}, {"/bin/dash", "x"}, {"/bin/bash", ""}} {
		t.Run(filepath.Base(tc.shell), func(t *testing.T) {
			invs, err := Parse("((x))", Options{Shell: tc.shell, LookPath: fakeLook})
			got := ""
			if len(invs) > 0 {
				got = invs[0].String()
			}
			if err != nil || got != tc.want {
				t.Errorf("%s: ((x)) gave %q, %v; want %q", tc.shell, got, err, tc.want)
			}
		})
	}
	// A nested sh -c inside bash is read as POSIX again.
	invs, _ := Parse("sh -c '((git push))'", Options{Shell: "/bin/bash", LookPath: fakeLook})
	if len(invs) != 2 || invs[1].String() != "git push" {
		t.Errorf("sh -c inside bash: %q", showAll(invs))
	}
	// Bash-only syntax under sh is a parse error, not a misreading.
	if _, err := Parse("cat <(ls)", Options{Shell: "/bin/sh", LookPath: fakeLook}); err == nil {
		t.Error("process substitution under sh must not parse")
	}
}

func TestRedirects(t *testing.T) {
	invs := parse(t, "grep TOKEN < .env > out 2>&1 2>>err; cat 0<>rw; cmd &> all")
	var got []string
	for _, inv := range invs {
		for _, r := range inv.Redirects {
			got = append(got, r.Op+r.Target.Text+map[bool]string{true: "R", false: ""}[r.Read]+map[bool]string{true: "W", false: ""}[r.Write])
		}
	}
	want := []string{"<.envR", ">outW", ">>errW", "<>rwRW", "&>allW"}
	if !slices.Equal(got, want) {
		t.Errorf("redirects %q, want %q", got, want)
	}
}

func TestRoles(t *testing.T) {
	invs := parse(t, "f() { :; }; f; cd /; env git x; git y; < in")
	roles := []Role{}
	for _, inv := range invs {
		roles = append(roles, inv.Role)
	}
	want := []Role{Builtin, Function, Builtin, Wrapper, Command, Command, RedirectOnly}
	if !slices.Equal(roles, want) {
		t.Errorf("roles %v, want %v", roles, want)
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name, script string
		want         string
		pos          Pos
	}{
		{"unterminated", "echo 'unterminated", "parse error", Pos{1, 6}},
		{"second line", "ls\nif true; then", "parse error", Pos{2, 1}},
		{"nested", "sh -c 'echo (('", "parse error", Pos{1, 1}}, // nested: outer position
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.script, Options{LookPath: fakeLook})
			var pe *Error
			if !errors.As(err, &pe) || !strings.Contains(pe.Msg, tt.want) || pe.Pos.Line != tt.pos.Line {
				t.Errorf("Parse(%q) = %v, want %q at %v", tt.script, err, tt.want, tt.pos)
			}
		})
	}
	// Deep nesting of scripts is bounded.
	s := strings.Repeat("eval ", MaxNesting+2) + "x"
	if _, err := Parse(s, Options{LookPath: fakeLook}); err == nil || !strings.Contains(err.Error(), "nested scripts deeper") {
		t.Errorf("deep -c nesting: %v", err)
	}
}

// Bad input must give an error or a result quickly, never a panic or hang.
func TestHostileInput(t *testing.T) {
	for _, sh := range []string{"/bin/sh", "/bin/bash"} {
		deep := strings.Repeat("( ", 10000) + "x" + strings.Repeat(" )", 10000)
		if _, err := Parse(deep, Options{Shell: sh, LookPath: fakeLook}); err == nil {
			t.Errorf("%s: 10,000 nested subshells: want an error", sh)
		}
	}
	deepSubst := strings.Repeat("$(", 5000) + "x" + strings.Repeat(")", 5000)
	if _, err := Parse(deepSubst, Options{LookPath: fakeLook}); err == nil {
		t.Error("5,000 nested substitutions: want an error")
	}
	many := strings.Repeat("true;", MaxInvocations+1)
	if _, err := Parse(many, Options{LookPath: fakeLook}); err == nil {
		t.Error("too many commands: want an error")
	}
	for _, s := range []string{"\xff\xfe ls", "ls \x00", "echo $'\\u{zz}'", "$((", "<<", "a |", "|| b", "case x in", "f() {", "`"} {
		Parse(s, Options{LookPath: fakeLook}) // must not panic
	}
}
