package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
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

// agentUID is the unprivileged account the tests act as; otherUID has no
// profile.
const (
	agentUID = 65534
	otherUID = 4321
)

// testCgroupRoot is where this test binary's daemons put their runs.
var testCgroupRoot = fmt.Sprintf("/execgate-it-%d", os.Getpid())

var (
	binDir    string // built binaries: execgated, egsh, execgate, integration.test
	buildOnce sync.Once
	buildErr  error
)

// TestMain runs every test inside a private mount namespace with a real
// systemd-journald of its own (internal/journaltest).
func TestMain(m *testing.M) {
	switch os.Getenv("EG_HTTP_CLIENT") {
	case "":
	case "load":
		os.Exit(loadMain())
	default:
		os.Exit(httpClientMain())
	}
	if os.Getuid() != 0 {
		fmt.Fprintln(os.Stderr, "integration tests need root: they create namespaces, cgroups and other uids' processes")
		os.Exit(1)
	}
	journaltest.Main(m)
}

// build compiles the binaries once, into the namespace's private /run so
// nothing is left behind, readable by the agent uids.
func build(t testing.TB) {
	t.Helper()
	buildOnce.Do(func() {
		dir := "/run/execgate-it-bin"
		if err := os.MkdirAll(dir, 0o755); err != nil {
			buildErr = err
			return
		}
		out, err := exec.Command("go", "build", "-o", dir+"/", "../cmd/...").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("build: %v\n%s", err, out)
			return
		}
		// Other uids re-run this test binary as an HTTP client.
		self, _ := os.ReadFile("/proc/self/exe")
		buildErr = os.WriteFile(filepath.Join(dir, "integration.test"), self, 0o755)
		binDir = dir
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
}

// daemon is a running execgated on temporary directories.
type daemon struct {
	t         testing.TB
	audit     string // --audit: "file" (the default, d.auditFile()) or "journal"
	auditPath string // the file, when not the default
	config    string // execgate.toml
	dir       string // everything lives under it
	work      string // the agent's workdir, owned by agentUID
	agents    string
	cmd       *exec.Cmd
	pid       int
	stderr    *bytes.Buffer
}

func (d *daemon) agentSock() string { return filepath.Join(d.dir, "run", "agent.sock") }
func (d *daemon) adminSock() string { return filepath.Join(d.dir, "run", "admin.sock") }
func (d *daemon) auditFile() string {
	if d.auditPath != "" {
		return d.auditPath
	}
	return filepath.Join(d.dir, "audit.jsonl")
}

// profile is written as agents/NAME.toml with WORK replaced by the workdir.
type profile struct{ name, body string }

// startDaemon starts execgated with the given profiles. Workdirs live under
// /var/tmp: every run gets a private /tmp.
func startDaemon(t testing.TB, profiles ...profile) *daemon {
	t.Helper()
	return startDaemonAudit(t, "file", profiles...)
}

// startDaemonAudit starts a daemon whose audit sink is "file" or
// "journal" (the harness's real journald).
func startDaemonAudit(t testing.TB, sink string, profiles ...profile) *daemon {
	t.Helper()
	return startDaemonConfig(t, sink, "", profiles...)
}

// startDaemonConfig also writes config as the daemon's execgate.toml.
func startDaemonConfig(t testing.TB, sink, config string, profiles ...profile) *daemon {
	t.Helper()
	d := prepareDaemon(t, sink, profiles...)
	d.config = config
	os.WriteFile(filepath.Join(d.dir, "none.toml"), []byte(config), 0o644)
	d.start()
	return d
}

func (d *daemon) writeProfile(p profile) {
	body := strings.ReplaceAll(p.body, "WORK", d.work)
	if err := os.WriteFile(filepath.Join(d.agents, p.name+".toml"), []byte(body), 0o644); err != nil {
		d.t.Fatal(err)
	}
}

// start runs the daemon under a cgroup root of this test binary's own: a
// daemon starting elsewhere (another test binary) must not see these runs
// as its leftovers.
func (d *daemon) start() {
	d.launch(launchOpts{args: []string{"--cgroup-root", testCgroupRoot}})
}

// prepareDaemon sets up what startDaemon does (dirs, workdir, profiles,
// cleanup) without starting the daemon; launch starts it.
func prepareDaemon(t testing.TB, sink string, profiles ...profile) *daemon {
	t.Helper()
	journaltest.Require(t)
	build(t)
	dir, err := os.MkdirTemp("/var/tmp", "execgate-it-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	d := &daemon{t: t, audit: sink, dir: dir, work: filepath.Join(dir, "work"), agents: filepath.Join(dir, "agents")}
	os.MkdirAll(d.work, 0o755)
	os.Chown(d.work, agentUID, agentUID)
	os.MkdirAll(d.agents, 0o755)
	os.MkdirAll(filepath.Join(dir, "run"), 0o755)
	os.WriteFile(filepath.Join(dir, "none.toml"), nil, 0o644)
	for _, p := range profiles {
		d.writeProfile(p)
	}
	t.Cleanup(func() {
		d.stop()
		os.RemoveAll(dir)
		bypassRemoveCgroups(testCgroupRoot) // empty agent cgroups; a live run's stays
	})
	return d
}

// launchOpts is how a test starts execgated beyond the defaults.
type launchOpts struct {
	args []string                     // more daemon flags
	env  []string                     // more environment
	wrap func(argv []string) []string // runs the daemon under another program that execs it
}

// daemonArgv is execgated's command line on d's directories.
func (d *daemon) daemonArgv(extra ...string) []string {
	spec := "file:" + d.auditFile()
	if d.audit == "journal" {
		spec = "journal"
	}
	return append([]string{filepath.Join(binDir, "execgated"), "--agents", d.agents, "--run-dir", filepath.Join(d.dir, "run"),
		"--state-dir", filepath.Join(d.dir, "state"), "--audit", spec, "--config", filepath.Join(d.dir, "none.toml")}, extra...)
}

func (d *daemon) launch(o launchOpts) {
	d.t.Helper()
	argv := d.daemonArgv(o.args...)
	if o.wrap != nil {
		argv = o.wrap(argv)
	}
	d.stderr = &bytes.Buffer{}
	d.cmd = exec.Command(argv[0], argv[1:]...)
	d.cmd.Env = append([]string{"PATH=/usr/local/bin:/usr/bin:/bin"}, o.env...)
	stderr := &lockedWriter{w: d.stderr}
	d.cmd.Stderr = stderr
	if err := d.cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	d.pid = d.cmd.Process.Pid
	// Under socket activation this first connection is what starts the
	// daemon.
	waitFor(d.t, 15*time.Second, "execgated to listen: "+stderr.String(), func() bool {
		c, err := net.Dial("unix", d.agentSock())
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

// String is what was written so far, read under the lock.
func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s, ok := l.w.(fmt.Stringer); ok {
		return s.String()
	}
	return ""
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (d *daemon) stop() {
	if d.cmd == nil || d.cmd.Process == nil {
		return
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { d.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		d.cmd.Process.Kill()
		<-done
	}
	d.cmd = nil
}

// alive reports whether the daemon process still runs.
func (d *daemon) alive() bool {
	return d.cmd != nil && d.cmd.ProcessState == nil && d.cmd.Process.Signal(syscall.Signal(0)) == nil
}

// egsh runs egsh as uid in the workdir with the given stdin and returns
// stdout, stderr and the exit code.
type result struct {
	stdout, stderr []byte
	code           int
}

func (d *daemon) egsh(uid int, stdin []byte, args ...string) result {
	return d.egshCtx(context.Background(), uid, stdin, args...)
}

func (d *daemon) egshCtx(ctx context.Context, uid int, stdin []byte, args ...string) result {
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "egsh"), args...)
	cmd.Dir = d.work
	cmd.Env = []string{"EXECGATE_SOCKET=" + d.agentSock(), "PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8", "SECRET_TOKEN=tok_should_never_leak"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		d.t.Fatalf("egsh: %v", err)
	}
	return result{so.Bytes(), se.Bytes(), code}
}

// records reads the audit trail: the file, or the journal records of
// this daemon's process.
func (d *daemon) records() []*audit.Record {
	d.t.Helper()
	if d.audit == "journal" {
		return journaltest.Query(d.t, "_PID="+strconv.Itoa(d.pid))
	}
	b, err := os.ReadFile(d.auditFile())
	if err != nil {
		d.t.Fatal(err)
	}
	var out []*audit.Record
	for _, l := range bytes.Split(b, []byte("\n")) {
		if len(bytes.TrimSpace(l)) == 0 {
			continue
		}
		r, err := audit.ParseLine(l)
		if err != nil {
			d.t.Fatalf("audit line %q: %v", l, err)
		}
		out = append(out, r)
	}
	return out
}

// find returns the records whose fields include every key=value given.
func find(recs []*audit.Record, kv ...string) []*audit.Record {
	var out []*audit.Record
	for _, r := range recs {
		ok := true
		for i := 0; i+1 < len(kv); i += 2 {
			if r.Fields[kv[i]] != kv[i+1] {
				ok = false
			}
		}
		if ok {
			out = append(out, r)
		}
	}
	return out
}

// httpAs sends one HTTP request over a Unix socket as uid, by re-running
// this test binary as that uid (the kernel, not the request, says who
// calls).
func httpAs(t testing.TB, uid int, socket, method, path string, body []byte) (int, []byte) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "integration.test"))
	cmd.Env = []string{"EG_HTTP_CLIENT=1", "EG_SOCKET=" + socket, "EG_METHOD=" + method, "EG_PATH=" + path}
	cmd.Stdin = bytes.NewReader(body)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
	out, err := cmd.Output()
	if err != nil {
		var se []byte
		if ee, ok := err.(*exec.ExitError); ok {
			se = ee.Stderr
		}
		return -1, append(out, se...)
	}
	var code int
	var rest []byte
	if i := bytes.IndexByte(out, '\n'); i >= 0 {
		fmt.Sscan(string(out[:i]), &code)
		rest = out[i+1:]
	}
	return code, rest
}

func httpClientMain() int {
	sock := os.Getenv("EG_SOCKET")
	c := http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	body, _ := io.ReadAll(os.Stdin)
	req, _ := http.NewRequest(os.Getenv("EG_METHOD"), "http://execgate"+os.Getenv("EG_PATH"), bytes.NewReader(body))
	resp, err := c.Do(req)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	b, _ := io.ReadAll(resp.Body)
	fmt.Printf("%d\n%s", resp.StatusCode, b)
	return 0
}

func jsonBody(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

// agentClient is a raw HTTP client of the agent socket for load tests.
type agentClient struct{ c *http.Client }

func newAgentClient(sock string) *agentClient {
	return &agentClient{c: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}}
}

// run sends one exec and returns the run id, checking the outcome.
func (a *agentClient) run(script string, wantDeny bool) (string, error) {
	resp, err := a.c.Post("http://execgate/v1/exec", "application/json", bytes.NewReader(jsonBody(map[string]string{"script": script})))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if wantDeny {
		var e struct{ ID, Decision string }
		json.Unmarshal(b, &e)
		if resp.StatusCode != 403 || e.Decision != "deny" {
			return e.ID, fmt.Errorf("want a denial, got %d %s", resp.StatusCode, b)
		}
		return e.ID, nil
	}
	id, exit := "", -1
	for _, l := range bytes.Split(b, []byte("\n")) {
		var ev struct {
			Event, ID string
			Code      *int
		}
		if json.Unmarshal(l, &ev) != nil {
			continue
		}
		if ev.Event == "accepted" {
			id = ev.ID
		}
		if ev.Event == "exit" && ev.Code != nil {
			exit = *ev.Code
		}
	}
	if resp.StatusCode != 200 || exit != 0 {
		return id, fmt.Errorf("status %d exit %d: %.200s", resp.StatusCode, exit, b)
	}
	return id, nil
}
