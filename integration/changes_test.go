package integration

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/execgate/execgate/api"
	"github.com/execgate/execgate/audit"
	"github.com/execgate/execgate/supervisor/changes"
)

// changesProfile runs in review mode with small caps. Its line numbers
// are cited by the held messages: max_files at :7, max_deleted at :8,
// max_bytes at :9, protect at :10.
const changesProfile = `uid = 65534
security = "full"
workdirs = ["WORK"]

[changes]
mode = "review"
max_files = 5
max_deleted = 2
max_bytes = "1MiB"
protect = ["**/.git/**"]

[limits]
timeout = "120s"
`

// changesConfig leaves a human the time to look; changesExpireConfig
// lets a held set expire quickly.
const (
	changesConfig       = `approval_timeout = "60s"`
	changesExpireConfig = `approval_timeout = "2s"`
)

// startChanges starts a daemon with changesProfile as agent "bot".
func startChanges(t *testing.T, sink, config string) *daemon {
	t.Helper()
	return startDaemonConfig(t, sink, config, profile{"bot", changesProfile})
}

// put writes files in the real tree as root, owned by the agent (and
// their directories too).
func (d *daemon) put(t testing.TB, files map[string]string) {
	t.Helper()
	for rel, body := range files {
		p := filepath.Join(d.work, rel)
		for dir := filepath.Dir(p); dir != d.work; dir = filepath.Dir(dir) {
			defer os.Chown(dir, agentUID, agentUID)
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		os.Chown(p, agentUID, agentUID)
	}
}

// read returns a real file's content, or "<absent>".
func (d *daemon) read(rel string) string {
	b, err := os.ReadFile(filepath.Join(d.work, rel))
	if err != nil {
		return "<absent>"
	}
	return string(b)
}

// treePrint describes every entry under dir (type, mode, owner, size,
// content hash, link target, mtime), one sorted line each: equal prints
// mean an untouched tree.
func treePrint(t testing.TB, dir string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(dir, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		l := fmt.Sprintf("%s mode=%o uid=%d gid=%d size=%d mtime=%d.%09d", rel, st.Mode, st.Uid, st.Gid, st.Size, st.Mtim.Sec, st.Mtim.Nsec)
		switch st.Mode & syscall.S_IFMT {
		case syscall.S_IFREG:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			l += fmt.Sprintf(" sha256=%x", sha256.Sum256(b))
		case syscall.S_IFLNK:
			tgt, _ := os.Readlink(p)
			l += " -> " + tgt
		}
		lines = append(lines, l)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// diffPrints names the first lines two tree prints differ in.
func diffPrints(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	in := func(l []string) map[string]bool {
		m := map[string]bool{}
		for _, x := range l {
			m[x] = true
		}
		return m
	}
	am, bm := in(al), in(bl)
	var out []string
	for _, x := range al {
		if !bm[x] && len(out) < 10 {
			out = append(out, "- "+x)
		}
	}
	for _, x := range bl {
		if !am[x] && len(out) < 20 {
			out = append(out, "+ "+x)
		}
	}
	return strings.Join(out, "\n")
}

// noLeftovers checks that the state dir holds nothing of any change set.
func (d *daemon) noLeftovers(t testing.TB) {
	t.Helper()
	dir := filepath.Join(d.dir, "state", "changes")
	var ents []os.DirEntry
	deadline := time.Now().Add(5 * time.Second)
	for {
		ents, _ = os.ReadDir(dir)
		if len(ents) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, e := range ents {
		t.Errorf("left in %s: %s", dir, e.Name())
	}
	// And nothing beside the real paths (copy mode's .execgate-*).
	filepath.WalkDir(d.work, func(p string, de fs.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(de.Name(), ".execgate-") {
			t.Errorf("left in the real tree: %s", p)
		}
		return nil
	})
}

// heldRun is egsh running in the background, its output readable while
// it runs.
type heldRun struct {
	stdout, stderr *syncBuf
	done           chan struct{}
	code           int
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (d *daemon) egshBackground(t testing.TB, script string) *heldRun {
	t.Helper()
	r := &heldRun{stdout: &syncBuf{}, stderr: &syncBuf{}, done: make(chan struct{}), code: -1}
	cmd := exec.Command(filepath.Join(binDir, "egsh"), "-c", script)
	cmd.Dir = d.work
	cmd.Env = []string{"EXECGATE_SOCKET=" + d.agentSock(), "PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: agentUID, Gid: agentUID}}
	cmd.Stdout, cmd.Stderr = r.stdout, r.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		cmd.Wait()
		r.code = cmd.ProcessState.ExitCode()
		close(r.done)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-r.done
	})
	return r
}

func (r *heldRun) ended() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

func (r *heldRun) wait(t testing.TB, d time.Duration) int {
	t.Helper()
	select {
	case <-r.done:
		return r.code
	case <-time.After(d):
		t.Fatalf("egsh still running after %s: %q", d, r.stderr)
		return -1
	}
}

// heldSet starts script, waits for its change set to be held (egsh has
// said so) and returns the run and its approval.
func (d *daemon) heldSet(t *testing.T, script string) (*heldRun, api.Approval) {
	t.Helper()
	run := d.egshBackground(t, script)
	var list []api.Approval
	waitFor(t, 30*time.Second, "a held change set", func() bool {
		if run.ended() {
			t.Fatalf("the run ended before being held: exit %d %q %q", run.code, run.stdout, run.stderr)
		}
		list = d.pendingNow(t)
		return len(list) > 0 && strings.Contains(run.stderr.String(), "changes held for review")
	})
	a := list[0]
	if len(a.Invocations) != 1 || a.Invocations[0][0] != "changes" {
		t.Errorf("the held set's approval: %+v", a)
	}
	return run, a
}

// changeSet is `execgate changes ID -o json`, decoded.
func (d *daemon) changeSet(t testing.TB, id string) (api.ChangeSet, changes.Set) {
	t.Helper()
	out, code := d.execgate("changes", id, "-o", "json")
	var cs api.ChangeSet
	var set changes.Set
	if code != 0 || json.Unmarshal([]byte(out), &cs) != nil || json.Unmarshal(cs.Set, &set) != nil {
		t.Fatalf("execgate changes %s -o json: %d %.2000s", id, code, out)
	}
	return cs, set
}

// listing parses `execgate changes ID`: absolute path -> kind.
func (d *daemon) listing(t testing.TB, id string) (map[string]string, string) {
	t.Helper()
	out, code := d.execgate("changes", id)
	if code != 0 {
		t.Fatalf("execgate changes %s: %d %.2000s", id, code, out)
	}
	m := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) >= 3 && strings.HasPrefix(f[len(f)-1], "/") {
			m[f[len(f)-1]] = f[0]
		}
	}
	return m, out
}

// changesRec returns the one changes record of run id with decision.
func changesRec(t testing.TB, recs []*audit.Record, id, decision string) *audit.Record {
	t.Helper()
	got := find(recs, audit.FieldEvent, "changes", audit.FieldID, id, audit.FieldDecision, decision)
	if len(got) != 1 {
		var all []string
		for _, r := range find(recs, audit.FieldEvent, "changes") {
			all = append(all, r.Fields[audit.FieldID]+"="+r.Fields[audit.FieldDecision])
		}
		t.Fatalf("%d changes records of %s with decision %s, want 1 (changes records: %v)", len(got), id, decision, all)
	}
	return got[0]
}

// checkCounts checks a changes record's counts and bytes.
func checkCounts(t testing.TB, r *audit.Record, created, modified, deleted int, bytes int64) {
	t.Helper()
	for k, want := range map[string]string{audit.FieldFilesCreated: strconv.Itoa(created), audit.FieldFilesModified: strconv.Itoa(modified),
		audit.FieldFilesDeleted: strconv.Itoa(deleted), audit.FieldChangeBytes: strconv.FormatInt(bytes, 10)} {
		if r.Fields[k] != want {
			t.Errorf("%s=%q, want %q (%v)", k, r.Fields[k], want, r.Fields)
		}
	}
}

// recPaths is a changes record's EXECGATE_PATHS.
func recPaths(t testing.TB, r *audit.Record) []string {
	t.Helper()
	var p []string
	if err := json.Unmarshal([]byte(r.Fields[audit.FieldPaths]), &p); err != nil {
		t.Fatalf("EXECGATE_PATHS %q: %v", r.Fields[audit.FieldPaths], err)
	}
	return p
}

// 1. A small change within every cap lands at once.
func TestChangesAppliedAtOnce(t *testing.T) {
	d := startChanges(t, "file", changesConfig)
	d.put(t, map[string]string{"keep.txt": "old\n", "gone.txt": "bye\n"})
	r := d.egsh(agentUID, nil, "-c", "echo hello > new.txt && echo more >> keep.txt && rm gone.txt && cat keep.txt")
	if r.code != 0 || string(r.stdout) != "old\nmore\n" || strings.Contains(string(r.stderr), "held") {
		t.Fatalf("run: exit %d %q %q", r.code, r.stdout, r.stderr)
	}
	if d.read("new.txt") != "hello\n" || d.read("keep.txt") != "old\nmore\n" || d.read("gone.txt") != "<absent>" {
		t.Errorf("after the run: new=%q keep=%q gone=%q", d.read("new.txt"), d.read("keep.txt"), d.read("gone.txt"))
	}
	var st syscall.Stat_t
	if syscall.Stat(filepath.Join(d.work, "new.txt"), &st) != nil || st.Uid != agentUID {
		t.Errorf("new.txt is not the agent's: uid %d", st.Uid)
	}
	recs := d.records()
	id := find(recs, audit.FieldEvent, "request")[0].Fields[audit.FieldID]
	rec := changesRec(t, recs, id, "applied")
	checkCounts(t, rec, 1, 1, 1, int64(len("hello\n")+len("old\nmore\n")))
	if p := recPaths(t, rec); strings.Join(p, " ") != filepath.Join(d.work, "gone.txt")+" "+filepath.Join(d.work, "keep.txt")+" "+filepath.Join(d.work, "new.txt") {
		t.Errorf("EXECGATE_PATHS: %v", p)
	}
	if len(d.pendingNow(t)) != 0 {
		t.Error("an applied set left an approval")
	}
	d.noLeftovers(t)
}

// 2. 100 new files are held: absent from the real tree while pending,
// listed by `execgate changes`, present once approved; rejected or
// expired, absent.
func TestChangesHeldApproveRejectExpire(t *testing.T) {
	d := startChanges(t, "file", changesConfig)
	const script = `i=1; while [ $i -le 100 ]; do echo "file $i" > f$i.txt; i=$((i+1)); done; echo wrote 100 files; exit 3`
	names := func() []string {
		var n []string
		for i := 1; i <= 100; i++ {
			n = append(n, fmt.Sprintf("f%d.txt", i))
		}
		return n
	}()
	present := func() (n int) {
		for _, f := range names {
			if d.exists(f) {
				n++
			}
		}
		return n
	}

	// Approved.
	run, a := d.heldSet(t, script)
	if n := present(); n != 0 {
		t.Fatalf("%d of the held files are in the real tree while pending", n)
	}
	want := "execgate: changes held for review: 100 files (100 created, 0 modified, 0 deleted), 792 B (100 files, over max_files = 5 at bot.toml:7) (request " + a.ID + ")"
	if !strings.Contains(run.stderr.String(), want) {
		t.Errorf("egsh's stderr while held: %q, want %q", run.stderr, want)
	}
	if !strings.Contains(a.Reason, "over max_files = 5") || a.Rule != "bot.toml:7" || a.Agent != "bot" {
		t.Errorf("approval: %+v", a)
	}
	if out, code := d.execgate("approvals"); code != 0 || !strings.Contains(out, a.ID) {
		t.Errorf("execgate approvals: %d %s", code, out)
	}
	list, out := d.listing(t, a.ID)
	for _, f := range names {
		if list[filepath.Join(d.work, f)] != "created" {
			t.Fatalf("execgate changes does not list %s as created:\n%.3000s", f, out)
		}
	}
	if len(list) != 100 || !strings.Contains(out, "100 files (100 created") || !strings.Contains(out, "held: 100 files, over max_files = 5") {
		t.Errorf("execgate changes: %d paths\n%.3000s", len(list), out)
	}
	cs, set := d.changeSet(t, a.ID)
	if cs.ID != a.ID || set.Totals.Created != 100 || len(set.Changes) != 100 || set.Changes[0].Type != changes.File {
		t.Errorf("execgate changes -o json: %+v %+v", cs, set.Totals)
	}
	if out, code := d.execgate("changes", a.ID, "--diff"); code != 0 || !strings.Contains(out, "+file 42") {
		t.Errorf("execgate changes --diff: %d %.2000s", code, out)
	}
	if n := present(); n != 0 {
		t.Fatalf("%d of the held files are in the real tree while pending", n)
	}
	t.Logf("held: %s", strings.TrimSpace(run.stderr.String()))
	if out, code := d.execgate("approve", a.ID); code != 0 {
		t.Fatalf("approve: %d %s", code, out)
	}
	if code := run.wait(t, 30*time.Second); code != 3 || run.stdout.String() != "wrote 100 files\n" {
		t.Errorf("approved: egsh exit %d (want the script's 3) %q %q", code, run.stdout, run.stderr)
	}
	if n := present(); n != 100 || d.read("f42.txt") != "file 42\n" {
		t.Errorf("approved: %d of 100 files present, f42 %q", n, d.read("f42.txt"))
	}
	recs := d.records()
	changesRec(t, recs, a.ID, "held")
	ap := changesRec(t, recs, a.ID, "approved")
	checkCounts(t, ap, 100, 0, 0, 792)
	if ap.Fields[audit.FieldReason] == "" || !strings.Contains(ap.Fields[audit.FieldReason], "max_files") {
		t.Errorf("approved record's reason: %v", ap.Fields)
	}
	d.noLeftovers(t)

	// Rejected: a second run writes the same names into a new directory.
	rejScript := strings.ReplaceAll(script, "> f$i.txt", "> again/f$i.txt")
	rejScript = "mkdir again; " + rejScript
	run, a = d.heldSet(t, rejScript)
	if d.exists("again") {
		t.Fatal("the held directory is in the real tree")
	}
	if out, code := d.execgate("reject", a.ID, "--reason", "too many"); code != 0 {
		t.Fatalf("reject: %d %s", code, out)
	}
	if code := run.wait(t, 30*time.Second); code != 126 || !strings.Contains(run.stderr.String(), "rejected") {
		t.Errorf("rejected: egsh exit %d %q", code, run.stderr)
	}
	if d.exists("again") {
		t.Error("rejected: the directory is in the real tree")
	}
	changesRec(t, d.records(), a.ID, "rejected")
	if out, code := d.execgate("changes", a.ID); code == 0 {
		t.Errorf("execgate changes of a rejected set: %s", out)
	}
	d.noLeftovers(t)

	// Expired: nobody decides.
	e := startChanges(t, "file", changesExpireConfig)
	start := time.Now()
	r := e.egsh(agentUID, nil, "-c", script)
	if r.code != 126 || !strings.Contains(string(r.stderr), "expired") || time.Since(start) < 2*time.Second {
		t.Errorf("expired: exit %d %q after %s", r.code, r.stderr, time.Since(start))
	}
	for _, f := range names {
		if e.exists(f) {
			t.Fatalf("expired: %s is in the real tree", f)
		}
	}
	recs = e.records()
	id := find(recs, audit.FieldEvent, "request")[0].Fields[audit.FieldID]
	checkCounts(t, changesRec(t, recs, id, "expired"), 100, 0, 0, 792)
	e.noLeftovers(t)
}

// 3. Deletions over max_deleted are held: the files stay until decided,
// and after a rejection.
func TestChangesDeleteOverCap(t *testing.T) {
	d := startChanges(t, "file", changesConfig)
	d.put(t, map[string]string{"a.txt": "a\n", "b.txt": "b\n", "c.txt": "c\n", "d.txt": "d\n"})
	before := treePrint(t, d.work)
	run, a := d.heldSet(t, "rm a.txt b.txt c.txt && ls")
	if !strings.Contains(run.stderr.String(), "3 files (0 created, 0 modified, 3 deleted), 0 B (3 deleted, over max_deleted = 2 at bot.toml:8)") {
		t.Errorf("egsh's stderr while held: %q", run.stderr)
	}
	for _, f := range []string{"a.txt", "b.txt", "c.txt"} {
		if d.read(f) != f[:1]+"\n" {
			t.Errorf("%s while held: %q", f, d.read(f))
		}
	}
	list, out := d.listing(t, a.ID)
	if len(list) != 3 || list[filepath.Join(d.work, "b.txt")] != "deleted" {
		t.Errorf("execgate changes:\n%s", out)
	}
	d.execgate("reject", a.ID)
	if code := run.wait(t, 30*time.Second); code != 126 || run.stdout.String() != "d.txt\n" {
		t.Errorf("rejected: exit %d %q %q", code, run.stdout, run.stderr)
	}
	if after := treePrint(t, d.work); after != before {
		t.Errorf("the tree changed after a rejected deletion:\n%s", diffPrints(before, after))
	}
	recs := d.records()
	h := changesRec(t, recs, a.ID, "held")
	checkCounts(t, h, 0, 0, 3, 0)
	if h.Fields[audit.FieldRule] != "bot.toml:8" {
		t.Errorf("held record's rule: %v", h.Fields)
	}
	changesRec(t, recs, a.ID, "rejected")
	d.noLeftovers(t)
}

// 4. One tiny write under a protected path is held.
func TestChangesProtectedTiny(t *testing.T) {
	d := startChanges(t, "file", changesConfig)
	d.put(t, map[string]string{".git/HEAD": "ref: refs/heads/main\n"})
	before := treePrint(t, d.work)
	run, a := d.heldSet(t, "echo x > .git/tiny")
	if !strings.Contains(run.stderr.String(), "1 file (1 created, 0 modified, 0 deleted), 2 B (") ||
		!strings.Contains(run.stderr.String(), "at bot.toml:10)") || !strings.Contains(run.stderr.String(), "**/.git/**") {
		t.Errorf("egsh's stderr while held: %q", run.stderr)
	}
	if d.exists(".git/tiny") {
		t.Fatal("the protected write is in the real tree while held")
	}
	cs, _ := d.changeSet(t, a.ID)
	if len(cs.Violations) != 1 || !strings.Contains(cs.Violations[0], "**/.git/**") {
		t.Errorf("violations: %q", cs.Violations)
	}
	d.execgate("reject", a.ID)
	if code := run.wait(t, 30*time.Second); code != 126 {
		t.Errorf("rejected: exit %d %q", code, run.stderr)
	}
	if after := treePrint(t, d.work); after != before {
		t.Errorf("the tree changed:\n%s", diffPrints(before, after))
	}
	recs := d.records()
	h := changesRec(t, recs, a.ID, "held")
	checkCounts(t, h, 1, 0, 0, 2)
	if h.Fields[audit.FieldRule] != "bot.toml:10" || !strings.Contains(h.Fields[audit.FieldReason], "**/.git/**") {
		t.Errorf("held record: %v", h.Fields)
	}
	changesRec(t, recs, a.ID, "rejected")
	d.noLeftovers(t)
}

// 5. dry-run never applies, and tells the agent what would have changed.
func TestChangesDryRun(t *testing.T) {
	d := startDaemonConfig(t, "file", changesConfig, profile{"bot", strings.Replace(changesProfile, `mode = "review"`, `mode = "dry-run"`, 1)})
	d.put(t, map[string]string{"keep.txt": "old\n", "gone.txt": "bye\n"})
	before := treePrint(t, d.work)
	r := d.egsh(agentUID, nil, "-c", "echo hello > new.txt; echo more >> keep.txt; rm gone.txt; mkdir sub; echo x > sub/y; cat keep.txt new.txt")
	// new.txt, keep.txt, gone.txt, sub, sub/y: over max_files, but a dry
	// run is never held.
	const summary = "5 files (3 created, 1 modified, 1 deleted), 17 B"
	if r.code != 0 || string(r.stdout) != "old\nmore\nhello\n" || !strings.Contains(string(r.stderr), "execgate: dry run, not applied: "+summary) {
		t.Errorf("dry run: exit %d %q %q", r.code, r.stdout, r.stderr)
	}
	t.Logf("dry run: %s", strings.TrimSpace(string(r.stderr)))
	if after := treePrint(t, d.work); after != before {
		t.Errorf("a dry run changed the tree:\n%s", diffPrints(before, after))
	}
	recs := d.records()
	id := find(recs, audit.FieldEvent, "request")[0].Fields[audit.FieldID]
	rec := changesRec(t, recs, id, "dry-run")
	checkCounts(t, rec, 3, 1, 1, 17)
	if p := recPaths(t, rec); len(p) != 4 || p[0] != filepath.Join(d.work, "gone.txt") {
		t.Errorf("EXECGATE_PATHS (sub/y is implied by sub): %v", p)
	}
	if !strings.Contains(rec.Message, summary) {
		t.Errorf("record message: %q", rec.Message)
	}
	// The stream's changes event, as a raw client sees it.
	code, body := httpAs(t, agentUID, d.agentSock(), "POST", "/v1/exec", jsonBody(api.ExecRequest{Script: "echo z > z.txt", Cwd: d.work}))
	if code != 200 || !strings.Contains(string(body), `"event":"changes"`) || !strings.Contains(string(body), "1 file (1 created, 0 modified, 0 deleted), 2 B") {
		t.Errorf("the changes event: %d %s", code, body)
	}
	if d.exists("z.txt") {
		t.Error("the second dry run wrote z.txt")
	}
	d.noLeftovers(t)
}

// 6. A path edited in the real tree while the run has it: a conflict,
// and nothing of the run lands.
func TestChangesConflict(t *testing.T) {
	d := startChanges(t, "file", changesConfig)
	d.put(t, map[string]string{"target.txt": "original\n"})
	target := filepath.Join(d.work, "target.txt")
	var st0 syscall.Stat_t
	syscall.Stat(target, &st0)
	run := d.egshBackground(t, "echo run-edit >> target.txt; echo one > new1.txt; echo two > new2.txt; sleep 2; echo done")
	// Wait until the run has copied the file up, then edit the real one.
	waitFor(t, 20*time.Second, "the run to write target.txt", func() bool {
		m, _ := filepath.Glob(filepath.Join(d.dir, "state", "changes", "*", "0-upper", "new2.txt"))
		return len(m) == 1
	})
	time.Sleep(20 * time.Millisecond) // past the clock tick of the run's start
	f, err := os.OpenFile(target, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("root-edit\n")
	f.Close()
	var st1 syscall.Stat_t
	syscall.Stat(target, &st1)
	if st1.Ctim == st0.Ctim {
		t.Fatal("the edit did not move the ctime")
	}
	if code := run.wait(t, 30*time.Second); code != 126 || run.stdout.String() != "done\n" || !strings.Contains(run.stderr.String(), target) {
		t.Errorf("conflict: egsh exit %d %q %q", code, run.stdout, run.stderr)
	}
	t.Logf("conflict: %s", strings.TrimSpace(run.stderr.String()))
	if d.read("target.txt") != "original\nroot-edit\n" || d.exists("new1.txt") || d.exists("new2.txt") {
		t.Errorf("after the conflict: target %q new1 %v new2 %v", d.read("target.txt"), d.exists("new1.txt"), d.exists("new2.txt"))
	}
	recs := d.records()
	id := find(recs, audit.FieldEvent, "request")[0].Fields[audit.FieldID]
	rec := changesRec(t, recs, id, "conflict")
	checkCounts(t, rec, 2, 1, 0, int64(len("original\nrun-edit\n")+len("one\n")+len("two\n")))
	if !strings.Contains(rec.Fields[audit.FieldReason], target) || strings.Contains(rec.Fields[audit.FieldReason], "new1.txt") {
		t.Errorf("conflict record's reason: %q", rec.Fields[audit.FieldReason])
	}
	if len(find(recs, audit.FieldEvent, "changes", audit.FieldDecision, "applied")) != 0 {
		t.Error("a conflicting set was journaled as applied")
	}
	d.noLeftovers(t)
}

// 9. The journal's changes records (journald): counts, bytes, decision,
// rule and the first 100 paths, implied ones left out.
func TestChangesJournalRecords(t *testing.T) {
	d := startChanges(t, "journal", changesConfig)
	d.put(t, map[string]string{"old.txt": "0123456789\n"})
	run, a := d.heldSet(t, `mkdir newdir; echo inside > newdir/x; i=100; while [ $i -lt 250 ]; do echo $i > n$i; i=$((i+1)); done; echo 12345 > old.txt`)
	d.execgate("reject", a.ID)
	run.wait(t, 30*time.Second)
	recs := d.records()
	for _, dec := range []string{"held", "rejected"} {
		r := changesRec(t, recs, a.ID, dec)
		// newdir, newdir/x, n100..n249 created; old.txt modified.
		checkCounts(t, r, 152, 1, 0, int64(len("inside\n")+150*4+len("12345\n")))
		p := recPaths(t, r)
		if len(p) != 100 || p[0] != filepath.Join(d.work, "n100") || p[99] != filepath.Join(d.work, "n199") {
			t.Errorf("%s: EXECGATE_PATHS has %d paths: %.300v ... %v", dec, len(p), p, p[len(p)-1])
		}
		for _, x := range p {
			if strings.Contains(x, "newdir/") {
				t.Errorf("%s: the implied %s is listed", dec, x)
			}
		}
		if r.Fields[audit.FieldRule] != "bot.toml:7" || r.Fields[audit.FieldAgent] != "bot" || r.Fields[audit.FieldUID] != strconv.Itoa(agentUID) ||
			r.Priority != audit.PriWarning || !strings.Contains(r.Message, "CHANGES "+strings.ToUpper(dec)+" 153 files (152 created, 1 modified, 0 deleted)") {
			t.Errorf("%s record: %d %q %v", dec, r.Priority, r.Message, r.Fields)
		}
	}
	r := d.egsh(agentUID, nil, "-c", "echo tiny > tiny.txt")
	if r.code != 0 || d.read("tiny.txt") != "tiny\n" {
		t.Fatalf("applied run: %d %q", r.code, r.stderr)
	}
	var ap *audit.Record
	waitFor(t, 10*time.Second, "the applied record", func() bool {
		got := find(d.records(), audit.FieldEvent, "changes", audit.FieldDecision, "applied")
		if len(got) == 1 {
			ap = got[0]
		}
		return ap != nil
	})
	checkCounts(t, ap, 1, 0, 0, 5)
	if p := recPaths(t, ap); len(p) != 1 || p[0] != filepath.Join(d.work, "tiny.txt") || ap.Priority != audit.PriInfo || ap.Fields[audit.FieldRule] != "" {
		t.Errorf("applied record: %d %v", ap.Priority, ap.Fields)
	}
}
