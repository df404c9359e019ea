package integration

import (
	"bytes"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// 8. `git add -A && git commit` of 3,000 new files on a protected .git:
// held with the new objects and the moved ref; a rejection leaves the
// log, the status and the tree exactly as they were.
func TestChangesGitCommit(t *testing.T) {
	d := startChanges(t, "file", changesConfig)
	git := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", append([]string{"--no-optional-locks", "-c", "safe.directory=*", "-C", d.work}, args...)...)
		var errb bytes.Buffer
		cmd.Stderr = &errb
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("git %v: %v %s", args, err, errb.Bytes())
		}
		return string(out)
	}
	d.put(t, map[string]string{"README": "a repository\n"})
	git("init", "-q", "-b", "main")
	git("config", "user.name", "agent")
	git("config", "user.email", "agent@example.com")
	git("add", "-A")
	git("commit", "-q", "-m", "init")
	// 3,000 new files in 30 directories, each with its own content.
	var paths []string
	files := map[string]string{}
	for i := 0; i < 3000; i++ {
		p := fmt.Sprintf("backup/d%02d/f%04d.txt", i/100, i)
		files[p] = fmt.Sprintf("backup file %d\n", i)
		paths = append(paths, p)
	}
	d.put(t, files)
	if out, err := exec.Command("chown", "-R", strconv.Itoa(agentUID)+":"+strconv.Itoa(agentUID), d.work).CombinedOutput(); err != nil {
		t.Fatalf("chown: %v %s", err, out)
	}
	// The blobs the commit would write.
	hashCmd := exec.Command("git", "-c", "safe.directory=*", "-C", d.work, "hash-object", "--stdin-paths")
	hashCmd.Stdin = strings.NewReader(strings.Join(paths, "\n") + "\n")
	hashes, err := hashCmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	blobs := strings.Fields(string(hashes))
	if len(blobs) != 3000 {
		t.Fatalf("%d blob ids", len(blobs))
	}
	logBefore, statusBefore := git("log", "--format=%H %an %s"), git("status", "--porcelain")
	head := strings.TrimSpace(git("rev-parse", "HEAD"))
	treeBefore := treePrint(t, d.work)

	start := time.Now()
	run, a := d.heldSet(t, "git add -A && git commit -qm x && git log --oneline | wc -l")
	heldAfter := time.Since(start)
	if s := run.stderr.String(); !strings.Contains(s, "changes held for review: ") || !strings.Contains(s, "over max_files = 5; writes under protected **/.git/**: .git/COMMIT_EDITMSG, ") ||
		!strings.Contains(s, " at bot.toml:7) (request "+a.ID+")") {
		t.Errorf("egsh's stderr while held: %q", s)
	}
	if git("log", "--format=%H %an %s") != logBefore {
		t.Fatal("the commit is in the real repository while held")
	}
	list, out := d.listing(t, a.ID)
	objects := filepath.Join(d.work, ".git", "objects")
	for _, b := range blobs {
		if k := list[filepath.Join(objects, b[:2], b[2:])]; k != "created" {
			t.Fatalf("execgate changes does not list the blob %s as created (%q):\n%.3000s", b, k, out)
		}
	}
	nObjects := 0
	for p, k := range list {
		if rel, ok := strings.CutPrefix(p, objects+"/"); ok && len(rel) == 41 && k == "created" {
			nObjects++
		}
	}
	// 3,000 blobs, 32 trees (backup, its 30 directories, the root) and the commit.
	if nObjects != 3033 {
		t.Errorf("%d new objects listed, want 3033", nObjects)
	}
	ref := filepath.Join(d.work, ".git", "refs", "heads", "main")
	if k := list[ref]; k != "modified" && k != "created" {
		t.Errorf("the moved ref %s is listed as %q", ref, k)
	}
	for p := range list {
		if !strings.HasPrefix(p, filepath.Join(d.work, ".git")+"/") {
			t.Errorf("a change outside .git: %s", p)
		}
	}
	cs, set := d.changeSet(t, a.ID)
	protectHit := false
	for _, v := range cs.Violations {
		protectHit = protectHit || strings.Contains(v, "**/.git/**")
	}
	if !protectHit || set.Totals.Created < 3033 {
		t.Errorf("violations %q, totals %+v", cs.Violations, set.Totals)
	}

	if out, code := d.execgate("reject", a.ID); code != 0 {
		t.Fatalf("reject: %d %s", code, out)
	}
	if code := run.wait(t, 30*time.Second); code != 126 || run.stdout.String() != "2\n" {
		t.Errorf("rejected: egsh exit %d %q %q", code, run.stdout, run.stderr)
	}
	if after := treePrint(t, d.work); after != treeBefore {
		t.Errorf("the tree changed after the rejection:\n%s", diffPrints(treeBefore, after))
	}
	if l, s := git("log", "--format=%H %an %s"), git("status", "--porcelain"); l != logBefore || s != statusBefore {
		t.Errorf("after the rejection: log %q status %q, want %q %q", l, s, logBefore, statusBefore)
	}
	if h := strings.TrimSpace(git("rev-parse", "HEAD")); h != head {
		t.Errorf("HEAD moved: %s, was %s", h, head)
	}
	// The agent's own view of the repository: unchanged too.
	st := exec.Command("git", "-C", d.work, "status", "--porcelain")
	st.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: agentUID, Gid: agentUID}}
	st.Env = []string{"HOME=/nonexistent", "PATH=/usr/bin:/bin", "GIT_OPTIONAL_LOCKS=0"}
	if o, err := st.Output(); err != nil || string(o) != statusBefore {
		t.Errorf("git status as the agent: %v %q", err, o)
	}
	h := changesRec(t, d.records(), a.ID, "held")
	if p := recPaths(t, h); len(p) == 0 || len(p) > 100 {
		t.Errorf("EXECGATE_PATHS: %d", len(p))
	}
	d.noLeftovers(t)
	t.Logf("3,000-file commit held %s after the run started; %d paths in the set", heldAfter.Round(time.Millisecond), len(list))
}
