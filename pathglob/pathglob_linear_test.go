package pathglob

import (
	"path"
	"strings"
	"testing"
	"time"
)

// oldMatchPrefix is the backtracking matcher matchPrefix replaced, kept
// verbatim as the reference: results must not change, only the running time.
func oldMatchPrefix(pat []seg, segs []string) bool {
	for {
		if len(pat) == 0 {
			return true
		}
		if pat[0].any {
			for len(pat) > 1 && pat[1].any {
				pat = pat[1:]
			}
			for i := 0; i <= len(segs); i++ {
				if oldMatchPrefix(pat[1:], segs[i:]) {
					return true
				}
			}
			return false
		}
		if len(segs) == 0 || !pat[0].match(segs[0]) {
			return false
		}
		pat, segs = pat[1:], segs[1:]
	}
}

// compareOracle checks matchPrefix against oldMatchPrefix for every
// alternative of pat on abs and returns what the set says.
func compareOracle(t *testing.T, pat, abs string) bool {
	t.Helper()
	s, err := NewSet([]string{pat}, "/home/u")
	if err != nil {
		t.Fatalf("NewSet(%q): %v", pat, err)
	}
	if !path.IsAbs(abs) {
		_, ok := s.Match(abs)
		return ok
	}
	segs := splitAbs(path.Clean(abs))
	hit := false
	for _, p := range s.pats {
		got, want := matchPrefix(p.segs, segs), oldMatchPrefix(p.segs, segs)
		if got != want {
			t.Errorf("pattern %q (%+v) path %q: got %v, want %v", pat, p.segs, abs, got, want)
		}
		hit = hit || got
	}
	if _, ok := s.Match(abs); ok != hit {
		t.Errorf("Set.Match(%q) = %v, want %v", abs, ok, hit)
	}
	return hit
}

func TestMatchPrefixOracle(t *testing.T) {
	pats := map[string]string{
		"floating":         ".env",
		"root any":         "**",
		"anchored":         "/etc/shadow",
		"anchored any":     "/srv/**",
		"any middle":       "/srv/**/secrets",
		"any any":          "/a/**/**/b/*",
		"two any":          "**/a/**/b",
		"three any":        "**/a/**/a/**/b/**",
		"run between":      "**/a/b/**/b/a",
		"repeated run":     "**/a/a/**/a/a",
		"glob segs":        "**/*.pem/**/[ab]?",
		"class":            "/x/[!a]*/**/[a-c]",
		"escape":           `**/\*/**/a\?`,
		"home":             "~/.ssh",
		"home any":         "~/**/.aws/**/credentials",
		"braces":           "**/{a,b}/**/{c,d/e}",
		"star only":        "/*/*/*",
		"trailing any":     "**/a/**",
		"dots":             "**/.*/**/..x",
		"single star any":  "/*/**/*",
		"leading anchored": "/a/**/a/**/a",
	}
	paths := []string{
		"/", "/a", "/b", "/a/b", "/b/a", "/a/a", "/a/a/a", "/a/a/b", "/a/b/a",
		"/a/b/b/a", "/a/a/a/a", "/x/a/a/b/a/a", "/a/x/b/y/a/b", "/srv", "/srv/secrets",
		"/srv/a/b/secrets/k", "/etc/shadow", "/etc/shadow-", "/home/u/.ssh/id",
		"/home/u/x/.aws/y/credentials", "/x/c/d/e", "/x/b/y/d/e", "/k/tls.pem/q/ab",
		"/*/x/a?", `/\*/a?`, "/x/b/q/c", "/x/a/q/c", "/.env", "/q/.env/z",
		"/.h/..x", "/a//b", "/a/./b/../a", "relative/a/b",
		"/" + strings.Repeat("a/", 20) + "b",
	}
	for name, pat := range pats {
		t.Run(name, func(t *testing.T) {
			for _, p := range paths {
				compareOracle(t, pat, p)
			}
		})
	}
}

// Matching is polynomial in the path however many "**" a pattern has: the
// agent builds the trees that deny_read walks and names the paths it opens.
func TestMatchPrefixLinear(t *testing.T) {
	deep := strings.Repeat("/a", 1<<19) // a 1 MiB path of 512Ki segments
	tests := []struct {
		name, pat, path string
		want            bool
	}{
		{"two any", "**/a/**/b", deep, false},
		{"four any", "**/a/**/a/**/a/**/a/**/b", deep, false},
		{"four any hit", "**/a/**/a/**/a/**/a/**/b", deep + "/b", true},
		{"runs", "**/a/a/**/a/a/**/a/b", deep, false},
		{"globs", "**/[a]/**/?/**/*/**/[^a]", deep, false},
		{"bang is no negation", "**/[a]/**/?/**/*/**/[!a]", deep, true}, // path.Match: [!a] is ! or a
		{"anchored", "/a/**/a/**/a/**/b/**", deep, false},
		{"trailing any", "**/a/**/a/**/a/**", deep, true},
		{"long segment", "**/*a*a*a*b/**/x", "/" + strings.Repeat("a", 1<<20), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := NewSet([]string{tt.pat}, "/home/u")
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			_, got := s.Match(tt.path)
			d := time.Since(start)
			if got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
			if d > time.Second {
				t.Errorf("took %v on a %d-byte path", d, len(tt.path))
			}
			t.Logf("%v", d)
		})
	}
}

func FuzzPathMatch(f *testing.F) {
	f.Add("**/a/**/b", "/a/x/b")
	f.Add("/a/**/**/b/*", "/a/b/c")
	f.Add("**/{a,b}/**/[!a]?", "/b/a/cd")
	f.Add("~/**/.ssh/**", "/home/u/x/.ssh")
	f.Add("**/a/a/**/a", "/a/a/a/a")
	f.Fuzz(func(t *testing.T, pat, abs string) {
		if len(pat) > 128 || len(abs) > 512 ||
			strings.Count(pat, "**") > 3 && strings.Count(abs, "/") > 16 {
			return // keep the exponential oracle quick
		}
		if _, err := NewSet([]string{pat}, "/home/u"); err != nil {
			return
		}
		compareOracle(t, pat, abs)
	})
}
