package integration

import (
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

	"github.com/execgate/execgate/audit"
	"github.com/execgate/execgate/internal/journaltest"
)

const auditProfile = `uid = 65534
security = "full"
workdirs = ["WORK"]

[[rule]]
match = "git checkout **"
action = "deny"
reason = "no checkouts"

[limits]
timeout = "30s"
concurrent = 64
`

// TestAuditEveryEvent runs allowed, denied, refused and bad requests
// through the daemon, and reads every kind of record back from the real
// journal (journalctl -o json) and from the JSONL file, field by field.
func TestAuditEveryEvent(t *testing.T) {
	for _, sink := range []string{"journal", "file"} {
		t.Run(sink, func(t *testing.T) {
			d := startDaemonAudit(t, sink, profile{"bot", auditProfile})
			os.Chmod(d.adminSock(), 0o666) // so the agent can knock on it and be refused

			allowed := d.egsh(agentUID, nil, "-c", "echo hi; /bin/true")
			denied := d.egsh(agentUID, nil, "-c", "git checkout -b x")
			runtime := d.egsh(agentUID, nil, "-c", "G=git; $G checkout -b y")
			if allowed.code != 0 || denied.code != 126 || runtime.code == 0 {
				t.Fatalf("exits %d %d %d", allowed.code, denied.code, runtime.code)
			}
			d.egsh(otherUID, nil, "-c", "true")
			httpAs(t, agentUID, d.agentSock(), "POST", "/v1/exec", []byte(`{"script":"ls","cwd":"/etc"}`))
			httpAs(t, agentUID, d.adminSock(), "GET", "/v1/status", nil)

			var recs []*audit.Record
			waitFor(t, 10*time.Second, "the records", func() bool {
				recs = d.records()
				return len(find(recs, audit.FieldEvent, "admin")) > 0
			})
			common := func(r *audit.Record) {
				t.Helper()
				if r.Fields[audit.FieldAgent] != "bot" || r.Fields[audit.FieldUID] != "65534" || len(r.Fields[audit.FieldProfileSHA256]) != 64 || r.Fields[audit.FieldID] == "" {
					t.Errorf("%s record lacks the common fields: %v", r.Event(), r.Fields)
				}
				if r.Fields[audit.FieldIdentifier] != "" && r.Fields[audit.FieldIdentifier] != "execgated" {
					t.Errorf("identifier %q", r.Fields[audit.FieldIdentifier])
				}
			}
			one := func(what string, kv ...string) *audit.Record {
				t.Helper()
				got := find(recs, kv...)
				if len(got) == 0 {
					t.Fatalf("no %s record (%v) among %d", what, kv, len(recs))
				}
				return got[len(got)-1]
			}
			// request: before anything ran, with the script and env names only.
			req := one("request", audit.FieldEvent, "request", audit.FieldScript, "echo hi; /bin/true")
			common(req)
			id := req.Fields[audit.FieldID]
			if req.Priority != audit.PriInfo || !strings.HasPrefix(req.Message, "bot REQUEST echo hi") || req.Fields[audit.FieldScriptSHA256] == "" ||
				!strings.Contains(req.Fields[audit.FieldEnvNames], "SECRET_TOKEN") || strings.Contains(fmt.Sprint(req.Fields), "tok_should_never_leak") {
				t.Errorf("request: %q %v", req.Message, req.Fields)
			}
			// decision, start, exec and end of the same run.
			dec := one("decision", audit.FieldID, id, audit.FieldEvent, "decision", audit.FieldArgv, `["echo","hi"]`)
			common(dec)
			if dec.Fields[audit.FieldDecision] != "allow" || dec.Priority != audit.PriInfo || dec.Fields[audit.FieldRule] != "bot.toml:2" {
				t.Errorf("decision: %v", dec.Fields)
			}
			start := one("start", audit.FieldID, id, audit.FieldEvent, "start")
			if start.Fields[audit.FieldPid] == "" || !strings.Contains(start.Fields[audit.FieldCgroup], id) {
				t.Errorf("start: %v", start.Fields)
			}
			ex := one("exec", audit.FieldID, id, audit.FieldEvent, "exec", audit.FieldArgv, `["/bin/true"]`)
			if ex.Fields[audit.FieldProgram] != "/usr/bin/true" || ex.Fields[audit.FieldPPid] == "" || ex.Fields[audit.FieldDecision] != "allow" {
				t.Errorf("exec: %v", ex.Fields)
			}
			end := one("end", audit.FieldID, id, audit.FieldEvent, "end")
			for _, k := range []string{audit.FieldExit, audit.FieldSignal, audit.FieldDurationMS, audit.FieldCPUMS, audit.FieldMemPeak, audit.FieldStdoutBytes, audit.FieldStderrBytes} {
				if end.Fields[k] == "" {
					t.Errorf("end lacks %s: %v", k, end.Fields)
				}
			}
			if end.Fields[audit.FieldExit] != "0" || end.Fields[audit.FieldStdoutBytes] != "3" {
				t.Errorf("end: %v", end.Fields)
			}
			// A static denial: priority 4, the rule, the reason, and an end.
			deny := one("deny", audit.FieldEvent, "decision", audit.FieldDecision, "deny", audit.FieldArgv, `["git","checkout","-b","x"]`)
			if deny.Priority != audit.PriWarning || deny.Fields[audit.FieldRule] != "bot.toml:6" || deny.Fields[audit.FieldReason] != "no checkouts" ||
				deny.Message != "bot DENY git checkout -b x (bot.toml:6: no checkouts)" {
				t.Errorf("deny: %q %v", deny.Message, deny.Fields)
			}
			one("end of the denied request", audit.FieldID, deny.Fields[audit.FieldID], audit.FieldEvent, "end", audit.FieldExit, "126")
			// A denial at exec time, with the parent chain.
			rx := one("exec deny", audit.FieldEvent, "exec", audit.FieldDecision, "deny")
			if rx.Fields[audit.FieldArgv] != `["git","checkout","-b","y"]` || rx.Fields[audit.FieldParents] == "" || rx.Priority != audit.PriWarning {
				t.Errorf("exec deny: %v", rx.Fields)
			}
			// error (unknown uid, bad request), admin (refused), reload.
			one("unknown uid", audit.FieldEvent, "error", audit.FieldUID, strconv.Itoa(otherUID))
			bad := one("bad request", audit.FieldEvent, "error", audit.FieldAgent, "bot")
			if !strings.Contains(bad.Fields[audit.FieldReason], "outside the agent's workdirs") {
				t.Errorf("bad request: %v", bad.Fields)
			}
			adm := one("admin", audit.FieldEvent, "admin")
			if adm.Fields[audit.FieldUID] != "65534" || adm.Fields[audit.FieldDecision] != "deny" {
				t.Errorf("admin: %v", adm.Fields)
			}
			rl := one("reload", audit.FieldEvent, "reload", audit.FieldAgent, "bot")
			if len(rl.Fields[audit.FieldProfileSHA256]) != 64 {
				t.Errorf("reload: %v", rl.Fields)
			}
			if sink == "file" { // the real daemon's file is one whole hash chain
				out, code := d.execgate("journal", "--verify", "--file", d.auditFile())
				if code != 0 || !strings.HasPrefix(out, "intact: ") || !strings.Contains(out, "from genesis") {
					t.Errorf("execgate journal --verify: exit %d %s", code, out)
				}
			}
		})
	}
}

