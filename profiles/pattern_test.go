package profiles

import (
	"fmt"
	"strings"
	"testing"
)

func lits(ws ...string) []Word {
	out := make([]Word, len(ws))
	for i, w := range ws {
		switch {
		case w == "$*":
			out[i] = Word{Text: w, Multi: true}
		case strings.HasPrefix(w, "$"):
			out[i] = Word{Text: w, Dynamic: true}
		default:
			out[i] = Word{Text: w}
		}
	}
	return out
}

func argv(path string, ws ...string) Argv {
	a := Argv{Path: path, Args: lits(ws[1:]...)}
	if !strings.HasPrefix(ws[0], "$") {
		a.Name = ws[0]
	}
	return a
}

func TestPatternMatch(t *testing.T) {
	const git = "/usr/bin/git"
	tests := []struct {
		pat  string
		a    Argv
		act  Action
		want Tri
	}{
		{"git status", argv(git, "git", "status"), Allow, Yes},
		{"git status", argv(git, "git", "status", "-s"), Allow, No}, // anchored: covers the whole argv
		{"git status **", argv(git, "git", "status", "-s", "x"), Allow, Yes},
		{"git status **", argv(git, "git", "status"), Allow, Yes}, // ** is zero or more
		{"git * x", argv(git, "git", "a", "x"), Allow, Yes},
		{"git * x", argv(git, "git", "x"), Allow, No}, // * is exactly one
		{"git {checkout,switch} **", argv(git, "git", "switch", "main"), Deny, Yes},
		{"git {checkout,switch} **", argv(git, "git", "status"), Deny, No},
		{"git push --force*", argv(git, "git", "push", "--force-with-lease"), Deny, Yes},
		{"cat *.env", argv("/usr/bin/cat", "cat", "config/prod.env"), Deny, Yes}, // * crosses /
		{"cat ?.txt", argv("/usr/bin/cat", "cat", "ab.txt"), Deny, No},
		{"cat [ab].txt", argv("/usr/bin/cat", "cat", "b.txt"), Deny, Yes},
		{"cat [!ab].txt", argv("/usr/bin/cat", "cat", "b.txt"), Deny, No},
		{`echo "*"`, argv("/usr/bin/echo", "echo", "x"), Deny, No}, // quoted * is literal
		{`echo "*"`, argv("/usr/bin/echo", "echo", "*"), Deny, Yes},
		{"/usr/bin/git **", argv(git, "git", "log"), Allow, Yes},
		{"/usr/local/bin/git **", argv(git, "git", "log"), Allow, No},
		{"**", argv(git, "git", "anything"), Ask, Yes},
		{"* --help", argv("/bin/ls", "ls", "--help"), Allow, Yes},
		{"git ** x ** y **", argv(git, "git", "a", "x", "b", "y", "c"), Deny, Yes},
		{"git ** x ** y **", argv(git, "git", "a", "y", "b", "x"), Deny, No},
		// Words not knowable before running.
		{"git checkout **", argv(git, "git", "$X"), Deny, Maybe},
		{"git checkout **", argv(git, "git", "checkout", "$X"), Deny, Yes}, // ** absorbs it
		{"git checkout **", argv("", "$G", "checkout"), Deny, Maybe},
		{"git status", argv(git, "git", "status", "$*"), Allow, Maybe}, // $* may be empty
		{"git status", argv(git, "git", "$*"), Allow, Maybe},
		{"git status", argv(git, "git", "log", "$*"), Allow, No},
		{"git a b c", argv(git, "git", "$*", "c"), Deny, Maybe}, // one unknown run may be "a b"
		{"git a b c", argv(git, "git", "$*", "d"), Deny, No},
		// Program names: allow sees the real file, deny also the name as written.
		{"git **", Argv{Path: "/usr/bin/rm", Name: "./git"}, Allow, No},
		{"git **", Argv{Path: "/usr/bin/git", Name: "./g"}, Deny, Yes},
		{"rm **", Argv{Path: "/usr/bin/git", Name: "rm"}, Deny, Yes},
		{"npm test", Argv{Path: "/usr/lib/node_modules/npm/bin/npm-cli.js", Name: "npm", Alias: "npm", Args: lits("test")}, Allow, Yes},
		{"git **", Argv{Name: "./git"}, Allow, Maybe},                   // a path the script creates
		{"git **", Argv{Name: "git"}, Allow, Yes},                       // not installed: the name is all there is
		{"git **", Argv{Name: "git", Unresolvable: true}, Allow, Maybe}, // PATH changed: could be anything
		{"git **", Argv{Name: "git", Unresolvable: true}, Deny, Yes},
		{"rm **", Argv{Name: "git", Unresolvable: true}, Deny, Maybe},
	}
	for i, tt := range tests {
		t.Run(fmt.Sprintf("%02d %s", i, tt.pat), func(t *testing.T) {
			p, err := CompilePattern(tt.pat)
			if err != nil {
				t.Fatalf("CompilePattern(%q): %v", tt.pat, err)
			}
			if got := p.Match(tt.a, tt.act); got != tt.want {
				t.Errorf("%q.Match(%+v, %s) = %s, want %s", tt.pat, tt.a, tt.act, got, tt.want)
			}
		})
	}
}

// Hostile argv must not make matching slow: the matcher is O(pattern*argv).
func TestPatternLongArgv(t *testing.T) {
	p, _ := CompilePattern("x ** a ** b ** c ** d")
	ws := make([]string, 20000)
	for i := range ws {
		ws[i] = "a"
	}
	a := argv("/bin/x", append([]string{"x"}, ws...)...)
	if got := p.Match(a, Deny); got != No {
		t.Errorf("got %s", got)
	}
}

func FuzzPattern(f *testing.F) {
	f.Add("git {checkout,switch} **", "git checkout main")
	f.Add(`cat "*.env" [a-z]?`, "cat x y")
	f.Add("** ", "")
	f.Fuzz(func(t *testing.T, pat, args string) {
		p, err := CompilePattern(pat)
		if err != nil {
			return
		}
		ws := strings.Fields(args)
		if len(ws) == 0 {
			ws = []string{"x"}
		}
		for _, act := range []Action{Allow, Deny} {
			r := p.Match(argv("/bin/"+ws[0], ws...), act)
			if r > Yes {
				t.Fatalf("bad Tri %d", r)
			}
		}
	})
}
