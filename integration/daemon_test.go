package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/execgate/execgate/api"
	"github.com/execgate/execgate/audit"
	"github.com/execgate/execgate/policy"
)

// fullProfile allows everything except what its deny rules name.
const fullProfile = `uid = 65534
security = "full"
workdirs = ["WORK"]

[[rule]]
match = "git {checkout,switch} **"
action = "deny"
reason = "no branch switching"

[files]
deny_read = ["**/.env"]

[limits]
timeout = "3s"
concurrent = 40
`

func TestExecByteExact(t *testing.T) {
	d := startDaemon(t, profile{"bot", fullProfile})
	// Binary stdout and stdin pass through unchanged, and stdout and
	// stderr stay apart.
	in := make([]byte, 300<<10)
	for i := range in {
		in[i] = byte(i * 7)
	}
	r := d.egsh(agentUID, in, "-c", `printf '\000\001\377head\n'; cat; echo to-stderr >&2; exit 7`)
	want := append([]byte("\x00\x01\xffhead\n"), in...)
	if !bytes.Equal(r.stdout, want) {
		t.Errorf("stdout: %d bytes, want %d (first diff at %d)", len(r.stdout), len(want), firstDiff(r.stdout, want))
	}
	if string(r.stderr) != "to-stderr\n" || r.code != 7 {
		t.Errorf("stderr %q, exit %d; want to-stderr and 7", r.stderr, r.code)
	}
	// Positional arguments are $0, $1, ... as with bash -c.
	r = d.egsh(agentUID, nil, "-c", `echo "$0|$1|$2"`, "zero", "one", "two words")
	if string(r.stdout) != "zero|one|two words\n" || r.code != 0 {
		t.Errorf("args: %q %d", r.stdout, r.code)
	}
	// -e and -o pipefail behave as with bash.
	r = d.egsh(agentUID, nil, "-e", "-o", "pipefail", "-c", `false | true; echo not-reached`)
	if r.code == 0 || bytes.Contains(r.stdout, []byte("not-reached")) {
		t.Errorf("-e -o pipefail: %q %d", r.stdout, r.code)
	}
	// The run has the agent's identity, not the caller's environment.
	r = d.egsh(agentUID, nil, "-c", `id -u; echo "tok=${SECRET_TOKEN:-none}"; pwd`)
	if got := string(r.stdout); got != fmt.Sprintf("%d\ntok=none\n%s\n", agentUID, d.work) {
		t.Errorf("identity/env/cwd: %q", got)
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func TestExitCodes(t *testing.T) {
	d := startDaemon(t, profile{"bot", fullProfile})
	for _, tc := range []struct {
		script string
		code   int
		stderr string
	}{
		{"exit 0", 0, ""},
		{"exit 42", 42, ""},
		{"kill -TERM $$", 128 + 15, ""},
		{"sleep 30", 124, "timed out"}, // the profile's timeout is 3s
		{"git checkout -b x", 126, "execgate: denied: git checkout -b x: no branch switching (bot.toml:6)\n"},
		{"echo 'unterminated", 126, "parse error"},
	} {
		r := d.egsh(agentUID, nil, "-c", tc.script)
		if r.code != tc.code || !strings.Contains(string(r.stderr), tc.stderr) {
			t.Errorf("%q: exit %d stderr %q; want %d and %q", tc.script, r.code, r.stderr, tc.code, tc.stderr)
		}
	}
	// No daemon: 125 and a message that names the socket.
	cmd := exec.Command(filepath.Join(binDir, "egsh"), "-c", "true")
	cmd.Env = []string{"EXECGATE_SOCKET=/nonexistent/agent.sock"}
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 125 || !strings.Contains(string(out), "/nonexistent/agent.sock") {
		t.Errorf("no daemon: %v %q", err, out)
	}
}

func TestDenialHasNoEffectAndIsJournaled(t *testing.T) {
	d := startDaemon(t, profile{"bot", fullProfile})
	git := func(args ...string) string {
		cmd := exec.Command("git", append([]string{"-c", "safe.directory=*", "-C", d.work}, args...)...)
		out, _ := cmd.CombinedOutput()
		return string(out)
	}
	git("init", "-q", "-b", "main")
	git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "init")
	exec.Command("chown", "-R", strconv.Itoa(agentUID), d.work).Run()

	r := d.egsh(agentUID, nil, "-c", "echo before > before.txt; git checkout -b feature")
	if r.code != 126 {
		t.Fatalf("exit %d, want 126", r.code)
	}
	// Denied thing did not happen: no branch, and not even the allowed part
	// of the same script ran (one deny denies the script).
	if b := git("branch", "--list", "feature"); strings.TrimSpace(b) != "" {
		t.Errorf("branch feature exists: %q", b)
	}
	if _, err := os.Stat(filepath.Join(d.work, "before.txt")); err == nil {
		t.Error("the allowed part of a denied script ran")
	}
	// The allowed thing did happen.
	r = d.egsh(agentUID, nil, "-c", "git status --short && echo ok > after.txt")
	if r.code != 0 {
		t.Fatalf("allowed run: %d %s", r.code, r.stderr)
	}
	if b, _ := os.ReadFile(filepath.Join(d.work, "after.txt")); string(b) != "ok\n" {
		t.Errorf("after.txt = %q", b)
	}
	recs := d.records()
	deny := find(recs, audit.FieldEvent, "decision", audit.FieldDecision, "deny")
	if len(deny) != 1 || deny[0].Fields[audit.FieldRule] != "bot.toml:6" || deny[0].Fields[audit.FieldArgv] != `["git","checkout","-b","feature"]` {
		t.Fatalf("deny records: %+v", deny)
	}
	id := deny[0].Fields[audit.FieldID]
	if len(find(recs, audit.FieldID, id, audit.FieldEvent, "request")) != 1 || len(find(recs, audit.FieldID, id, audit.FieldEvent, "end")) != 1 {
		t.Errorf("run %s must have one request and one end record", id)
	}
	if deny[0].Priority != audit.PriWarning || deny[0].Fields[audit.FieldUID] != strconv.Itoa(agentUID) {
		t.Errorf("deny record: %+v", deny[0])
	}
}

func TestUnknownUIDRefused(t *testing.T) {
	d := startDaemon(t, profile{"bot", fullProfile})
	os.Chmod(d.work, 0o777)
	r := d.egsh(otherUID, nil, "-c", "touch ran.txt")
	if r.code != 126 || !strings.Contains(string(r.stderr), "uid 4321 has no execgate profile") {
		t.Errorf("unknown uid: %d %q", r.code, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(d.work, "ran.txt")); err == nil {
		t.Error("an unknown uid's script ran")
	}
	if recs := find(d.records(), audit.FieldEvent, "error", audit.FieldUID, "4321"); len(recs) != 1 {
		t.Errorf("unknown uid not journaled: %d records", len(recs))
	}
	// The agent's own uid still works.
	if r := d.egsh(agentUID, nil, "-c", "true"); r.code != 0 {
		t.Errorf("agent: %d %s", r.code, r.stderr)
	}
}

func TestAgentSocketRefusesAdmin(t *testing.T) {
	d := startDaemon(t, profile{"bot", fullProfile})
	for _, c := range []struct{ method, path string }{
		{"GET", "/v1/status"}, {"GET", "/v1/runs"}, {"GET", "/v1/approvals"}, {"POST", "/v1/approvals/abc"},
		{"POST", "/v1/agents/bot/kill"}, {"POST", "/v1/lockdown"}, {"POST", "/v1/reload"},
	} {
		code, body := httpAs(t, agentUID, d.agentSock(), c.method, c.path, []byte(`{"decision":"approve","on":true}`))
		if code != 403 || !strings.Contains(string(body), "admin socket") {
			t.Errorf("%s %s on the agent socket: %d %s", c.method, c.path, code, body)
		}
	}
	// The admin socket itself is closed to the agent (0660 root:admin group).
	if code, body := httpAs(t, agentUID, d.adminSock(), "GET", "/v1/status", nil); code != -1 || !strings.Contains(string(body), "permission denied") {
		t.Errorf("admin socket as agent: %d %s", code, body)
	}
	// Root is an admin.
	code, body := httpAs(t, 0, d.adminSock(), "GET", "/v1/status", nil)
	var st api.Status
	if code != 200 || json.Unmarshal(body, &st) != nil || len(st.Agents) != 1 || st.Agents[0].Name != "bot" {
		t.Errorf("status as root: %d %s", code, body)
	}
	// whoami names the profile the kernel-verified uid maps to.
	code, body = httpAs(t, agentUID, d.agentSock(), "GET", "/v1/whoami", nil)
	var who api.Whoami
	if code != 200 || json.Unmarshal(body, &who) != nil || who.Agent != "bot" || who.UID != agentUID {
		t.Errorf("whoami: %d %s", code, body)
	}
}

func TestBadRequests(t *testing.T) {
	d := startDaemon(t, profile{"bot", fullProfile})
	big := bytes.Repeat([]byte("a"), 3<<20)
	for _, tc := range []struct {
		name string
		body []byte
		code int
		want string
	}{
		{"malformed json", []byte(`{"script": "ls"`), 400, "malformed request"},
		{"not json", []byte("ls -la"), 400, "malformed request"},
		{"unknown field", []byte(`{"script":"ls","uid":0}`), 400, "unknown field"},
		{"oversized body", append(append([]byte(`{"script":"`), big...), `"}`...), 413, "larger than"},
		{"script over limit", jsonBody(api.ExecRequest{Script: string(big[:policy.MaxScript+1])}), 413, "larger than"},
		{"NUL in script", jsonBody(api.ExecRequest{Script: "ls\x00rm"}), 400, "NUL"},
		{"empty script", jsonBody(api.ExecRequest{Script: "  "}), 400, "empty script"},
		{"cwd outside workdirs", jsonBody(api.ExecRequest{Script: "ls", Cwd: "/etc"}), 403, "outside the agent's workdirs"},
		{"missing cwd", jsonBody(api.ExecRequest{Script: "ls", Cwd: d.work + "/gone"}), 400, "does not exist"},
		{"relative cwd", jsonBody(api.ExecRequest{Script: "ls", Cwd: "work"}), 400, "absolute"},
		{"bad timeout", []byte(`{"script":"ls","timeout":"forever"}`), 400, "timeout"},
	} {
		code, body := httpAs(t, agentUID, d.agentSock(), "POST", "/v1/exec", tc.body)
		var e api.Error
		json.Unmarshal(body, &e)
		if code != tc.code || !strings.Contains(e.Error, tc.want) {
			t.Errorf("%s: %d %s; want %d %q", tc.name, code, body, tc.code, tc.want)
		}
	}
	// A symlink inside the workdir cannot lead the cwd out of it.
	os.Symlink("/etc", filepath.Join(d.work, "etc-link"))
	if code, body := httpAs(t, agentUID, d.agentSock(), "POST", "/v1/exec", jsonBody(api.ExecRequest{Script: "ls", Cwd: d.work + "/etc-link"})); code != 403 {
		t.Errorf("symlinked cwd: %d %s", code, body)
	}
	if !d.alive() {
		t.Fatalf("daemon died: %s", d.stderr)
	}
	// The largest script accepted runs: the limit is what the kernel
	// passes as one argument, so an accepted script never fails with E2BIG.
	longest := "echo longest #" + strings.Repeat("x", policy.MaxScript-len("echo longest #"))
	if r := d.egsh(agentUID, nil, "-c", longest); r.code != 0 || string(r.stdout) != "longest\n" {
		t.Errorf("a %d-byte script: exit %d %q %s", len(longest), r.code, r.stdout, r.stderr)
	}
	if r := d.egsh(agentUID, nil, "-c", "echo still-serving"); string(r.stdout) != "still-serving\n" {
		t.Errorf("after bad requests: %q %d %s", r.stdout, r.code, r.stderr)
	}
	// Every bad request left a journal record.
	if n := len(find(d.records(), audit.FieldEvent, "error", audit.FieldAgent, "bot")); n < 10 {
		t.Errorf("%d error records for bad requests, want at least 10", n)
	}
}

func TestSIGINTLeavesNothing(t *testing.T) {
	d := startDaemon(t, profile{"bot", fullProfile + "\n"})
	marker := "egsh-sigint-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	cmd := exec.Command(filepath.Join(binDir, "egsh"), "-c", `sleep 1000 & exec -a `+marker+` sleep 1000`)
	cmd.Dir = d.work
	cmd.Env = []string{"EXECGATE_SOCKET=" + d.agentSock()}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: agentUID, Gid: agentUID}}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the run to start", func() bool { return pgrep(marker) > 0 })
	cmd.Process.Signal(syscall.SIGINT)
	err := cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 130 {
		t.Errorf("egsh after SIGINT: %v, want exit 130", err)
	}
	waitFor(t, 5*time.Second, "the run's processes to die", func() bool { return pgrep(marker) == 0 && pgrepUID(agentUID, "sleep") == 0 })
	// The daemon notices the closed connection and ends the run.
	waitFor(t, 5*time.Second, "the run to leave /v1/runs", func() bool {
		var runs []api.Run
		code, body := httpAs(t, 0, d.adminSock(), "GET", "/v1/runs", nil)
		return code == 200 && json.Unmarshal(body, &runs) == nil && len(runs) == 0
	})
}

