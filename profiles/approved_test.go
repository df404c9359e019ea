package profiles

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestExactPattern(t *testing.T) {
	for _, argv := range [][]string{
		{"npm", "install", "left-pad"},
		{"git", "commit", "-m", "it's *done* {really}"},
		{"echo", `say "hi" it's`, "[x]", ""},
	} {
		pat := ExactPattern("/usr/bin/"+argv[0], argv)
		p, err := CompilePattern(pat)
		if err != nil {
			t.Fatalf("%q: %v", pat, err)
		}
		a := Argv{Path: "/usr/bin/" + argv[0], Name: argv[0]}
		for _, w := range argv[1:] {
			a.Args = append(a.Args, Word{Text: w})
		}
		if got := p.Match(a, Allow); got != Yes {
			t.Errorf("%q does not match its own argv %q", pat, argv)
		}
		a.Args = append(a.Args, Word{Text: "extra"})
		if got := p.Match(a, Allow); got != No {
			t.Errorf("%q matches a longer argv", pat)
		}
		other := Argv{Path: "/tmp/" + argv[0], Name: argv[0], Args: a.Args[:len(a.Args)-1]}
		if got := p.Match(other, Allow); got != No {
			t.Errorf("%q matches another program file", pat)
		}
	}
}

func TestApprovedFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "approved", "flow.toml")
	if err := AppendApproved(path, ExactPattern("/usr/bin/npm", []string{"npm", "ci"}), "/srv", "approved by uid 0"); err != nil {
		t.Fatal(err)
	}
	if err := AppendApproved(path, ExactPattern("/usr/bin/git", []string{"git", "fetch"}), "/srv", "approved by uid 0"); err != nil {
		t.Fatal(err)
	}
	p, err := ParseProfile("/a/flow.toml", []byte("uid = 4242\nworkdirs = [\"/srv\"]\n[[rule]]\nmatch = \"git **\"\naction = \"deny\"\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AddApproved(path, nil); err != nil {
		t.Fatal(err)
	}
	if len(p.Rules) != 3 || p.Rules[1].Action != Allow || p.Rules[1].Cwd != "/srv" || !strings.HasSuffix(p.Rules[2].Loc.String(), "flow.toml:11") {
		t.Errorf("rules: %+v", p.Rules)
	}
	os.WriteFile(path, []byte("[[rule]]\nmatch = \"rm **\"\naction = \"deny\"\n"), 0o644)
	if err := p.AddApproved(path, nil); err == nil || !strings.Contains(err.Error(), "must be an allow rule") {
		t.Errorf("a deny rule in the approved file: %v", err)
	}
	if err := p.AddApproved(filepath.Join(dir, "none.toml"), nil); err != nil {
		t.Errorf("a missing file is no error: %v", err)
	}
}
