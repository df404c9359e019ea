package supervisor

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/execgate/execgate/profiles"
)

func testBinIndex(t *testing.T) *binIndex {
	t.Helper()
	p, err := profiles.ParseProfile("/a/bot.toml", []byte("uid = 4242\nworkdirs = [\"/srv\"]\n[[rule]]\nmatch = \"git checkout **\"\naction = \"deny\"\n[[rule]]\nmatch = \"sleep **\"\naction = \"ask\"\n[[rule]]\nmatch = \"ls **\"\naction = \"allow\"\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	return newBinIndex(map[string]*profiles.Profile{"bot": p})
}

func TestIdentityKnowsCopies(t *testing.T) {
	ix := testBinIndex(t)
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

// The cache cannot be fooled by putting the times back: a same-size file
// that was not git, overwritten with git's bytes and given its old mtime
// again, is git. ctime, which nothing can set back, tells the versions
// apart.
func TestIdentityAfterOverwriteWithOldMtime(t *testing.T) {
	gitb, err := os.ReadFile("/usr/bin/git")
	if err != nil {
		t.Fatal(err)
	}
	junk := make([]byte, len(gitb))
	copy(junk, gitb)
	junk[len(junk)/2] ^= 0xff
	self := os.Getpid()
	for _, tc := range []struct {
		name   string
		settle time.Duration
	}{
		{"cached", 0},         // the junk version is cached: its key must not match git's
		{"fresh", settleTime}, // a version this recent is not cached at all
	} {
		t.Run(tc.name, func(t *testing.T) {
			ix := testBinIndex(t)
			ix.settle = tc.settle
			p := filepath.Join(t.TempDir(), "g")
			if err := os.WriteFile(p, junk, 0o755); err != nil {
				t.Fatal(err)
			}
			st, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if got := ix.identify(self, p); got != "" {
				t.Fatalf("junk of git's size identified as %q", got)
			}
			ix.mu.Lock()
			cached := len(ix.cache)
			ix.mu.Unlock()
			if want := map[bool]int{true: 1, false: 0}[tc.settle == 0]; cached != want {
				t.Fatalf("%d cached versions, want %d", cached, want)
			}
			// Far more than a clock tick, so the ctime moves.
			time.Sleep(20 * time.Millisecond)
			if err := os.WriteFile(p, gitb, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Chtimes(p, st.ModTime(), st.ModTime()); err != nil {
				t.Fatal(err)
			}
			if st2, _ := os.Stat(p); !st2.ModTime().Equal(st.ModTime()) || st2.Size() != st.Size() {
				t.Fatalf("mtime or size not restored: %v %d", st2.ModTime(), st2.Size())
			}
			if got := ix.identify(self, p); got != "git" {
				t.Errorf("git's bytes under an old mtime identified as %q", got)
			}
			if got := ix.identifyPath(p); got != "git" {
				t.Errorf("identifyPath: %q", got)
			}
		})
	}
}

// identifyPath on /proc/PID/exe identifies the image a process runs,
// whatever it was called.
func TestIdentityOfProcExe(t *testing.T) {
	ix := testBinIndex(t)
	b, err := os.ReadFile("/usr/bin/sleep")
	if err != nil {
		t.Fatal(err)
	}
	nap := filepath.Join(t.TempDir(), "nap")
	if err := os.WriteFile(nap, b, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name       string
		argv       []string
		any, named string // identifyPath, identifyFile(exe, base of argv[0])
	}{
		{"copy", []string{nap, "30"}, "sleep", "sleep"},
		{"original", []string{"/usr/bin/sleep", "30"}, "sleep", ""},
		{"unknown", []string{"/usr/bin/tail", "-f", "/dev/null"}, "", ""}, // not a known program
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(tc.argv[0], tc.argv[1:]...)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exe := "/proc/" + strconv.Itoa(cmd.Process.Pid) + "/exe"
			anyName, named := ix.identifyPath(exe), ix.identifyFile(exe, filepath.Base(tc.argv[0]))
			cmd.Process.Kill()
			cmd.Wait()
			if anyName != tc.any || named != tc.named {
				t.Errorf("%s running: identifyPath %q, identifyFile %q; want %q, %q", tc.argv[0], anyName, named, tc.any, tc.named)
			}
		})
	}
	if got := ix.identify(os.Getpid(), nap); got != "sleep" {
		t.Errorf("identify of the copy: %q", got)
	}
}

// A copy whose times keep moving while it is read (a caller looping on
// touch) is still compared by its content.
func TestIdentityWhileTouched(t *testing.T) {
	ix := testBinIndex(t)
	b, err := os.ReadFile("/usr/bin/git")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "g")
	if err := os.WriteFile(p, b, 0o755); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			tm := time.Unix(int64(1e9+i), 0)
			os.Chtimes(p, tm, tm)
		}
	}()
	for range 5 {
		if got := ix.identify(os.Getpid(), p); got != "git" {
			t.Errorf("a copy of git being touched identified as %q", got)
			break
		}
	}
	close(stop)
	<-done
}
