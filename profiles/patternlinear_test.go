package profiles

import (
	"strings"
	"testing"
	"time"
)

// oldGlobMatch is the backtracking matcher glob replaced, kept verbatim as
// the reference: results must not change, only the running time.
func oldGlobMatch(g, s string) bool {
	for len(g) > 0 {
		switch g[0] {
		case '*':
			for len(g) > 0 && g[0] == '*' {
				g = g[1:]
			}
			if len(g) == 0 {
				return true
			}
			for i := 0; i <= len(s); i++ {
				if oldGlobMatch(g, s[i:]) {
					return true
				}
			}
			return false
		case '?':
			if len(s) == 0 {
				return false
			}
			g, s = g[1:], s[1:]
		case '[':
			end := classEnd(g, 0)
			if len(s) == 0 || end < 0 || !classMatch(g[1:end], s[0]) {
				return false
			}
			g, s = g[end+1:], s[1:]
		case '\\':
			if len(g) < 2 || len(s) == 0 || g[1] != s[0] {
				return false
			}
			g, s = g[2:], s[1:]
		default:
			if len(s) == 0 || g[0] != s[0] {
				return false
			}
			g, s = g[1:], s[1:]
		}
	}
	return len(s) == 0
}

func newGlobMatch(g, s string) bool {
	c := compileGlob(g)
	return c.match(s)
}

func TestGlobMatchOracle(t *testing.T) {
	globs := map[string]string{
		"empty":          "",
		"star":           "*",
		"stars":          "***",
		"literal":        "abc",
		"leading star":   "*.env",
		"trailing star":  "--force*",
		"both stars":     "*a*",
		"middle star":    "a*b",
		"multi star":     "*a*b*c",
		"repeat segs":    "*ab*ab*",
		"overlap":        "*aba*aba",
		"prefix suffix":  "ab*ba",
		"question":       "?",
		"questions":      "a??b",
		"question star":  "*?*?",
		"class":          "[ab].txt",
		"class neg bang": "[!ab]*",
		"class neg hat":  "*[^a-c]",
		"class range":    "[a-z0-9]*[A-Z]",
		"class bracket":  "[]a]*",
		"class negbrkt":  "[!]]",
		"class escape":   `[\]\-]*`,
		"class dash end": "[a-]",
		"class hi esc":   `[a-\]`,
		"class star":     "[*]*[?]",
		"escape star":    `\**`,
		"escape q":       `a\?b`,
		"escape bs":      `*\\*`,
		"escape plain":   `\a\b*`,
		"trailing bs":    `ab\`,
		"star trail bs":  `*\`,
		"unterminated":   "*[ab",
		"unterm late":    "x*y[",
		"slash":          "*/*",
		"slash class":    "[/]*",
		"high bytes":     "*\xff[\x80-\xfe]",
		"nul":            "*\x00*",
	}
	texts := []string{
		"", "a", "b", "ab", "ba", "aba", "abab", "ababa", "abc", "abcabc",
		"x.env", ".env", "a.txt", "c.txt", "--force", "--force-with-lease",
		"aXb", "a0Z", "]", "-", "\\", "*", "?", "**", "*?", "a?b", "a\\b",
		"ab\\", "config/prod.env", "/", "a/b", "//", "\xff\x80", "\xff\xff",
		"x\x00y", "xy", "xay", "aabb", "cab", "zzz", "abcab", "abba", "a-",
	}
	// Segments longer than one 64-bit word of the bit-parallel search.
	long := strings.Repeat("[ab]", 63) + "?[!a]" + strings.Repeat("a", 10)
	globs["long segment"] = "*" + long + "*"
	globs["long head tail"] = long + "*" + long
	globs["long middle"] = "*b*" + long + "*a"
	for i := range 8 {
		x := strings.Repeat("ab", 40+i) + "b" + strings.Repeat("a", 10+i)
		texts = append(texts, x, x+x, "b"+x+"a", x[1:], strings.Repeat("a", 64+i)+"bb"+strings.Repeat("a", 10))
	}
	for name, g := range globs {
		t.Run(name, func(t *testing.T) {
			c := compileGlob(g)
			for _, s := range texts {
				if got, want := c.match(s), oldGlobMatch(g, s); got != want {
					t.Errorf("glob %q text %q: got %v, want %v", g, s, got, want)
				}
			}
		})
	}
}

// A match costs time linear in the argument: the agent picks the argument.
func TestGlobMatchLinear(t *testing.T) {
	const mib = 1 << 20
	as := strings.Repeat("a", mib)
	tests := []struct {
		name, glob, text string
		want             bool
	}{
		{"a*b", "*a*b", as, false},
		{"a*a*a*a*b", "*a*a*a*a*b", as, false},
		{"a*a*a*a*a", "*a*a*a*a*a", as, true},
		{"classes", "*[a]*[a]*[a]*[!a]", as, false},
		{"questions", "*?a*?a*?a*?b", as, false},
		{"long segment", "*" + strings.Repeat("a", 100) + "b*", as, false},
		{"long class segment", "*" + strings.Repeat("[a]", 100) + "b*", as, false},
		{"escaped", `*\a*\a*\a*\b`, as, false},
		{"slashes", "*/*/*/*x", strings.Repeat("/", mib), false},
		{"suffix", "*a*a*a*a*b", as + "b", true},
		{"issue 40 KB", "*a*b", as[:40<<10], false},
		{"issue 160 B", "*a*a*a*a*b", as[:160], false},
		{"middle scan", "*a*b*a", as, false},
		{"middle scan class", "*a*[b]*a", as, false},
		{"trailing star", "*a*a*a*a*b*", as, false},
		{"long middle class", "*" + strings.Repeat("[a]", 200) + "b*a", as, false},
		{"long middle class hit", "*" + strings.Repeat("[a]", 200) + "b*a", as + "ba", true},
		{"question run", "*" + strings.Repeat("?", 70) + "b*", as, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := CompilePattern("x " + tt.glob)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			got := p.Match(Argv{Path: "/bin/x", Name: "x", Args: []Word{{Text: tt.text}}}, Deny)
			d := time.Since(start)
			want := No
			if tt.want {
				want = Yes
			}
			if got != want {
				t.Errorf("got %s, want %s", got, want)
			}
			if d > time.Second {
				t.Errorf("took %v on a %d-byte argument", d, len(tt.text))
			}
			t.Logf("%v", d)
		})
	}
}

func FuzzGlobMatch(f *testing.F) {
	f.Add("*a*b", "aab")
	f.Add("[!a-c]?*", "d/e")
	f.Add(`*\**[]x]`, "**]")
	f.Add("a[^]b", "a]")
	f.Add(`*[\]-]`, "x-")
	f.Add("*", "")
	f.Add(`\`, "")
	f.Add("*"+strings.Repeat("?", 70)+"b*", strings.Repeat("a", 80)+"b")
	f.Add("*[ab]*"+strings.Repeat("[ab]", 65), strings.Repeat("ab", 40))
	f.Fuzz(func(t *testing.T, g, s string) {
		// Keep the exponential oracle quick: with k stars it costs about
		// len(s)^k, and never more than about 2^len(s).
		if len(g) > 160 || len(s) > 256 ||
			strings.Count(g, "*") > 3 && len(s) > 20 {
			return
		}
		if got, want := newGlobMatch(g, s), oldGlobMatch(g, s); got != want {
			t.Fatalf("glob %q text %q: got %v, want %v", g, s, got, want)
		}
	})
}
