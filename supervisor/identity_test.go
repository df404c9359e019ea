package supervisor

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/execgate/execgate/profiles"
)

func TestBinIndexKnowsCopies(t *testing.T) {
	p, err := profiles.ParseProfile("/a/bot.toml", []byte("uid = 4242\nworkdirs = [\"/srv\"]\n[[rule]]\nmatch = \"git checkout **\"\naction = \"deny\"\n[[rule]]\nmatch = \"ls **\"\naction = \"allow\"\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	ix := newBinIndex(map[string]*profiles.Profile{"bot": p})
	dir := t.TempDir()
	b, err := os.ReadFile("/usr/bin/git")
	if err != nil {
		t.Fatal(err)
	}
	cp := filepath.Join(dir, "mygit")
	os.WriteFile(cp, b, 0o755)
	self := os.Getpid()
	if got := ix.identify(self, cp); got != "git" {
		t.Errorf("a copy of git identified as %q", got)
	}
	if got := ix.identify(self, "/usr/bin/git"); got != "" {
		t.Errorf("git itself needs no identity: %q", got)
	}
	// Same size, other bytes: not git.
	b[len(b)/2] ^= 0xff
	other := filepath.Join(dir, "other")
	os.WriteFile(other, b, 0o755)
	if got := ix.identify(self, other); got != "" {
		t.Errorf("a different file of git's size identified as %q", got)
	}
	// Allow rules do not enter the index: a copy of ls is just a file.
	lsb, _ := os.ReadFile("/usr/bin/ls")
	os.WriteFile(filepath.Join(dir, "myls"), lsb, 0o755)
	if got := ix.identify(self, filepath.Join(dir, "myls")); got != "" {
		t.Errorf("copy of an allowed program identified as %q", got)
	}
}