// TestAuditLoad: 10,000 mixed allow/deny requests from 32 clients. Each
// run id has exactly one request and one end record and its decision; the
// daemon holds no more fds than before and leaves no cgroup behind.
func TestAuditLoad(t *testing.T) {
	d := startDaemonAudit(t, "journal", profile{"loadbot", auditProfile})
	const total, clients = 10000, 32
	d.egsh(agentUID, nil, "-c", "true") // warm up: the agent's netns, lazily opened files
	fds0, rss0 := procFDs(t, d.pid), procRSS(d.pid)
	start := time.Now()
	out, err := loadAs(t, d, total, clients)
	elapsed := time.Since(start)
	if err != nil {
		var bad []string
		for _, l := range strings.Split(out, "\n") {
			if !strings.HasPrefix(l, "id ") {
				bad = append(bad, l)
			}
		}
		t.Fatalf("load: %v\n%.3000s\ndaemon stderr:\n%.3000s", err, strings.Join(bad, "\n"), d.stderr.String())
	}
	ids := map[string]int{} // run id -> request number
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(l); len(f) == 3 && f[0] == "id" {
			n, _ := strconv.Atoi(f[1])
			ids[f[2]] = n
		}
	}
	if len(ids) != total {
		t.Fatalf("%d run ids from %d requests:\n%.2000s", len(ids), total, out)
	}
	if err := journaltest.Sync(); err != nil {
		t.Fatal(err)
	}
	recs := d.records()
	byID := map[string]map[string]int{}
	for _, r := range recs {
		id := r.Fields[audit.FieldID]
		if id == "" {
			continue
		}
		if byID[id] == nil {
			byID[id] = map[string]int{}
		}
		byID[id][string(r.Event())]++
	}
	for id, i := range ids {
		ev := byID[id]
		denied := i%4 == 3
		if ev["request"] != 1 || ev["end"] != 1 || ev["decision"] < 1 || (!denied && ev["start"] != 1) {
			t.Fatalf("run %s: records %v", id, ev)
		}
	}
	fds1, rss1 := procFDs(t, d.pid), procRSS(d.pid)
	if fds1 > fds0+4 {
		t.Errorf("the daemon's fds grew from %d to %d", fds0, fds1)
	}
	var left []string
	for _, h := range []string{"pids", "memory", "cpu", "freezer", "unified"} {
		ents, _ := os.ReadDir(filepath.Join("/sys/fs/cgroup", h, testCgroupRoot, "loadbot"))
		for _, e := range ents {
			if e.IsDir() {
				left = append(left, h+"/"+e.Name())
			}
		}
	}
	if len(left) > 0 {
		t.Errorf("%d leftover run cgroups: %v", len(left), left)
	}
	t.Logf("%d requests from %d clients in %s (%.0f/s), %d records; daemon fds %d -> %d, RSS %d -> %d KiB",
		total, clients, elapsed.Round(time.Millisecond), float64(total)/elapsed.Seconds(), len(recs), fds0, fds1, rss0, rss1)
}

