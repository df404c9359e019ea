package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/bits"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/execgate/execgate/api"
	"github.com/execgate/execgate/audit"
)

// ---- helpers shared by systemd_test.go and restart_test.go ----

var cgroupSeq atomic.Int64

// adminGet sends GET path on a socket from this (root) process.
func adminGet(sock, path string) (int, []byte) {
	c := http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	resp, err := c.Get("http://execgate" + path)
	if err != nil {
		return -1, []byte(err.Error())
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// uniqueCgroupRoot gives a test's daemon its own cgroup root, so its
// leftovers are exactly its own and other daemons are never touched.
func uniqueCgroupRoot() string {
	return fmt.Sprintf("/execgate-it-%d-%d", os.Getpid(), cgroupSeq.Add(1))
}

// v1Dirs are a run cgroup's directories in every v1 hierarchy the
// sandbox uses.
func v1Dirs(rel string) []string {
	var out []string
	for _, c := range []string{"freezer", "pids", "memory", "cpu", "cpuacct"} {
		if _, err := os.Stat(filepath.Join("/sys/fs/cgroup", c)); err == nil {
			out = append(out, filepath.Join("/sys/fs/cgroup", c, rel))
		}
	}
	return out
}

// egshStart starts egsh as uid and returns at once.
type bgRun struct {
	cmd            *exec.Cmd
	stdout, stderr *bytes.Buffer
	done           chan struct{}
	code           int
}

func (d *daemon) egshStart(uid int, args ...string) *bgRun {
	d.t.Helper()
	b := &bgRun{stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}, done: make(chan struct{}), code: -1}
	b.cmd = exec.Command(filepath.Join(binDir, "egsh"), args...)
	b.cmd.Dir = d.work
	b.cmd.Env = []string{"EXECGATE_SOCKET=" + d.agentSock(), "PATH=/usr/local/bin:/usr/bin:/bin"}
	b.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
	b.cmd.Stdout, b.cmd.Stderr = b.stdout, b.stderr
	if err := b.cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	go func() {
		b.cmd.Wait()
		b.code = b.cmd.ProcessState.ExitCode()
		close(b.done)
	}()
	d.t.Cleanup(func() {
		b.cmd.Process.Kill()
		<-b.done
	})
	return b
}

func (b *bgRun) wait(t testing.TB, d time.Duration) int {
	t.Helper()
	select {
	case <-b.done:
		return b.code
	case <-time.After(d):
		t.Fatalf("egsh still running after %s", d)
		return -1
	}
}

// runID waits for the request record of script and returns its run id.
func (d *daemon) runID(script string) string {
	d.t.Helper()
	return d.waitRecord(audit.FieldEvent, "request", audit.FieldScript, script).Fields[audit.FieldID]
}

// waitRecord waits until a record with every key=value given exists.
func (d *daemon) waitRecord(kv ...string) *audit.Record {
	d.t.Helper()
	var got []*audit.Record
	waitFor(d.t, 20*time.Second, fmt.Sprint("a record with ", kv), func() bool {
		got = find(d.records(), kv...)
		return len(got) > 0
	})
	return got[len(got)-1]
}

// notifySocket is a NOTIFY_SOCKET that keeps every message with the time
// it came.
type notifySocket struct {
	path string
	conn *net.UnixConn
	mu   sync.Mutex
	msgs []notifyMsg
	cond *sync.Cond
}

type notifyMsg struct {
	at   time.Time
	text string
}

func (m notifyMsg) String() string { return fmt.Sprintf("%s %q", m.at.Format("15:04:05.000"), m.text) }

func listenNotify(t testing.TB, dir string) *notifySocket {
	t.Helper()
	n := &notifySocket{path: filepath.Join(dir, "notify.sock")}
	n.cond = sync.NewCond(&n.mu)
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: n.path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	n.conn = c
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 64<<10)
		for {
			k, err := c.Read(buf)
			if err != nil {
				return
			}
			n.mu.Lock()
			n.msgs = append(n.msgs, notifyMsg{time.Now(), string(buf[:k])})
			n.cond.Broadcast()
			n.mu.Unlock()
		}
	}()
	return n
}

func (n *notifySocket) all() []notifyMsg {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]notifyMsg(nil), n.msgs...)
}

