package changes

import (
	"crypto/sha256"
	"fmt"
	"strings"
	"testing"
)

func TestDiff(t *testing.T) {
	e := newEnv(t)
	e.host("printf 'one\\ntwo\\nthree\\n' > text.txt && printf 'bye\\n' > gone.txt && printf 'a\\0b' > bin && " +
		"ln -s text.txt link && mkdir d && echo big > d/big && echo m > mode")
	r := e.prepare("df")
	defer r.Discard()
	e.overlay(r, false, "printf 'one\\n2\\nthree\\n' > text.txt && rm gone.txt && printf 'a\\0c\\0' > bin && "+
		"ln -sfn gone.txt link && printf 'hello\\n' > new.txt && head -c 1100000 /dev/zero | tr '\\0' x > d/big && "+
		"printf '\\377\\376' > latin1 && chmod 0600 mode")
	s := compute(t, r)
	var b strings.Builder
	if err := s.Diff(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"diff a/text.txt b/text.txt\n--- a/text.txt\n+++ b/text.txt\n@@ -1,3 +1,3 @@\n one\n-two\n+2\n three\n",
		"diff a/gone.txt b/gone.txt\ndeleted file mode 0644 owner 65534:65534\n--- a/gone.txt\n+++ /dev/null\n@@ -1 +0,0 @@\n-bye\n",
		"diff a/new.txt b/new.txt\nnew file mode 0644 owner 65534:65534\n--- /dev/null\n+++ b/new.txt\n@@ -0,0 +1 @@\n+hello\n",
		"diff a/bin b/bin\nbinary: 3 bytes sha256 " + sum("a\x00b") + " -> 4 bytes sha256 " + sum("a\x00c\x00") + "\n",
		"diff a/latin1 b/latin1\nnew file mode 0644 owner 65534:65534\nbinary: /dev/null -> 2 bytes sha256 " + sum("\xff\xfe") + "\n",
		"diff a/link b/link\nsymlink: text.txt -> gone.txt\n",
		"diff a/d/big b/d/big\ndiff too large (over 1 MiB): 4 bytes sha256 " + sum("big\n") + " -> 1100000 bytes sha256 " + sum(strings.Repeat("x", 1100000)) + "\n",
		"diff a/mode b/mode\nold mode 0644\nnew mode 0600\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the diff lacks:\n%s\n--- got:\n%s", want, out)
		}
	}
	b.Reset()
	if err := s.Diff(&b, "d", e.lower+"/mode"); err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(b.String(), "\ndiff a/") + 1; !strings.HasPrefix(b.String(), "diff a/d/big") || got != 2 {
		t.Errorf("Diff of two paths:\n%s", b.String())
	}
}

func sum(s string) string { return fmt.Sprintf("%x", sha256.Sum256([]byte(s))) }