func procFDs(t testing.TB, pid int) int {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func procRSS(pid int) int {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			n, _ := strconv.Atoi(strings.Fields(l)[1])
			return n
		}
	}
	return 0
}

// loadAs runs the test binary as the agent uid in load mode: clients
// goroutines send total requests and print "id RUNID" for each.
func loadAs(t testing.TB, d *daemon, total, clients int) (string, error) {
	cmd := exec.Command(filepath.Join(binDir, "integration.test"))
	cmd.Env = []string{"EG_HTTP_CLIENT=load", "EG_SOCKET=" + d.agentSock(), "EG_TOTAL=" + strconv.Itoa(total), "EG_CLIENTS=" + strconv.Itoa(clients)}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: agentUID, Gid: agentUID}}
	b, err := cmd.CombinedOutput()
	return string(b), err
}

// loadMain is the load generator: every fourth request is denied.
func loadMain() int {
	total, _ := strconv.Atoi(os.Getenv("EG_TOTAL"))
	clients, _ := strconv.Atoi(os.Getenv("EG_CLIENTS"))
	c := newAgentClient(os.Getenv("EG_SOCKET"))
	var mu sync.Mutex
	var wg sync.WaitGroup
	next := make(chan int)
	fails := 0
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				script := "echo " + strconv.Itoa(i)
				if i%4 == 3 {
					script = "git checkout -b x" + strconv.Itoa(i)
				}
				id, err := c.run(script, i%4 == 3)
				mu.Lock()
				if err != nil {
					fails++
					fmt.Printf("request %d: %v\n", i, err)
				}
				fmt.Printf("id %d %s\n", i, id)
				mu.Unlock()
			}
		}()
	}
	for i := range total {
		next <- i
	}
	close(next)
	wg.Wait()
	if fails > 0 {
		return 1
	}
	return 0
}

// With [audit] script = "sha256" the script text is not journaled, nor the
// arguments of allowed commands; denials keep their argv.
func TestAuditScriptHashed(t *testing.T) {
	d := startDaemon(t, profile{"bot", auditProfile + "\n[audit]\nscript = \"sha256\"\n"})
	d.egsh(agentUID, nil, "-c", "echo tok_in_script_abc; /bin/echo tok_in_exec_def")
	d.egsh(agentUID, nil, "-c", "git checkout -b tok_denied_ghi")
	b, err := os.ReadFile(d.auditFile())
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"tok_in_script_abc", "tok_in_exec_def"} {
		if strings.Contains(string(b), secret) {
			t.Errorf("%s is in the audit trail", secret)
		}
	}
	if !strings.Contains(string(b), "tok_denied_ghi") {
		t.Error("a denial must keep its argv")
	}
	if len(find(d.records(), audit.FieldEvent, "request")) != 2 || strings.Contains(string(b), `"EXECGATE_SCRIPT":`) {
		t.Error("request records must carry only the script's sha256")
	}
}