func pgrep(pattern string) int {
	out, _ := exec.Command("pgrep", "-f", pattern).Output()
	return len(strings.Fields(string(out)))
}

func pgrepUID(uid int, name string) int {
	out, _ := exec.Command("pgrep", "-u", strconv.Itoa(uid), "-x", name).Output()
	return len(strings.Fields(string(out)))
}

func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestConcurrentClients(t *testing.T) {
	d := startDaemon(t, profile{"bot", fullProfile})
	const n = 32
	var wg sync.WaitGroup
	errs := make(chan string, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			deny := i%4 == 3
			script := `printf '%s-%s' "$1" "$(cat)"; exit $2`
			if deny {
				script = "git switch x" + strconv.Itoa(i)
			}
			r := d.egsh(agentUID, []byte("in"+strconv.Itoa(i)), "-c", script, "x", strconv.Itoa(i), strconv.Itoa(i%5))
			switch {
			case deny && r.code != 126:
				errs <- fmt.Sprintf("client %d: deny gave %d %q", i, r.code, r.stderr)
			case !deny && (r.code != i%5 || string(r.stdout) != fmt.Sprintf("%d-in%d", i, i)):
				errs <- fmt.Sprintf("client %d: %q exit %d (%s)", i, r.stdout, r.code, r.stderr)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	recs := d.records()
	if got := len(find(recs, audit.FieldEvent, "request")); got != n {
		t.Errorf("%d request records, want %d", got, n)
	}
	if got := len(find(recs, audit.FieldEvent, "end")); got != n {
		t.Errorf("%d end records, want %d", got, n)
	}
}

func TestConcurrencyCap(t *testing.T) {
	d := startDaemon(t, profile{"bot", strings.Replace(fullProfile, "concurrent = 40", "concurrent = 1", 1)})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan result, 1)
	go func() { done <- d.egshCtx(ctx, agentUID, nil, "-c", "sleep 2") }()
	waitFor(t, 5*time.Second, "the first run", func() bool { return pgrepUID(agentUID, "sleep") > 0 })
	r := d.egsh(agentUID, nil, "-c", "echo second")
	if r.code != 126 || !strings.Contains(string(r.stderr), "limits.concurrent") {
		t.Errorf("second concurrent run: %d %q", r.code, r.stderr)
	}
	if first := <-done; first.code != 0 {
		t.Errorf("first run: %d %s", first.code, first.stderr)
	}
}
