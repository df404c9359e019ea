package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/execgate/execgate/audit"
	"github.com/execgate/execgate/internal/journaltest"
	"github.com/execgate/execgate/systemd/journal"
)

type journalBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *journalBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *journalBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func journalCmd(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var o, e bytes.Buffer
	code = runJournal(args, &o, &e)
	return o.String(), e.String(), code
}

// argsName names a subtest after its command line.
func argsName(args []string) string {
	if len(args) == 0 {
		return "no flags"
	}
	return strings.Join(args, " ")
}

// journalDecision is a decision record as the supervisor writes it.
func journalDecision(agent, decision, rule string, argv ...string) *audit.Record {
	pri := audit.PriInfo
	if decision == "deny" || decision == "ask" {
		pri = audit.PriWarning
	}
	return audit.New(audit.EventDecision, pri, agent+" "+strings.ToUpper(decision)+" "+strings.Join(argv, " ")).
		Set(audit.FieldAgent, agent).Set(audit.FieldDecision, decision).Set(audit.FieldRule, rule).SetArgv(argv)
}

// journalFollow runs a -f command in the background until its ctx is cancelled.
type journalFollow struct {
	out, errOut journalBuffer
	code        chan int
}

func startJournalFollow(ctx context.Context, args ...string) *journalFollow {
	f := &journalFollow{code: make(chan int, 1)}
	go func() { f.code <- runJournalContext(ctx, args, &f.out, &f.errOut) }()
	return f
}