// waitMsg returns the first message from index from on that has every
// line given, and its index.
func (n *notifySocket) waitMsg(t testing.TB, from int, lines ...string) (int, notifyMsg) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		msgs := n.all()
		for i := from; i < len(msgs); i++ {
			if hasLines(msgs[i].text, lines...) {
				return i, msgs[i]
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no sd_notify message with %q; got %v", lines, msgs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func hasLines(text string, lines ...string) bool {
	have := strings.Split(text, "\n")
	for _, l := range lines {
		found := false
		for _, h := range have {
			if h == l || strings.HasSuffix(l, "=") && strings.HasPrefix(h, l) {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func monotonicUsec() int64 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano() / 1000
}

// ---- units and install ----

// unitsOf reads the repository's unit files.
func unitFile(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "systemd", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// directives returns KEY=VALUE lines (no comments), in order.
func directives(unit string) map[string][]string {
	out := map[string][]string{}
	for _, l := range strings.Split(unit, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || l[0] == '#' || l[0] == ';' || l[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if ok {
			out[k] = append(out[k], v)
		}
	}
	return out
}

// The units say what the design promises, `make install` puts them (and
// the rest) where systemd looks, and `systemd-analyze verify` accepts the
// installed units with no word of warning, for both install prefixes.
func TestUnitsInstallAndVerify(t *testing.T) {
	svc := directives(unitFile(t, "execgated.service"))
	for k, want := range map[string]string{
		"Type": "notify", "NotifyAccess": "main", "WatchdogSec": "30s", "Delegate": "yes", "KillMode": "mixed",
		"ExecReload": "/usr/local/bin/execgate reload", "Restart": "on-failure", "RuntimeDirectory": "execgate",
		"StateDirectory": "execgate", "LogsDirectory": "execgate", "ConfigurationDirectory": "execgate",
		"ProtectKernelModules": "yes", "ProtectClock": "yes", "LockPersonality": "yes", "RestrictRealtime": "yes",
		"SystemCallArchitectures": "native", "LogRateLimitIntervalSec": "0", "Sockets": "execgated.socket execgated-admin.socket",
		"RuntimeDirectoryPreserve": "yes", "OOMPolicy": "continue",
	} {
		if got := strings.Join(svc[k], " "); got != want {
			t.Errorf("execgated.service: %s=%q, want %q", k, got, want)
		}
	}
	for _, k := range []string{"RestrictNamespaces", "ProtectControlGroups", "ProtectKernelTunables", "PrivateDevices", "MemoryDenyWriteExecute", "ProtectHome", "PrivateTmp", "NoNewPrivileges"} {
		if v, ok := svc[k]; ok {
			t.Errorf("execgated.service sets %s=%v, which the sandbox or the agents' commands cannot live with", k, v)
		}
	}
	for name, want := range map[string]map[string]string{
		"execgated.socket":       {"ListenStream": "/run/execgate/agent.sock", "SocketMode": "0666", "FileDescriptorName": "agent", "Service": "execgated.service"},
		"execgated-admin.socket": {"ListenStream": "/run/execgate/admin.sock", "SocketMode": "0660", "SocketGroup": "execgate-admin", "FileDescriptorName": "admin", "Service": "execgated.service"},
	} {
		got := directives(unitFile(t, name))
		for k, v := range want {
			if g := strings.Join(got[k], " "); g != v {
				t.Errorf("%s: %s=%q, want %q", name, k, g, v)
			}
		}
	}

	for _, tc := range []struct{ prefix, unitDir, libDir string }{
		{"/usr", "/lib/systemd/system", "/usr/lib"},
		{"/usr/local", "/usr/local/lib/systemd/system", "/usr/local/lib"},
	} {
		t.Run(strings.ReplaceAll(tc.prefix, "/", "_"), func(t *testing.T) {
			root := t.TempDir()
			makeInstall := func() {
				t.Helper()
				cmd := exec.Command("make", "-s", "-C", "..", "install", "DESTDIR="+root, "PREFIX="+tc.prefix)
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Fatalf("make install: %v\n%s", err, out)
				}
			}
			makeInstall()
			for path, mode := range map[string]os.FileMode{
				tc.prefix + "/bin/execgated": 0o755, tc.prefix + "/bin/egsh": 0o755, tc.prefix + "/bin/execgate": 0o755,
				tc.unitDir + "/execgated.service": 0o644, tc.unitDir + "/execgated.socket": 0o644, tc.unitDir + "/execgated-admin.socket": 0o644,
				tc.libDir + "/sysusers.d/execgate.conf": 0o644, tc.libDir + "/tmpfiles.d/execgate.conf": 0o644,
				"/etc/execgate/execgate.toml": 0o644, "/etc/execgate/agents": os.ModeDir | 0o755,
				tc.prefix + "/share/execgate/examples/flow.toml": 0o644,
			} {
				fi, err := os.Stat(filepath.Join(root, path))
				if err != nil || fi.Mode() != mode {
					t.Errorf("%s: %v, mode %v; want %v", path, err, fi.Mode(), mode)
				}
			}
			if ents, _ := os.ReadDir(filepath.Join(root, "etc/execgate/agents")); len(ents) != 0 {
				t.Errorf("/etc/execgate/agents is not empty: %v", ents)
			}
			unit, _ := os.ReadFile(filepath.Join(root, tc.unitDir, "execgated.service"))
			if !strings.Contains(string(unit), "\nExecStart="+tc.prefix+"/bin/execgated --config /etc/execgate/execgate.toml\n") || !strings.Contains(string(unit), "\nExecReload="+tc.prefix+"/bin/execgate reload\n") {
				t.Errorf("installed unit's ExecStart and ExecReload do not name %s/bin/execgated and %s/bin/execgate", tc.prefix, tc.prefix)
			}
			// An admin's execgate.toml is never replaced.
			cfg := filepath.Join(root, "etc/execgate/execgate.toml")
			os.WriteFile(cfg, []byte("# mine\n"), 0o644)
			makeInstall()
			if b, _ := os.ReadFile(cfg); string(b) != "# mine\n" {
				t.Errorf("make install replaced an existing execgate.toml")
			}

			// sysusers.d and tmpfiles.d do what the Makefile's shell used to.
			if out, err := exec.Command("systemd-sysusers", "--root="+root).CombinedOutput(); err != nil {
				t.Fatalf("systemd-sysusers: %v %s", err, out)
			}
			if b, _ := os.ReadFile(filepath.Join(root, "etc/group")); !regexp.MustCompile(`(?m)^execgate-admin:x:\d+:`).Match(b) {
				t.Errorf("no execgate-admin group after systemd-sysusers: %q", b)
			}
			if out, err := exec.Command("systemd-tmpfiles", "--root="+root, "--create", filepath.Join(root, tc.libDir, "tmpfiles.d/execgate.conf")).CombinedOutput(); err != nil {
				t.Fatalf("systemd-tmpfiles: %v %s", err, out)
			}
			for dir, mode := range map[string]os.FileMode{"/var/lib/execgate/approved": 0o700, "/var/lib/execgate/runs": 0o700, "/var/log/execgate": 0o750} {
				if fi, err := os.Stat(filepath.Join(root, dir)); err != nil || fi.Mode().Perm() != mode {
					t.Errorf("tmpfiles %s: %v %v", dir, err, fi)
				}
			}

			// systemd-analyze verify, against the installed tree: the
			// host's own units (targets) and /bin/kill are copied in so
			// every dependency and every command resolves there.
			os.MkdirAll(filepath.Join(root, "lib/systemd/system"), 0o755)
			if out, err := exec.Command("cp", "-an", "/lib/systemd/system/.", filepath.Join(root, "lib/systemd/system")+"/").CombinedOutput(); err != nil {
				t.Fatalf("copy the host's units: %v %s", err, out)
			}
			os.MkdirAll(filepath.Join(root, "usr/bin"), 0o755)
			if _, err := os.Lstat(filepath.Join(root, "bin")); err != nil {
				os.Symlink("usr/bin", filepath.Join(root, "bin"))
			}
			if out, err := exec.Command("cp", "/bin/kill", filepath.Join(root, "bin/kill")).CombinedOutput(); err != nil {
				t.Fatalf("copy kill: %v %s", err, out)
			}
			verify := exec.Command("systemd-analyze", "verify", "--root="+root, "execgated.service", "execgated.socket", "execgated-admin.socket")
			verify.Env = append(os.Environ(), "SYSTEMD_LOG_LEVEL=info", "SYSTEMD_LOG_COLOR=0")
			var out bytes.Buffer
			verify.Stdout, verify.Stderr = &out, &out
			err := verify.Run()
			if err != nil || out.Len() > 0 {
				t.Errorf("systemd-analyze verify: %v\n%s", err, out.String())
			}
			// The check is real: a unit with a typo fails it.
			bad := filepath.Join(root, tc.unitDir, "execgated.service")
			os.WriteFile(bad, bytes.Replace(unit, []byte("LockPersonality=yes"), []byte("LockPersonality=yes\nLockPersonalty=yes"), 1), 0o644)
			out.Reset()
			verify = exec.Command("systemd-analyze", "verify", "--root="+root, "execgated.service")
			verify.Stdout, verify.Stderr = &out, &out
			verify.Run()
			if !strings.Contains(out.String(), "LockPersonalty") {
				t.Errorf("a misspelt directive passed systemd-analyze verify: %q", out.String())
			}
		})
	}
}

// ---- socket activation ----

// Under systemd-socket-activate with both named sockets (the way systemd
// passes execgated.socket and execgated-admin.socket), the daemon serves
// an agent through egsh and an admin over the admin socket, on the
// sockets it was given.
func TestSocketActivation(t *testing.T) {
	d := prepareDaemon(t, "file", profile{"bot", fullProfile})
	notify := listenNotify(t, d.dir)
	d.launch(launchOpts{
		env: []string{"NOTIFY_SOCKET=" + notify.path},
		wrap: func(argv []string) []string {
			return append([]string{"systemd-socket-activate", "-l", d.agentSock(), "--fdname=agent", "-l", d.adminSock(), "--fdname=admin",
				"-E", "PATH", "-E", "NOTIFY_SOCKET"}, argv...)
		},
		args: []string{"--cgroup-root", uniqueCgroupRoot()},
	})
	// systemd-socket-activate made the sockets (mode from its umask); the
	// agent socket is 0666 in the unit, as here.
	os.Chmod(d.agentSock(), 0o666)
	st0, err := os.Stat(d.agentSock())
	if err != nil {
		t.Fatal(err)
	}

	r := d.egsh(agentUID, nil, "-c", "echo activated; id -u")
	if r.code != 0 || string(r.stdout) != fmt.Sprintf("activated\n%d\n", agentUID) {
		t.Fatalf("egsh through the activated socket: %d %q %q\n%s", r.code, r.stdout, r.stderr, d.stderr)
	}
	// The daemon is the activator's process (exec'd in place), and it uses
	// the sockets it was passed rather than making its own.
	notify.waitMsg(t, 0, "READY=1")
	if !strings.Contains(d.stderr.String(), "Execing") {
		t.Errorf("not started by socket activation: %s", d.stderr)
	}
	exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", d.pid))
	if !strings.HasSuffix(exe, "/execgated") {
		t.Errorf("pid %d is %s, not execgated", d.pid, exe)
	}
	if st1, err := os.Stat(d.agentSock()); err != nil || !os.SameFile(st0, st1) {
		t.Errorf("the daemon replaced the activated agent socket: %v", err)
	}
	code, body := adminGet(d.adminSock(), api.PathStatus)
	var st api.Status
	if code != 200 || json.Unmarshal(body, &st) != nil || len(st.Agents) != 1 || st.Agents[0].Name != "bot" {
		t.Errorf("admin status over the activated admin socket: %d %s", code, body)
	}
	// An agent is still not an admin, whatever socket it was handed.
	os.Chmod(d.adminSock(), 0o666)
	if code, body := httpAs(t, agentUID, d.adminSock(), "GET", api.PathStatus, nil); code != 403 {
		t.Errorf("agent on the activated admin socket: %d %s", code, body)
	}
	d.stop()
	if d.cmd != nil || !strings.Contains(d.stderr.String(), "serving") {
		t.Errorf("daemon output: %s", d.stderr)
	}
	// Socket files belong to whoever made them: the daemon leaves them.
	if _, err := os.Stat(d.agentSock()); err != nil {
		t.Errorf("the daemon removed the activated socket file: %v", err)
	}
}

// Activation with a socket the daemon does not expect is refused clearly.
func TestSocketActivationWrongNames(t *testing.T) {
	d := prepareDaemon(t, "file", profile{"bot", fullProfile})
	other := filepath.Join(d.dir, "other.sock")
	cmd := exec.Command("systemd-socket-activate", append([]string{"-l", d.agentSock(), "--fdname=agent", "-l", other, "--fdname=admn"}, d.daemonArgv()...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the sockets", func() bool { _, err := os.Stat(other); return err == nil })
	c, err := net.Dial("unix", d.agentSock())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(out.String(), `named "admn"`) {
		t.Errorf("unexpected socket name: %v %s", err, out.String())
	}
}

// ---- sd_notify ----

// The daemon tells a NOTIFY_SOCKET what systemd needs: READY=1 once both
// sockets accept and the profiles are loaded, STATUS= lines with agents,
// runs and pending approvals, WATCHDOG=1 at half of WATCHDOG_USEC (only
// when WATCHDOG_PID is its own pid), RELOADING=1 with MONOTONIC_USEC
// then READY=1 around a SIGHUP, and STOPPING=1 on SIGTERM.
func TestNotify(t *testing.T) {
	d := prepareDaemon(t, "file", profile{"bot", fullProfile})
	notify := listenNotify(t, d.dir)
	type readyCheck struct {
		code        int
		body        []byte
		agentDialed bool
	}
	ready := make(chan readyCheck, 1)
	go func() {
		// The moment READY=1 arrives, both sockets must already answer.
		notify.mu.Lock()
		for !strings.Contains(fmt.Sprint(notify.msgs), "READY=1") {
			notify.cond.Wait()
		}
		notify.mu.Unlock()
		c, err := net.Dial("unix", d.agentSock())
		if err == nil {
			c.Close()
		}
		code, body := adminGet(d.adminSock(), api.PathStatus)
		ready <- readyCheck{code, body, err == nil}
	}()
	start := time.Now()
	d.launch(launchOpts{
		env: []string{"NOTIFY_SOCKET=" + notify.path, "WATCHDOG_USEC=1000000"},
		// WATCHDOG_PID names the daemon's own pid, as systemd sets it: the
		// shell sets it to its pid and execs the daemon in place.
		wrap: func(argv []string) []string {
			return append([]string{"/bin/sh", "-c", `export WATCHDOG_PID=$$; exec "$@"`, "sh"}, argv...)
		},
		args: []string{"--cgroup-root", uniqueCgroupRoot()},
	})
	var rc readyCheck
	select {
	case rc = <-ready:
	case <-time.After(15 * time.Second):
		t.Fatalf("no READY=1: %v", notify.all())
	}
	var st api.Status
	if !rc.agentDialed || rc.code != 200 || json.Unmarshal(rc.body, &st) != nil || len(st.Agents) != 1 {
		t.Fatalf("at READY=1 the sockets did not serve the loaded profiles: agent dial %v, admin %d %s", rc.agentDialed, rc.code, rc.body)
	}
	i, m := notify.waitMsg(t, 0, "READY=1")
	if i != 0 || !hasLines(m.text, "STATUS=1 agent, 0 runs, 0 pending approvals") {
		t.Errorf("first message %d: %q (all: %v)", i, m.text, notify.all())
	}

	// Watchdog pings every 500ms (half of 1s).
	time.Sleep(2600 * time.Millisecond)
	var pings []time.Time
	for _, m := range notify.all() {
		if hasLines(m.text, "WATCHDOG=1") {
			pings = append(pings, m.at)
		}
	}
	if len(pings) < 4 {
		t.Fatalf("%d WATCHDOG=1 pings in %s, want about 5", len(pings), time.Since(start))
	}
	for k := 1; k < len(pings); k++ {
		if gap := pings[k].Sub(pings[k-1]); gap < 300*time.Millisecond || gap > 900*time.Millisecond {
			t.Errorf("watchdog gap %s, want about 500ms", gap)
		}
	}

	// STATUS= follows the runs.
	run := d.egshStart(agentUID, "-c", "sleep 2")
	from := len(notify.all())
	notify.waitMsg(t, from, "STATUS=1 agent, 1 run, 0 pending approvals")
	if code := run.wait(t, 10*time.Second); code != 0 {
		t.Errorf("run: exit %d %s", code, run.stderr)
	}

	// SIGHUP: RELOADING=1 with the monotonic time, then READY=1.
	from = len(notify.all())
	before := monotonicUsec()
	d.cmd.Process.Signal(syscall.SIGHUP)
	i, m = notify.waitMsg(t, from, "RELOADING=1")
	after := monotonicUsec()
	usec := int64(-1)
	for _, l := range strings.Split(m.text, "\n") {
		if v, ok := strings.CutPrefix(l, "MONOTONIC_USEC="); ok {
			usec, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	if usec < before || usec > after {
		t.Errorf("RELOADING=1 carries MONOTONIC_USEC=%d, want within [%d, %d]: %q", usec, before, after, m.text)
	}
	notify.waitMsg(t, i+1, "READY=1")
	d.waitRecord(audit.FieldEvent, "reload", "EXECGATE_RELOAD_TRIGGER", "sighup")

	// SIGTERM: STOPPING=1, and a clean exit.
	from = len(notify.all())
	d.cmd.Process.Signal(syscall.SIGTERM)
	notify.waitMsg(t, from, "STOPPING=1")
	if err := d.cmd.Wait(); err != nil {
		t.Errorf("exit after SIGTERM: %v\n%s", err, d.stderr)
	}
	d.cmd = nil

	// A watchdog meant for another process (WATCHDOG_PID not ours) is not
	// this daemon's to ping.
	from = len(notify.all())
	d.launch(launchOpts{env: []string{"NOTIFY_SOCKET=" + notify.path, "WATCHDOG_USEC=200000", "WATCHDOG_PID=1"},
		args: []string{"--cgroup-root", uniqueCgroupRoot()}})
	notify.waitMsg(t, from, "READY=1")
	time.Sleep(time.Second)
	for _, m := range notify.all()[from:] {
		if hasLines(m.text, "WATCHDOG=1") {
			t.Errorf("pinged a watchdog that was not its own: %q", m.text)
			break
		}
	}
}

// ---- hot reload ----

const reloadV1 = `uid = 65534
security = "allowlist"
workdirs = ["WORK"]

[[rule]]
match = "{date,sleep} **"
action = "allow"

[limits]
timeout = "30s"
concurrent = 8
`

const reloadV2 = `uid = 65534
security = "allowlist"
workdirs = ["WORK"]

[[rule]]
match = "{touch,sleep} **"
action = "allow"

[limits]
timeout = "30s"
concurrent = 8
`

// A profile edited on disk takes effect without a signal: written the way
// editors save (a temporary renamed over the file), in place, removed and
// added back. A broken edit keeps the last good rules and journals an
// error naming file:line. A removed agent is refused, while its run
// already going continues to its own end.
func TestProfileHotReload(t *testing.T) {
	d := prepareDaemon(t, "file", profile{"bot", reloadV1})
	d.launch(launchOpts{args: []string{"--cgroup-root", uniqueCgroupRoot()}})
	file := filepath.Join(d.agents, "bot.toml")
	replace := func(body string) { // what editors do on save
		t.Helper()
		tmp := filepath.Join(d.agents, ".bot.toml.swp")
		if err := os.WriteFile(tmp, []byte(strings.ReplaceAll(body, "WORK", d.work)), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, file); err != nil {
			t.Fatal(err)
		}
	}
	allowed := func(script string) bool {
		r := d.egsh(agentUID, nil, "-c", script)
		return r.code == 0
	}
	if !allowed("date") || allowed("touch t1") {
		t.Fatal("v1 rules are not in force")
	}

	// Rename-over-write: date was allowed and is now denied, touch the
	// other way round; no signal is sent.
	replace(reloadV2)
	waitFor(t, 5*time.Second, "the rename-over-write edit to take effect", func() bool { return allowed("touch t2") })
	if allowed("date") {
		t.Error("date still allowed after the edit")
	}
	rec := d.waitRecord(audit.FieldEvent, "reload", "EXECGATE_RELOAD_TRIGGER", "profiles changed")
	if rec.Fields["EXECGATE_AGENTS_ADDED"] != "" || rec.Fields["EXECGATE_AGENTS_REMOVED"] != "" {
		t.Errorf("an edit added or removed agents: %v", rec.Fields)
	}

	// A broken edit: the v2 rules stay, and the error names file:line.
	replace(reloadV2 + "\n[[rule]\nmatch = \"date **\"\naction = \"allow\"\n") // line 13: [[rule]
	errRec := d.waitRecord(audit.FieldEvent, "error")
	if !regexp.MustCompile(`/bot\.toml:13: TOML syntax`).MatchString(errRec.Fields[audit.FieldReason]) {
		t.Errorf("the error record does not name file:line: %q", errRec.Fields[audit.FieldReason])
	}
	if !allowed("touch t3") || allowed("date") {
		t.Error("a broken edit changed the rules in force")
	}

	// In place (truncate and write, as `cat > file` does): back to v1.
	if err := os.WriteFile(file, []byte(strings.ReplaceAll(reloadV1, "WORK", d.work)), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the in-place edit to take effect", func() bool { return allowed("date") })

	// Removed: new requests are refused, the run already going goes on.
	run := d.egshStart(agentUID, "-c", "sleep 2; echo survived")
	d.waitRecord(audit.FieldEvent, "start", audit.FieldID, d.runID("sleep 2; echo survived"))
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	rec = d.waitRecord(audit.FieldEvent, "reload", "EXECGATE_AGENTS_REMOVED", "bot")
	if !strings.Contains(rec.Message, "removed bot") {
		t.Errorf("removal record: %q", rec.Message)
	}
	r := d.egsh(agentUID, nil, "-c", "date")
	if r.code != 126 || !strings.Contains(string(r.stderr), "no execgate profile") {
		t.Errorf("a removed agent was served: %d %q", r.code, r.stderr)
	}
	if code := run.wait(t, 10*time.Second); code != 0 || run.stdout.String() != "survived\n" {
		t.Errorf("the removed agent's run: exit %d %q %q", code, run.stdout, run.stderr)
	}

	// Added back.
	replace(reloadV1)
	d.waitRecord(audit.FieldEvent, "reload", "EXECGATE_AGENTS_ADDED", "bot")
	waitFor(t, 5*time.Second, "the agent to be back", func() bool { return allowed("date") })

	// Editors' temporaries and other files do not cause reloads.
	n := len(find(d.records(), audit.FieldEvent, "reload", "EXECGATE_RELOAD_TRIGGER", "profiles changed"))
	os.WriteFile(filepath.Join(d.agents, ".bot.toml.swp"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(d.agents, "notes.txt"), []byte("x"), 0o644)
	time.Sleep(time.Second)
	if m := len(find(d.records(), audit.FieldEvent, "reload", "EXECGATE_RELOAD_TRIGGER", "profiles changed")); m != n {
		t.Errorf("%d reloads for files the loader does not read", m-n)
	}
}

// ---- hardening ----

const hardenedProfile = `uid = 65534
security = "full"
workdirs = ["WORK"]

[network]
mode = "proxy"

[changes]
mode = "review"

[[rule]]
match = "git checkout **"
action = "deny"
reason = "no checkouts"

[files]
deny_read = ["**/.env"]
read_only = ["WORK/ro"]

[limits]
timeout = "2s"
`

// unitCaps returns the service's CapabilityBoundingSet, as setpriv takes
// it ("sys_admin", ...).
func unitCaps(t testing.TB) []string {
	t.Helper()
	var caps []string
	for _, v := range directives(unitFile(t, "execgated.service"))["CapabilityBoundingSet"] {
		for _, c := range strings.Fields(v) {
			caps = append(caps, strings.ToLower(strings.TrimPrefix(c, "CAP_")))
		}
	}
	if len(caps) == 0 {
		t.Fatal("execgated.service has no CapabilityBoundingSet")
	}
	return caps
}

// hardenedWrap runs the daemon as the unit would, as far as it can be
// without systemd: the unit's capability bounding set (setpriv) and
// ProtectSystem=full (/usr, /boot and /etc read-only in the daemon's mount
// namespace, which every run inherits).
func hardenedWrap(caps []string, nnp bool) func([]string) []string {
	bset := "-all"
	for _, c := range caps {
		bset += ",+" + c
	}
	return func(argv []string) []string {
		ro := `for p in /usr /boot /efi /etc; do [ -d "$p" ] || continue; mount --bind "$p" "$p" && mount -o remount,bind,ro "$p" || exit 1; done; exec "$@"`
		sp := []string{"setpriv", "--bounding-set", bset}
		if nnp {
			sp = append(sp, "--no-new-privs")
		}
		return append(append([]string{"unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", ro, "sh"}, sp...), append([]string{"--"}, argv...)...)
	}
}

// hardenedFlow runs what needs each kept capability and returns what did
// not work.
func hardenedFlow(d *daemon) []string {
	var bad []string
	// A secret the agent's own account may read, in a workdir only the
	// agent can search (the deny_read walk must still find it).
	os.WriteFile(filepath.Join(d.work, ".env"), []byte("TOKEN=hunter2\n"), 0o600)
	os.MkdirAll(filepath.Join(d.work, "ro"), 0o755)
	exec.Command("chown", "-R", strconv.Itoa(agentUID)+":"+strconv.Itoa(agentUID), d.work).Run()
	os.Chmod(d.work, 0o700)

	r := d.egsh(agentUID, nil, "-c", `id -u; touch ok && echo wrote`)
	if r.code != 0 || string(r.stdout) != fmt.Sprintf("%d\nwrote\n", agentUID) {
		bad = append(bad, fmt.Sprintf("a plain run as the agent: %d %q %q", r.code, r.stdout, r.stderr))
	}
	// [changes] review: the write lands at the run's end, the agent's.
	if st, err := os.Stat(filepath.Join(d.work, "ok")); err != nil || st.Sys().(*syscall.Stat_t).Uid != uint32(agentUID) {
		bad = append(bad, fmt.Sprintf("review mode: the run's file was not applied as the agent's: %v", err))
	}
	// The mask (mounts): the file reads empty, whoever opens it.
	r = d.egsh(agentUID, nil, "-c", `/usr/bin/python3 -c 'print(repr(open(chr(46)+"env").read()))'`)
	if r.code != 0 || string(r.stdout) != "''\n" {
		bad = append(bad, fmt.Sprintf("deny_read mask: %d %q %q", r.code, r.stdout, r.stderr))
	}
	// read_only (a read-only bind mount).
	r = d.egsh(agentUID, nil, "-c", `touch ro/x 2>/dev/null && echo wrote-ro; exit 0`)
	if r.code != 0 || len(r.stdout) != 0 {
		bad = append(bad, fmt.Sprintf("read_only: %d %q %q", r.code, r.stdout, r.stderr))
	}
	// network.mode = "proxy": the run's own namespace, set up by the
	// daemon (nftables, routes), answers names from execgate's DNS.
	r = d.egsh(agentUID, nil, "-c", `getent ahostsv4 pkg.test | head -n 1`)
	if r.code != 0 || !strings.HasPrefix(string(r.stdout), "198.18.0.1 ") {
		bad = append(bad, fmt.Sprintf("proxy network: %d %q %q", r.code, r.stdout, r.stderr))
	}
	// The runtime exec check reads the agent's memory.
	r = d.egsh(agentUID, nil, "-c", `G=git; $G checkout -b x; echo after`)
	if string(r.stdout) != "after\n" || !strings.Contains(string(r.stderr), "denied") {
		bad = append(bad, fmt.Sprintf("exec check: %d %q %q", r.code, r.stdout, r.stderr))
	}
	// A run past its timeout is killed (the agent's processes).
	start := time.Now()
	r = d.egsh(agentUID, nil, "-c", `sleep 6`)
	if r.code != 124 || time.Since(start) > 5*time.Second {
		bad = append(bad, fmt.Sprintf("timeout kill: %d after %s %q", r.code, time.Since(start), r.stderr))
	}
	// The admin socket belongs to the admin group.
	if st, err := os.Stat(d.adminSock()); err != nil || st.Sys().(*syscall.Stat_t).Gid != 65534 || st.Mode().Perm() != 0o660 {
		bad = append(bad, fmt.Sprintf("admin socket owner: %v %v", err, st))
	}
	return bad
}

func mustHex(s string) uint64 {
	v, _ := strconv.ParseUint(s, 16, 64)
	return v
}

// The daemon does everything it does with exactly the unit's
// CapabilityBoundingSet under ProtectSystem=full, and needs every one of
// those capabilities: without any single one, something breaks.
func TestUnitCapabilities(t *testing.T) {
	caps := unitCaps(t)
	run := func(t *testing.T, caps []string, nnp bool) (bad []string, started bool) {
		d := prepareDaemon(t, "file", profile{"bot", hardenedProfile})
		os.WriteFile(filepath.Join(d.dir, "none.toml"), []byte("admin_groups = [\"nogroup\"]\n"), 0o644)
		d.stderr = &bytes.Buffer{}
		argv := hardenedWrap(caps, nnp)(d.daemonArgv("--cgroup-root", uniqueCgroupRoot()))
		d.cmd = exec.Command(argv[0], argv[1:]...)
		d.cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin"}
		d.cmd.Stderr = &lockedWriter{w: d.stderr}
		if err := d.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		d.pid = d.cmd.Process.Pid
		exited := make(chan struct{})
		go func() { d.cmd.Wait(); close(exited) }()
		deadline := time.Now().Add(15 * time.Second)
		for {
			if c, err := net.Dial("unix", d.agentSock()); err == nil {
				c.Close()
				break
			}
			select {
			case <-exited:
				d.cmd = nil
				return []string{"the daemon did not start: " + d.stderr.String()}, false
			case <-time.After(20 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatalf("the daemon neither started nor exited: %s", d.stderr)
			}
		}
		// The wrappers exec'd into the daemon, which has the set asked for.
		if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", d.pid)); !strings.HasSuffix(exe, "/execgated") {
			t.Fatalf("pid %d is %s", d.pid, exe)
		}
		status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.pid))
		if m := regexp.MustCompile(`CapBnd:\s+([0-9a-f]+)`).FindSubmatch(status); m == nil || bits.OnesCount64(mustHex(string(m[1]))) != len(caps) {
			t.Fatalf("the daemon's bounding set: %q, want %d capabilities", m, len(caps))
		}
		bad = hardenedFlow(d)
		d.cmd.Process.Signal(syscall.SIGTERM)
		<-exited
		d.cmd = nil
		return bad, true
	}
	t.Run("unit set", func(t *testing.T) {
		if bad, _ := run(t, caps, false); len(bad) > 0 {
			t.Errorf("with the unit's CapabilityBoundingSet %v:\n%s", caps, strings.Join(bad, "\n"))
		}
	})
	// NoNewPrivileges= is left out of the unit for approval commands'
	// sake, not the sandbox's: the sandbox works under it.
	t.Run("no_new_privs", func(t *testing.T) {
		if bad, _ := run(t, caps, true); len(bad) > 0 {
			t.Errorf("under no_new_privs:\n%s", strings.Join(bad, "\n"))
		}
	})
	for i, c := range caps {
		t.Run("without "+c, func(t *testing.T) {
			less := append(append([]string{}, caps[:i]...), caps[i+1:]...)
			if bad, _ := run(t, less, false); len(bad) == 0 {
				t.Errorf("everything works without CAP_%s: drop it from the unit", strings.ToUpper(c))
			} else {
				t.Logf("without CAP_%s: %s", strings.ToUpper(c), bad[0])
			}
		})
	}
}
