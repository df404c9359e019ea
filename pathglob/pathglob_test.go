package pathglob

import (
	"slices"
	"testing"
)

func TestMatch(t *testing.T) {
	const home = "/home/flow"
	tests := []struct {
		pat  string
		path string
		want bool
	}{
		{"**/.env", "/srv/app/.env", true},
		{"**/.env", "/.env", true},
		{"**/.env", "/srv/app/.env/inner", true}, // a directory named .env
		{"**/.env", "/srv/app/.envrc", false},
		{".env", "/srv/app/.env", true}, // floating by default
		{"**/.env.*", "/srv/app/config/.env.production", true},
		{"**/.env.*", "/srv/app/.env", false},
		{"~/.ssh", "/home/flow/.ssh/id_ed25519", true},
		{"~/.ssh", "/home/flow/.sshx", false},
		{"~/.ssh", "/root/.ssh/id_rsa", false},
		{"~/.*_history", "/home/flow/.bash_history", true},
		{"~/.*_history", "/home/flow/sub/.bash_history", false},
		{"~", "/home/flow/anything", true},
		{"/etc/shadow", "/etc/shadow", true},
		{"/etc/shadow", "/etc/shadow-", false},
		{"/srv/*/secrets", "/srv/a/secrets/k", true},
		{"/srv/**/secrets", "/srv/secrets", true},
		{"/srv/**/secrets", "/srv/a/b/c/secrets", true},
		{"/srv/**/secrets", "/opt/a/secrets", false},
		{"**/{id_rsa,id_ed25519}", "/x/id_ed25519", true},
		{"**/{id_rsa,id_ed25519}", "/x/id_dsa", false},
		{"config/*.pem", "/srv/app/config/tls.pem", true},
		{"config/*.pem", "/srv/app/configs/tls.pem", false},
		{"**/.env", "relative/.env", false},
		{"**/.env", "/srv/app/sub/../.env", true},
	}
	for _, tt := range tests {
		t.Run(tt.pat+" "+tt.path, func(t *testing.T) {
			s, err := NewSet([]string{tt.pat}, home)
			if err != nil {
				t.Fatalf("NewSet(%q): %v", tt.pat, err)
			}
			got, ok := s.Match(tt.path)
			if ok != tt.want {
				t.Errorf("%q.Match(%q) = %v, want %v", tt.pat, tt.path, ok, tt.want)
			}
			if ok && got != tt.pat {
				t.Errorf("%q.Match(%q) named %q", tt.pat, tt.path, got)
			}
		})
	}
}

func TestRootsAndFloating(t *testing.T) {
	s, err := NewSet([]string{"**/.env", "~/.ssh", "/etc/ssl/private/*.key", "/srv/{a,b}/x"}, "/home/u")
	if err != nil {
		t.Fatal(err)
	}
	if !s.Floating() {
		t.Error("Floating() = false with **/.env")
	}
	want := []string{"/home/u/.ssh", "/etc/ssl/private", "/srv/a/x", "/srv/b/x"}
	if got := s.Roots(); !slices.Equal(got, want) {
		t.Errorf("Roots() = %q, want %q", got, want)
	}
	anchored, _ := NewSet([]string{"/etc/shadow"}, "")
	if anchored.Floating() {
		t.Error("Floating() = true for an anchored set")
	}
	var zero *Set
	if _, ok := zero.Match("/x"); ok || !zero.Empty() {
		t.Error("nil Set must match nothing")
	}
}

func TestInvalid(t *testing.T) {
	for _, p := range []string{"", "~bob/.ssh", "/a/b**/c", "/a/[x", "/a/{b,c", "/a/b}", "/a/../b", "x\x00y"} {
		if err := Validate(p); err == nil {
			t.Errorf("Validate(%q) = nil, want error", p)
		}
	}
	if _, err := NewSet([]string{"~/.ssh"}, ""); err == nil {
		t.Error("NewSet with ~ and no home: want error")
	}
}

func TestBraceBound(t *testing.T) {
	if _, err := ExpandBraces("{a,b,c,d}{a,b,c,d}{a,b,c,d}{a,b,c,d}{a,b}"); err == nil {
		t.Error("want error for more than maxAlternatives alternatives")
	}
	got, err := ExpandBraces("git {status,diff}")
	if err != nil || !slices.Equal(got, []string{"git status", "git diff"}) {
		t.Errorf("ExpandBraces = %q, %v", got, err)
	}
	got, _ = ExpandBraces(`a\{b,c\}`)
	if len(got) != 1 {
		t.Errorf("escaped brace expanded: %q", got)
	}
}

func FuzzMatch(f *testing.F) {
	f.Add("**/.env", "/srv/app/.env")
	f.Add("~/.{ssh,aws}", "/home/u/.aws/credentials")
	f.Add("/a/**/**/b/*", "/a/b/c")
	f.Fuzz(func(t *testing.T, pat, p string) {
		s, err := NewSet([]string{pat}, "/home/u")
		if err != nil {
			return
		}
		s.Match(p)
		s.Roots()
	})
}