func (f *journalFollow) waitOutput(t *testing.T, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for f.out.String() != want {
		select {
		case c := <-f.code:
			t.Fatalf("follow exited %d; stdout %q, stderr %q", c, f.out.String(), f.errOut.String())
		default:
		}
		if time.Now().After(deadline) || !strings.HasPrefix(want, f.out.String()) {
			t.Fatalf("follow printed %q (stderr %q), want %q", f.out.String(), f.errOut.String(), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (f *journalFollow) wait(t *testing.T) {
	t.Helper()
	select {
	case c := <-f.code:
		if c != 0 {
			t.Fatalf("follow exited %d, want 0; stderr %q", c, f.errOut.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("follow did not stop")
	}
}

func TestJournalFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	s, err := audit.NewFileSink(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	t0 := time.Date(2025, 6, 1, 18, 22, 25, 0, time.Local)
	recs := []*audit.Record{
		journalDecision("flow", "deny", "flow.toml:14", "git", "checkout", "flow/a11y-badge-recordings"),
		audit.New(audit.EventRequest, audit.PriInfo, "flow request npm test").Set(audit.FieldAgent, "flow").Set(audit.FieldScript, "npm test"),
		journalDecision("flow", "allow", "", "git", "commit", "-m", "fix the bug's badge"),
		journalDecision("other", "deny", "other.toml:3", "rm", "-rf", "/srv/x\x1b[2J\ny"),
	}
	for i, r := range recs {
		r.Time = t0.Add(time.Duration(i) * time.Hour)
		if err := s.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	const (
		l1 = "18:22:25 flow DENY git checkout flow/a11y-badge-recordings [flow.toml:14]\n"
		l3 = "20:22:25 flow ALLOW git commit -m $'fix the bug\\'s badge'\n"
		l4 = "21:22:25 other DENY rm -rf $'/srv/x\\x1b[2J\\ny' [other.toml:3]\n"
	)
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, l1 + l3 + l4},
		{[]string{"--agent", "flow"}, l1 + l3},
		{[]string{"--decision", "deny"}, l1 + l4},
		{[]string{"--decision", "DENY", "--agent", "flow"}, l1},
		{[]string{"--since", "2025-06-01 20:22:25"}, l3 + l4},
		{[]string{"--since", t0.Add(2*time.Hour + time.Microsecond).Format(time.RFC3339Nano)}, l4},
		{[]string{"--event", "request"}, ""},
		{[]string{"-n", "2"}, l3 + l4},
		{[]string{"--agent", "nobody"}, ""},
	} {
		t.Run(argsName(c.args), func(t *testing.T) {
			out, errOut, code := journalCmd(t, append(c.args, "--file", path)...)
			if code != 0 || out != c.want || errOut != "" {
				t.Errorf("journal %q: exit %d, stdout:\n%s\nstderr: %s\nwant:\n%s", c.args, code, out, errOut, c.want)
			}
		})
	}

	// -o json passes the file's lines through.
	file, _ := os.ReadFile(path)
	out, _, code := journalCmd(t, "-o", "json", "--file", path)
	if code != 0 || out != string(file) {
		t.Errorf("-o json: exit %d\n%s\nwant the file:\n%s", code, out, file)
	}
	out, _, _ = journalCmd(t, "-o", "json", "--agent", "other", "--file", path)
	if lines := strings.Split(strings.TrimSpace(string(file)), "\n"); out != lines[3]+"\n" {
		t.Errorf("-o json --agent other: %s", out)
	}

	// Usage and read errors.
	for _, args := range [][]string{
		{"-o", "xml"}, {"--decision", "maybe"}, {"--event", "boot"}, {"--since", "soon"},
		{"extra"}, {"--file", path, "--directory", "/tmp"}, {"-n", "0"}, {"--bogus"},
	} {
		t.Run("usage "+argsName(args), func(t *testing.T) {
			if _, errOut, code := journalCmd(t, args...); code != 2 || errOut == "" {
				t.Errorf("journal %q: exit %d (stderr %q), want 2", args, code, errOut)
			}
		})
	}
	if _, errOut, code := journalCmd(t, "--file", filepath.Join(t.TempDir(), "missing.jsonl")); code != 1 || !strings.Contains(errOut, "no such file") {
		t.Errorf("missing file: exit %d, stderr %q", code, errOut)
	}

	// A torn line is a warning; the records around it still print.
	torn := filepath.Join(t.TempDir(), "torn.jsonl")
	os.WriteFile(torn, append(append([]byte("{\"MESSAGE\":\"cut\n"), file...), "{\"PRI"...), 0o640)
	if out, errOut, code := journalCmd(t, "--file", torn); code != 0 || out != l1+l3+l4 || !strings.Contains(errOut, "torn.jsonl:1: bad audit record") {
		t.Errorf("torn file: exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	// -f prints the last records, then new ones as they come.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := startJournalFollow(ctx, "-f", "--agent", "flow", "--file", path)
	f.waitOutput(t, l1+l3)
	late := journalDecision("flow", "ask", "flow.toml:30", "npm", "run", "build")
	late.Time = t0.Add(5 * time.Hour)
	if err := s.Write(late); err != nil {
		t.Fatal(err)
	}
	skipped := journalDecision("other", "deny", "other.toml:3", "true")
	if err := s.Write(skipped); err != nil {
		t.Fatal(err)
	}
	f.waitOutput(t, l1+l3+"23:22:25 flow ASK npm run build [flow.toml:30]\n")
	cancel()
	f.wait(t)

	// SIGTERM ends a follow cleanly (exit 0).
	var o, e journalBuffer
	code2 := make(chan int, 1)
	go func() { code2 <- runJournal([]string{"-f", "-n", "1", "--file", path}, &o, &e) }()
	deadline := time.Now().Add(30 * time.Second)
	for o.String() == "" {
		if time.Now().After(deadline) {
			t.Fatalf("follow printed nothing; stderr %q", e.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	syscall.Kill(os.Getpid(), syscall.SIGTERM)
	select {
	case c := <-code2:
		if c != 0 {
			t.Fatalf("follow ended by SIGTERM: exit %d, want 0", c)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("SIGTERM did not end the follow")
	}
}

func TestShortLineFallbacks(t *testing.T) {
	r := audit.New(audit.EventApproval, audit.PriInfo, "flow REJECTED a\tb").Set(audit.FieldDecision, "rejected")
	r.Time = time.Date(2025, 6, 1, 7, 5, 9, 0, time.Local)
	if got, ok := journalShortLine(r); !ok || got != `07:05:09 - REJECTED "flow REJECTED a\tb"` {
		t.Errorf("no argv, no agent: %q", got)
	}
	r.Set(audit.FieldAgent, "flow").Set(audit.FieldScript, "npm test")
	if got, _ := journalShortLine(r); got != "07:05:09 flow REJECTED npm test" {
		t.Errorf("script fallback: %q", got)
	}
	r.SetArgv([]string{"printf", "", "a'b", "x y", "\xff"})
	// JSON keeps U+FFFD for a byte that is not UTF-8.
	if got, _ := journalShortLine(r); got != "07:05:09 flow REJECTED printf '' $'a\\'b' 'x y' '\ufffd'" {
		t.Errorf("quoting: %q", got)
	}
	if _, ok := journalShortLine(audit.New(audit.EventEnd, audit.PriInfo, "end")); ok {
		t.Error("a record without a decision gave a short line")
	}
	// A record from journald shows its host, escaped like the rest.
	r = journalDecision("flow", "deny", "flow.toml:14", "git", "push")
	r.Time = time.Date(2025, 6, 1, 18, 22, 25, 0, time.Local)
	r.Fields[audit.FieldHostname] = "hostA"
	if got, _ := journalShortLine(r); got != "18:22:25 hostA flow DENY git push [flow.toml:14]" {
		t.Errorf("with a host: %q", got)
	}
	r.Fields[audit.FieldHostname] = "evil\n18:00:00 x"
	if got, _ := journalShortLine(r); got != `18:22:25 "evil\n18:00:00 x" flow DENY git push [flow.toml:14]` {
		t.Errorf("with a crafted host: %q", got)
	}
}

// TestJournalJournald runs execgate journal against a real journald (in
// a private namespace: this package's TestMain is testscript's).
func TestJournalJournald(t *testing.T) {
	if !journaltest.Isolate(t) {
		return
	}
	s, err := journal.NewSink()
	if err != nil {
		t.Fatal(err)
	}
	write := func(r *audit.Record) {
		t.Helper()
		if err := s.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	write(journalDecision("flow", "deny", "flow.toml:14", "git", "checkout", "flow/a11y-badge-recordings"))
	write(audit.New(audit.EventRequest, audit.PriInfo, "flow request npm test").Set(audit.FieldAgent, "flow"))
	write(journalDecision("flow", "allow", "flow.toml:20", "npm", "test"))
	write(journalDecision("other", "deny", "", "rm", "-rf", "/"))
	stored := journaltest.WaitFor(t, 4, "SYSLOG_IDENTIFIER=execgated")
	line := func(r *audit.Record) string {
		l, ok := journalShortLine(r)
		if !ok {
			t.Fatalf("no short line for %q", r.Message)
		}
		return l + "\n"
	}
	l1, l3, l4 := line(stored[0]), line(stored[2]), line(stored[3])
	// journald's records name their host, as journalctl's short output does.
	host, _ := os.Hostname()
	if h := stored[0].Fields[audit.FieldHostname]; h != host || h == "" {
		t.Fatalf("_HOSTNAME = %q, want %q", h, host)
	}
	if want := stored[0].Time.Local().Format("15:04:05") + " " + host + " flow DENY git checkout flow/a11y-badge-recordings [flow.toml:14]\n"; l1 != want {
		t.Fatalf("short line %q, want %q", l1, want)
	}
	if want := stored[3].Time.Local().Format("15:04:05") + " " + host + " other DENY rm -rf /\n"; l4 != want {
		t.Fatalf("short line %q, want %q", l4, want)
	}
	// A record stamped strictly later than the first four, for --since.
	for !time.Now().After(stored[3].Time.Add(2 * time.Millisecond)) {
		time.Sleep(time.Millisecond)
	}
	write(journalDecision("flow", "deny", "flow.toml:14", "git", "push"))
	later := journaltest.WaitFor(t, 5, "SYSLOG_IDENTIFIER=execgated")[4]
	l5 := line(later)
	since := stored[3].Time.Add(time.Microsecond).Format(time.RFC3339Nano)

	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, l1 + l3 + l4 + l5},
		{[]string{"--directory", journaltest.Dir}, l1 + l3 + l4 + l5},
		{[]string{"--agent", "flow"}, l1 + l3 + l5},
		{[]string{"--decision", "deny"}, l1 + l4 + l5},
		{[]string{"--agent", "flow", "--decision", "allow"}, l3},
		{[]string{"--since", since}, l5},
		{[]string{"-n", "1", "--agent", "other"}, l4},
	} {
		t.Run(argsName(c.args), func(t *testing.T) {
			out, errOut, code := journalCmd(t, c.args...)
			if code != 0 || out != c.want {
				t.Errorf("journal %q: exit %d, stdout:\n%s\nstderr: %s\nwant:\n%s", c.args, code, out, errOut, c.want)
			}
		})
	}

	// -o json passes journalctl's objects through, journald's own fields
	// included.
	out, _, code := journalCmd(t, "-o", "json", "--agent", "flow")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 4 {
		t.Fatalf("-o json --agent flow: exit %d, %d lines", code, len(lines))
	}
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("-o json line %q: %v", l, err)
		}
		if m["EXECGATE_AGENT"] != "flow" || m["EXECGATE_EVENT"] == nil || m["SYSLOG_IDENTIFIER"] != "execgated" || m["__CURSOR"] == nil || m["_PID"] == nil || m["_HOSTNAME"] != host {
			t.Errorf("-o json line %s", l)
		}
	}

	if _, errOut, code := journalCmd(t, "--directory", "/nonexistent"); code != 1 || !strings.Contains(errOut, "journalctl") {
		t.Errorf("missing journal directory: exit %d, stderr %q", code, errOut)
	}

	// -f: the last records first, then new ones as journald gets them.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := startJournalFollow(ctx, "-f", "--decision", "deny")
	f.waitOutput(t, l1+l4+l5)
	write(journalDecision("flow", "allow", "flow.toml:20", "npm", "test")) // filtered out
	write(journalDecision("other", "deny", "other.toml:9", "curl", "http://x"))
	deadline := time.Now().Add(30 * time.Second)
	for !strings.HasSuffix(f.out.String(), " "+host+" other DENY curl http://x [other.toml:9]\n") {
		if time.Now().After(deadline) {
			t.Fatalf("follow printed %q", f.out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := strings.Count(f.out.String(), "\n"); n != 4 {
		t.Fatalf("follow printed %d lines, want 4:\n%s", n, f.out.String())
	}
	cancel()
	f.wait(t)
}

// TestJournalVerify: execgate journal --verify's exit codes and messages.
func TestJournalVerify(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	s, err := audit.NewFileSink(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 6 {
		if err := s.Write(journalDecision("flow", "deny", "flow.toml:14", "git", "push", fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	raw, _ := os.ReadFile(path)
	lines := strings.SplitAfter(string(raw), "\n")[:6]
	sum := func(l string) string {
		h := sha256.Sum256([]byte(strings.TrimSuffix(l, "\n")))
		return hex.EncodeToString(h[:])
	}
	head := sum(lines[5])
	variant := func(name string, ls ...string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(strings.Join(ls, "")), 0o640)
		return p
	}
	edited := variant("edited.jsonl", lines[0], lines[1], strings.Replace(lines[2], "push", "pull", 1), lines[3], lines[4], lines[5])
	cut := variant("cut.jsonl", lines[:4]...)
	older, newer := variant("audit.jsonl.1", lines[:3]...), variant("audit.jsonl.2", lines[3:]...)

	for _, c := range []struct {
		name   string
		args   []string
		code   int
		stdout string // exact
		stderr string // contained
	}{
		{"intact", []string{"--verify", "--file", path}, 0,
			"intact: 6 records (seq 1-6) in " + path + ", from genesis, head=" + head + "\n", ""},
		{"noted head", []string{"--verify", "--head", "head=" + strings.ToUpper(sum(lines[3])), "--file", path}, 0,
			"intact: 6 records (seq 1-6) in " + path + ", from genesis, noted head at " + path + ":4 with 2 records after it, head=" + head + "\n", ""},
		{"edited", []string{"--verify", "--file", edited}, 4, "",
			"execgate journal: " + edited + ":4: chain broken: EXECGATE_PREV is not the hash of line 3, the record before it: line 3 was changed after this record was written"},
		{"edited summary", []string{"--verify", "--file", edited}, 4, "", "execgate journal: BROKEN (1 break): 6 records (seq 1-6) in " + edited},
		{"cut, no head", []string{"--verify", "--file", cut}, 0, "intact: 4 records (seq 1-4) in " + cut + ", from genesis, head=" + sum(lines[3]) + "\n", ""},
		{"cut, head", []string{"--verify", "--head", head, "--file", cut}, 4, "",
			"execgate journal: chain broken: the noted head " + head + " is not the hash of any record: records were cut from the end (truncated)"},
		{"rotated file alone", []string{"--verify", "--file", newer}, 0,
			"intact: 3 records (seq 4-6) in " + newer + ", from an earlier file (first EXECGATE_PREV " + sum(lines[2]) + "), head=" + head + "\n",
			"execgate journal: " + newer + ":1: note: the chain starts in an earlier file"},
		{"rotated files", []string{"--verify", "--head", head, "--file", older, "--file", newer}, 0,
			"intact: 6 records (seq 1-6) in 2 files, from genesis, noted head at " + newer + ":3 with 0 records after it, head=" + head + "\n", ""},
		{"rotated files, wrong order", []string{"--verify", "--file", newer, "--file", older}, 4, "", "chain broken"},
		{"missing file", []string{"--verify", "--file", filepath.Join(dir, "missing")}, 1, "", "no such file"},
		{"journald", []string{"--verify"}, 2, "", "journalctl --setup-keys), check them with journalctl --verify --verify-key=KEY"},
		{"journal directory", []string{"--verify", "--directory", "/var/log/journal/remote"}, 2, "", "journalctl --verify --directory /var/log/journal/remote --verify-key=KEY"},
		{"head without verify", []string{"--head", head, "--file", path}, 2, "", "--head goes with --verify"},
		{"bad head", []string{"--verify", "--head", "abc", "--file", path}, 2, "", `--head: head "abc": want 64 hex digits`},
		{"verify with a filter", []string{"--verify", "--agent", "flow", "--file", path}, 2, "", "it takes no -agent"},
		{"verify -f", []string{"--verify", "-f", "--file", path}, 2, "", "it takes no -f"},
		{"verify -o", []string{"--verify", "-o", "json", "--file", path}, 2, "", "it takes no -o"},
		{"two files without verify", []string{"--file", older, "--file", newer}, 2, "", "several files only with --verify"},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, errOut, code := journalCmd(t, c.args...)
			if code != c.code || out != c.stdout || !strings.Contains(errOut, c.stderr) || (c.stderr == "" && errOut != "") {
				t.Errorf("journal %q: exit %d (want %d)\nstdout: %q\nwant:   %q\nstderr: %s\nwant it to contain %q", c.args, code, c.code, out, c.stdout, errOut, c.stderr)
			}
		})
	}
}
