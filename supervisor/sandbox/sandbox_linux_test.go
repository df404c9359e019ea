package sandbox

import (
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/execgate/execgate/pathglob"
	"golang.org/x/sys/unix"
)

// agentProcs lists host processes running as the test agent's uid: after a
// run ends there must be none.
func agentProcs() []string {
	var found []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "status"))
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) > 1 && f[0] == "Uid:" && f[1] == strconv.Itoa(agentUID) {
				cmd, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
				found = append(found, e.Name()+": "+strings.ReplaceAll(string(cmd), "\x00", " "))
			}
		}
	}
	return found
}

// nothingLeft checks that a finished run left no process and no cgroup.
func nothingLeft(t *testing.T, res Result) {
	t.Helper()
	cgroupGone(t, res)
	// Processes killed with their pid namespace are reaped by the time Run
	// returns; allow the kernel a moment anyway.
	var left []string
	for i := 0; i < 50; i++ {
		if left = agentProcs(); len(left) == 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("processes left after the run: %v", left)
}

func TestMaskDenyRead(t *testing.T) {
	r := newRunner(t)
	d := workdir(t)
	home := filepath.Join(d, "home")
	outside := workdir(t) // not a walk root: reached only through a symlink

	const secret = "SECRET_TOKEN=hunter2-s3cr3t-value"
	const keyBytes = "-----BEGIN OPENSSH PRIVATE KEY----- k3y-bytes"
	const outsideSecret = "OUTSIDE=0ut5ide-secret"
	writeFile(t, filepath.Join(d, ".env"), secret+"\n", 0o644)
	writeFile(t, filepath.Join(d, "app.txt"), "sibling ok\n", 0o644)
	writeFile(t, filepath.Join(d, "sub", "deeper", ".env.local"), secret+"-local\n", 0o644)
	writeFile(t, filepath.Join(home, ".ssh", "id_ed25519"), keyBytes+"\n", 0o600)
	writeFile(t, filepath.Join(home, "notes.txt"), "home notes ok\n", 0o644)
	writeFile(t, filepath.Join(outside, ".env"), outsideSecret+"\n", 0o644)
	for _, l := range [][2]string{
		{filepath.Join(outside, ".env"), filepath.Join(d, "innocent")},
		{filepath.Join(home, ".ssh", "id_ed25519"), filepath.Join(d, "key")},
	} {
		if err := os.Symlink(l[0], l[1]); err != nil {
			t.Fatal(err)
		}
		os.Lchown(l[1], agentUID, agentGID)
	}
	set, err := pathglob.NewSet([]string{"**/.env", "**/.env.*", "~/.ssh"}, home)
	if err != nil {
		t.Fatal(err)
	}
	spec := newSpec(t, d, `
cat .env; cat sub/deeper/.env.local; cat innocent; cat key; cat home/.ssh/id_ed25519
base64 .env; base64 innocent
ls -A home/.ssh; echo "size $(wc -c < .env)"
echo overwrite > .env || echo WRITE-REFUSED
mv .env stolen || echo MOVE-REFUSED
ln .env hard || echo LINK-REFUSED
cat app.txt home/notes.txt
echo done`)
	spec.DenyRead = set
	spec.WalkRoots = []string{d, home}
	res, out, errs := runIt(t, r, spec)
	all := out + errs
	for _, s := range []string{secret, keyBytes, outsideSecret, "hunter2", "0ut5ide", "k3y-bytes",
		base64.StdEncoding.EncodeToString([]byte(secret + "\n")),
		base64.StdEncoding.EncodeToString([]byte(outsideSecret + "\n")),
		base64.StdEncoding.EncodeToString([]byte(secret))[:16]} {
		if strings.Contains(all, s) {
			t.Errorf("secret %q leaked:\n%s", s, all)
		}
	}
	for _, s := range []string{"sibling ok", "home notes ok", "WRITE-REFUSED", "MOVE-REFUSED", "LINK-REFUSED", "done"} {
		if !strings.Contains(out, s) {
			t.Errorf("missing %q in output:\n%s\nstderr:\n%s", s, out, errs)
		}
	}
	if !strings.Contains(out, "size 0\n") {
		t.Errorf("masked .env should read as 0 bytes:\n%s", out)
	}
	if b, _ := os.ReadFile(filepath.Join(d, ".env")); string(b) != secret+"\n" {
		t.Errorf("host .env changed: %q", b)
	}
	want := []string{
		filepath.Join(d, ".env"), filepath.Join(d, "sub", "deeper", ".env.local"),
		filepath.Join(home, ".ssh"), filepath.Join(outside, ".env"),
	}
	for _, w := range want {
		found := false
		for _, m := range res.Masked {
			found = found || m == w
		}
		if !found {
			t.Errorf("%s not in Masked %v", w, res.Masked)
		}
	}
	if res.MaskCut {
		t.Errorf("MaskCut set on a small tree")
	}
	if res.Exit != 0 {
		t.Errorf("exit %d", res.Exit)
	}
}

func TestMaskWalkBound(t *testing.T) {
	r := newRunner(t, WithWalkLimits(50, 16))
	d := workdir(t)
	for i := 0; i < 200; i++ {
		writeFile(t, filepath.Join(d, "many", fmt.Sprintf("f%03d", i)), "x", 0o644)
	}
	writeFile(t, filepath.Join(d, ".env"), "TOP=t0p-secret\n", 0o644)
	set, _ := pathglob.NewSet([]string{"**/.env"}, d)
	spec := newSpec(t, d, "cat .env; echo ok")
	spec.DenyRead, spec.DenyReadPatterns = set, []string{"**/.env"}
	var out syncBuffer
	spec.Stdout, spec.Stderr = &out, &out
	// No bound fails open: a cut walk refuses the run.
	res, err := r.Run(context.Background(), spec)
	if err == nil || !strings.Contains(err.Error(), `deny_read "**/.env": walk of `+d+` stopped after 50 entries (bound)`) {
		t.Errorf("want a refusal naming the pattern and the bound, got %v", err)
	}
	if !res.MaskCut {
		t.Errorf("MaskCut not set with 200 entries and a bound of 50")
	}
	if strings.Contains(out.String(), "t0p-secret") || strings.Contains(out.String(), "ok") {
		t.Errorf("the run ran: %s", out.String())
	}
	// Breadth first: the shallow .env is found before the bound cuts.
	if len(res.Masked) != 1 || res.Masked[0] != filepath.Join(d, ".env") {
		t.Errorf("Masked %v", res.Masked)
	}
}

func TestReadOnly(t *testing.T) {
	r := newRunner(t)
	d := workdir(t)
	ro := filepath.Join(d, "repo")
	writeFile(t, filepath.Join(ro, ".git", "HEAD"), "ref: refs/heads/main\n", 0o644)
	os.Chown(ro, agentUID, agentGID)
	os.Chown(filepath.Join(ro, ".git"), agentUID, agentGID)
	// A mount below the read-only path must be read-only too (recursive).
	sub := filepath.Join(ro, "mnt")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", sub, "tmpfs", 0, "mode=0777"); err != nil {
		t.Fatalf("mount test tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(sub, unix.MNT_DETACH) })

	spec := newSpec(t, d, `
echo evil > repo/.git/HEAD || echo HEAD-REFUSED
touch repo/new || echo CREATE-REFUSED
echo x > repo/mnt/f || echo SUBMOUNT-REFUSED
echo fine > ok.txt && echo WORKDIR-OK
cat repo/.git/HEAD`)
	spec.ReadOnly = []string{filepath.Join(ro, ".git"), ro}
	_, out, errs := runIt(t, r, spec)
	for _, s := range []string{"HEAD-REFUSED", "CREATE-REFUSED", "SUBMOUNT-REFUSED", "WORKDIR-OK", "ref: refs/heads/main"} {
		if !strings.Contains(out, s) {
			t.Errorf("missing %q:\n%s\n%s", s, out, errs)
		}
	}
	if !strings.Contains(errs, "Read-only file system") {
		t.Errorf("expected EROFS, stderr:\n%s", errs)
	}
	if b, _ := os.ReadFile(filepath.Join(ro, ".git", "HEAD")); string(b) != "ref: refs/heads/main\n" {
		t.Errorf("HEAD changed: %q", b)
	}
	if _, err := os.Stat(filepath.Join(ro, "new")); err == nil {
		t.Error("file created under read-only path")
	}
	if b, _ := os.ReadFile(filepath.Join(d, "ok.txt")); string(b) != "fine\n" {
		t.Errorf("workdir write failed: %q", b)
	}
}

func TestIdentityAndPrivileges(t *testing.T) {
	r := newRunner(t)
	d := workdir(t)
	res, out, errs := runIt(t, r, newSpec(t, d, `
echo "ids $(id -u) $(id -g) [$(id -G)]"
grep -E '^(Uid|Gid|Groups|Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp):' /proc/self/status
echo "pid $$"
ls /proc | grep -c '^[0-9]' | sed 's/^/procs /'
cat /proc/1/environ >/dev/null 2>&1 && echo INIT-ENVIRON-READABLE || echo INIT-ENVIRON-REFUSED
cat /proc/self/environ >/dev/null && echo SELF-ENVIRON-OK
tty >/dev/null 2>&1 && echo HAS-TTY || echo NO-TTY
grep -E ':(memory|pids|freezer):' /proc/self/cgroup
for i in 1 2 3 4 5 6 7 8 9 10; do grep -q '^Uid:.4242' /proc/1/status && break; sleep 0.2; done
grep -E '^(Uid|Gid|Groups|CapEff|CapPrm|NoNewPrivs|Seccomp):' /proc/1/status | sed 's/^/init /'`))
	if res.Exit != 0 {
		t.Fatalf("exit %d: %s %s", res.Exit, out, errs)
	}
	fields := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(l, ":\t"); ok {
			fields[k] = strings.Join(strings.Fields(v), " ")
		}
	}
	checks := map[string]string{
		"Uid": "4242 4242 4242 4242", "Gid": "4242 4242 4242 4242", "Groups": "",
		"CapInh": "0000000000000000", "CapPrm": "0000000000000000", "CapEff": "0000000000000000",
		"CapBnd": "0000000000000000", "CapAmb": "0000000000000000",
		"NoNewPrivs": "1", "Seccomp": "2",
	}
	for k, want := range checks {
		if got, ok := fields[k]; !ok || got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	// The init itself ends up as unprivileged as the shell.
	for _, s := range []string{"init Uid:\t4242\t4242\t4242\t4242", "init Gid:\t4242\t4242\t4242\t4242",
		"init CapEff:\t0000000000000000", "init CapPrm:\t0000000000000000", "init NoNewPrivs:\t1", "init Seccomp:\t2"} {
		if !strings.Contains(out, s) {
			t.Errorf("missing %q in:\n%s", s, out)
		}
	}
	for _, s := range []string{"ids 4242 4242 [4242]", "INIT-ENVIRON-REFUSED", "SELF-ENVIRON-OK", "NO-TTY",
		":memory:/\n", ":pids:/\n", ":freezer:/\n"} {
		if !strings.Contains(out, s) {
			t.Errorf("missing %q in:\n%s", s, out)
		}
	}
	// Only the run's processes are visible (init, shell, ls, grep, ...);
	// pids are small (the init's threads take the first few).
	for _, l := range strings.Split(out, "\n") {
		if n, ok := strings.CutPrefix(l, "pid "); ok {
			if p, _ := strconv.Atoi(n); p < 2 || p > 16 {
				t.Errorf("shell pid %d: not in a new pid namespace", p)
			}
		}
		if n, ok := strings.CutPrefix(l, "procs "); ok {
			if c, _ := strconv.Atoi(n); c < 2 || c > 6 {
				t.Errorf("sees %d processes in /proc; the pid namespace should hide the host's", c)
			}
		}
	}
	if res.Pid <= 1 || res.CPU <= 0 {
		t.Errorf("Pid %d CPU %v: accounting missing", res.Pid, res.CPU)
	}
}

// The host sees the run's init in the run cgroup while it runs.
func TestCgroupPlacement(t *testing.T) {
	r := newRunner(t)
	d := workdir(t)
	spec := newSpec(t, d, `echo ready; read x`)
	pr, pw, _ := os.Pipe()
	defer pr.Close()
	spec.Stdin = pr
	rel := filepath.Join(testRoot, agent, spec.ID)
	ready := make(chan struct{})
	var out syncBuffer
	spec.Stdout = writerFunc(func(p []byte) (int, error) {
		out.Write(p)
		if strings.Contains(out.String(), "ready") {
			select {
			case <-ready:
			default:
				close(ready)
			}
		}
		return len(p), nil
	})
	done := make(chan Result, 1)
	go func() {
		res, err := r.Run(context.Background(), spec)
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		t.Fatal("run did not start")
	}
	for _, h := range []string{"memory", "pids", "cpu", "cpuacct", "freezer"} {
		pids, err := readPids(filepath.Join("/sys/fs/cgroup", h, rel, "cgroup.procs"))
		if err != nil || len(pids) < 2 { // init and shell
			t.Errorf("%s: run cgroup holds %v (%v)", h, pids, err)
		}
	}
	pw.Write([]byte("go\n"))
	pw.Close()
	res := <-done
	if res.Exit != 0 {
		t.Errorf("exit %d", res.Exit)
	}
	nothingLeft(t, res)
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

const probeC = `
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/keyctl.h>
#include <linux/perf_event.h>
#include <linux/seccomp.h>
#include <linux/filter.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void report(const char *name, long r) {
	if (r == -1) printf("%s %s\n", name, strerrorname_np(errno));
	else printf("%s ok\n", name);
	fflush(stdout);
}

/* run f in a child; report its errno exit code or its signal */
static void inchild(const char *name, int (*f)(void)) {
	pid_t p = fork();
	if (p == 0) { int e = f(); _exit(e); }
	int st; waitpid(p, &st, 0);
	if (WIFSIGNALED(st)) printf("%s signal%d\n", name, WTERMSIG(st));
	else if (WEXITSTATUS(st) == 0) printf("%s ok\n", name);
	else printf("%s %s\n", name, strerrorname_np(WEXITSTATUS(st)));
	fflush(stdout);
}

static int traceme(void) { return ptrace(PTRACE_TRACEME, 0, 0, 0) == -1 ? errno : 0; }
static int int80(void) { long r; __asm__ volatile("int $0x80" : "=a"(r) : "a"(20)); return 0; }
static int x32(void) { return syscall(0x40000000 | SYS_getpid) == -1 ? errno : 0; }
static int listener(void) {
	struct sock_filter f[] = { BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW) };
	struct sock_fprog prog = { 1, f };
	prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
	return syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog) == -1 ? errno : 0;
}
static int newuser(void) {
	long p = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
	if (p == 0) _exit(0);
	if (p < 0) return errno;
	waitpid(p, 0, 0);
	return 0;
}

int main(void) {
	report("getpid", syscall(SYS_getpid));
	report("unshare_user", syscall(SYS_unshare, CLONE_NEWUSER));
	report("mount", syscall(SYS_mount, "x", "/mnt", "tmpfs", 0, 0));
	inchild("ptrace_traceme", traceme);
	report("personality_query", syscall(SYS_personality, 0xffffffff));
	report("personality_noaslr", syscall(SYS_personality, 0x0040000));
	report("keyctl", syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0));
	report("bpf", syscall(SYS_bpf, 0, NULL, 0));
	report("clone3", syscall(SYS_clone3, NULL, 0));
	inchild("clone_newuser", newuser);
	report("userfaultfd", syscall(SYS_userfaultfd, 0));
	char params[120] = {0};
	report("io_uring_setup", syscall(SYS_io_uring_setup, 1, params));
	struct perf_event_attr pa = {0};
	pa.type = PERF_TYPE_SOFTWARE; pa.size = sizeof pa; pa.config = PERF_COUNT_SW_TASK_CLOCK;
	pa.exclude_kernel = 1; pa.exclude_hv = 1;
	report("perf_event_open", syscall(SYS_perf_event_open, &pa, 0, -1, -1, 0));
	int ns = open("/proc/self/ns/uts", O_RDONLY);
	report("setns", syscall(SYS_setns, ns, 0));
	char h[128]; int mnt;
	struct { unsigned int bytes; int type; unsigned char f[120]; } fh = { 120 };
	report("name_to_handle_at", syscall(SYS_name_to_handle_at, AT_FDCWD, ".", &fh, &mnt, 0));
	report("tiocsti", ioctl(0, TIOCSTI, "x"));
	inchild("seccomp_listener", listener);
	inchild("int80", int80);
	inchild("x32", x32);
	report("fork", fork() == 0 ? (_exit(0), 0) : (wait(0), 0));
	(void)h;
	return 0;
}
`

// buildProbe compiles the syscall probe into dir, for the agent to run.
func buildProbe(t *testing.T, dir string) string {
	t.Helper()
	if runtime.GOARCH != "amd64" {
		t.Skip("the probe uses x86-64 specifics")
	}
	cc, err := exec.LookPath("gcc")
	if err != nil {
		t.Fatal("gcc not found: make test installs it")
	}
	src := filepath.Join(dir, "probe.c")
	bin := filepath.Join(dir, "probe")
	if err := os.WriteFile(src, []byte(probeC), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(cc, "-O1", "-o", bin, src).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	os.Chmod(bin, 0o755)
	return bin
}

func parseProbe(out string) map[string]string {
	m := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(l, " "); ok {
			m[k] = v
		}
	}
	return m
}

// asAgent runs argv on the host as the agent's uid, outside any sandbox:
// the control half of the syscall tests.
func asAgent(dir string, argv ...string) (string, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = []string{"PATH=/usr/bin:/bin:/usr/sbin:/sbin"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: agentUID, Gid: agentGID}, Setsid: true}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestSyscallsRefused(t *testing.T) {
	r := newRunner(t)
	d := workdir(t)
	probe := buildProbe(t, d)

	control, err := asAgent(d, probe)
	if err != nil {
		t.Fatalf("control probe: %v\n%s", err, control)
	}
	ctl := parseProbe(control)
	t.Logf("outside the sandbox, as uid %d:\n%s", agentUID, control)

	_, out, errs := runIt(t, r, newSpec(t, d, probe))
	got := parseProbe(out)
	t.Logf("inside:\n%s%s", out, errs)
	want := map[string]string{
		"getpid": "ok", "fork": "ok", "personality_query": "ok",
		"unshare_user": "EPERM", "mount": "EPERM", "ptrace_traceme": "EPERM",
		"personality_noaslr": "EPERM", "keyctl": "EPERM", "bpf": "EPERM", "clone3": "ENOSYS",
		"clone_newuser": "EPERM", "userfaultfd": "EPERM", "io_uring_setup": "EPERM",
		"perf_event_open": "EPERM", "setns": "EPERM", "name_to_handle_at": "EPERM",
		"tiocsti": "EPERM", "seccomp_listener": "EPERM",
		"int80": "signal31", // a foreign-architecture syscall kills (SIGSYS)
		"x32":   "signal31",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: got %q in the sandbox, want %q", k, got[k], v)
		}
	}
	// The other half: these work for the same uid without the sandbox, so
	// the refusals above are the sandbox's doing.
	for _, k := range []string{"ptrace_traceme", "personality_noaslr", "clone3", "name_to_handle_at", "seccomp_listener", "int80", "keyctl"} {
		if ctl[k] == want[k] {
			t.Errorf("%s: %q outside the sandbox too; the test proves nothing", k, ctl[k])
		}
	}
}

func TestToolsRefused(t *testing.T) {
	r := newRunner(t)
	d := workdir(t)
	cases := []struct {
		script string
		errSub string
	}{
		{"unshare -r true", "Operation not permitted"},
		{"mount -t tmpfs x /mnt", ""},
		{"strace -f true", "Operation not permitted"},
	}
	for _, c := range cases {
		name := strings.Fields(c.script)[0]
		t.Run(name, func(t *testing.T) {
			if _, err := exec.LookPath(name); err != nil {
				t.Logf("skip %s: not installed", name)
				return
			}
			res, out, errs := runIt(t, r, newSpec(t, d, c.script))
			if res.Exit == 0 {
				t.Errorf("%q succeeded in the sandbox: %s %s", c.script, out, errs)
			}
			if !strings.Contains(errs, c.errSub) {
				t.Errorf("%q: stderr %q, want %q", c.script, errs, c.errSub)
			}
		})
	}
	// Control: the same uid can do these outside the sandbox.
	for _, argv := range [][]string{{"unshare", "-r", "true"}, {"strace", "-o", "/dev/null", "true"}} {
		if _, err := exec.LookPath(argv[0]); err != nil {
			continue
		}
		if out, err := asAgent(d, argv...); err != nil {
			t.Logf("control %v failed outside the sandbox too: %v %s", argv, err, out)
		}
	}
}

func TestForkBomb(t *testing.T) {
	r := newRunner(t)
	d := workdir(t)
	// The bomb is dash, which gives up at once when a fork fails; the run's
	// shell is bash, which retries its own forks (dash exits on the first
	// one that fails, so with dash its survival would be a matter of luck).
	spec := newSpec(t, d, `sh -c 'b() { b | b & }; b'; sleep 3; echo survived`)
	spec.Shell = "/bin/bash"
	spec.Limits = Limits{Pids: 32, Timeout: 30 * time.Second}
	start := time.Now()
	res, out, errOut := runIt(t, r, spec)
	if !res.PidsLimited {
		t.Errorf("pids limit never refused a fork: %+v", res)
	}
	if res.TimedOut || time.Since(start) > 25*time.Second {
		t.Errorf("the bomb was not contained: %+v", res)
	}
	if !strings.Contains(out, "survived") {
		t.Errorf("the shell itself should survive the bomb: %q %+v %q", out, res, errOut[max(0, len(errOut)-600):])
	}
	nothingLeft(t, res)
}

// A small pids limit binds the run, not the init.
func TestSmallPidsLimit(t *testing.T) {
	r := newRunner(t)
	d := workdir(t)
	spec := newSpec(t, d, `for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16; do sleep 0.5 & done; wait; echo done`)
	spec.Limits.Pids = 2
	res, out, errs := runIt(t, r, spec)
	// dash gives up on the first fork it cannot make.
	if !res.PidsLimited || out == "done\n" || !strings.Contains(errs, "fork") {
		t.Errorf("PidsLimited %v out %q err %q", res.PidsLimited, out, errs)
	}
	nothingLeft(t, res)
	spec = newSpec(t, d, `echo ok`)
	spec.Limits.Pids = 1
	if res, out, _ := runIt(t, r, spec); out != "ok\n" || res.PidsLimited {
		t.Errorf("pids 1: out %q %+v", out, res)
	}
}

func TestMemoryLimit(t *testing.T) {
	r := newRunner(t)
	d := workdir(t)
	spec := newSpec(t, d, `tail /dev/zero`)
	spec.Limits = Limits{Memory: 64 << 20, Timeout: 60 * time.Second}
	res, _, errs := runIt(t, r, spec)
	if !res.OOMKilled {
		t.Errorf("OOMKilled not set: %+v %s", res, errs)
	}
	if res.Signal != 9 && res.Exit != 137 {
		t.Errorf("exit %d signal %d, want SIGKILL", res.Exit, res.Signal)
	}
	if res.MemPeak < 32<<20 || res.MemPeak > 80<<20 {
		t.Errorf("MemPeak %d, want about the 64MiB limit", res.MemPeak)
	}
	nothingLeft(t, res)
}

func TestCPULimit(t *testing.T) {
	r := newRunner(t)
	d := workdir(t)
	spec := newSpec(t, d, `i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done`)
	spec.Limits = Limits{CPU: 0.2, Timeout: 60 * time.Second}
	res, _, _ := runIt(t, r, spec)
	// With a fifth of a core, wall time is at least about 5x CPU time.
	if res.CPU <= 0 || res.Duration < 3*res.CPU {
		t.Errorf("cpu %v over %v: not throttled to 0.2 cores", res.CPU, res.Duration)
	}
}

func TestTimeout(t *testing.T) {
	r := newRunner(t)
	d := workdir(t)
	spec := newSpec(t, d, `sleep 1006 & sleep 100`)
	spec.Limits = Limits{Timeout: time.Second}
	start := time.Now()
	res, _, _ := runIt(t, r, spec)
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("took %v with a 1s timeout", el)
	}
	if !res.TimedOut || res.Killed {
		t.Errorf("TimedOut %v Killed %v", res.TimedOut, res.Killed)
	}
	if res.Signal != 9 || res.Exit != 137 {
		t.Errorf("exit %d signal %d", res.Exit, res.Signal)
	}
	if p := procsWithArg("1006"); len(p) > 0 {
		t.Errorf("background sleep survived: %v", p)
	}
	nothingLeft(t, res)
}

func TestManyRunsLeaveNothing(t *testing.T) {
	r := newRunner(t)
	d := workdir(t)
	runIt(t, r, newSpec(t, d, "true")) // warm up: netns, runtime fds
	fds, gs := openFDs(t), runtime.NumGoroutine()
	for i := 0; i < 200; i++ {
		res, out, _ := runIt(t, r, newSpec(t, d, "echo $0"))
		if res.Exit != 0 || out != "/bin/sh\n" {
			t.Fatalf("run %d: exit %d out %q", i, res.Exit, out)
		}
	}
	if n := openFDs(t); n != fds {
		t.Errorf("open fds %d -> %d after 200 runs", fds, n)
	}
	time.Sleep(50 * time.Millisecond)
	if n := runtime.NumGoroutine(); n > gs+2 {
		t.Errorf("goroutines %d -> %d after 200 runs", gs, n)
	}
	left, err := r.Leftovers()
	if err != nil || len(left) > 0 {
		t.Errorf("leftovers %v %v", left, err)
	}
	for _, h := range []string{"memory", "pids", "cpu", "cpuacct", "freezer"} {
		ents, _ := os.ReadDir(filepath.Join("/sys/fs/cgroup", h, testRoot, agent))
		for _, e := range ents {
			if e.IsDir() {
				t.Errorf("%s: run cgroup %s left", h, e.Name())
			}
		}
	}
	if p := agentProcs(); len(p) > 0 {
		t.Errorf("processes left: %v", p)
	}
}

func TestNetwork(t *testing.T) {
	r := newRunner(t)
	d := workdir(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan struct{}, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
			accepted <- struct{}{}
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	script := fmt.Sprintf(`echo hi > /dev/tcp/127.0.0.1/%d && echo CONNECTED; ip -o link 2>/dev/null | cut -d: -f2,3 | sed 's/^/link/'; cat /proc/net/dev | tail -n +3 | cut -d: -f1`, port)

	spec := newSpec(t, d, script)
	spec.Shell = "/bin/bash"
	res, out, errs := runIt(t, r, spec)
	if strings.Contains(out, "CONNECTED") {
		t.Errorf("connected to the host with Network=false")
	}
	if ifs := strings.Fields(strings.Join(filterLines(out, func(l string) bool { return !strings.HasPrefix(l, "link") && !strings.Contains(l, "CONNECTED") }), " ")); len(ifs) != 1 || ifs[0] != "lo" {
		t.Errorf("interfaces %v, want only lo; out:\n%s", ifs, out)
	}
	if strings.Contains(out, "lo: <") && !strings.Contains(out, "state DOWN") {
		t.Errorf("loopback is up: %s", out)
	}
	if !strings.Contains(errs, "unreachable") && !strings.Contains(errs, "refused") {
		t.Errorf("stderr %q", errs)
	}
	_ = res
	select {
	case <-accepted:
		t.Error("the host listener accepted a connection from a Network=false run")
	default:
	}

	spec = newSpec(t, d, script)
	spec.Shell = "/bin/bash"
	spec.Network = true
	_, out, errs = runIt(t, r, spec)
	if !strings.Contains(out, "CONNECTED") {
		t.Errorf("Network=true could not connect: %s %s", out, errs)
	}
	select {
	case <-accepted:
	case <-time.After(10 * time.Second):
		t.Error("listener saw no connection with Network=true")
	}
}

func filterLines(s string, keep func(string) bool) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" && keep(l) {
			out = append(out, l)
		}
	}
	return out
}

// Abstract unix sockets are per network namespace, so with Network=true a
// run could reach the host's. The landlock scope stops that.
func TestAbstractSocketScoped(t *testing.T) {
	abi, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, 0, 0, unix.LANDLOCK_CREATE_RULESET_VERSION)
	if errno != 0 || abi < 6 {
		t.Skip("landlock scopes need ABI 6 (Linux 6.12)")
	}
	py, err := exec.LookPath("/usr/bin/python3")
	if err != nil {
		t.Skip("python3 not found")
	}
	r := newRunner(t)
	d := workdir(t)
	name := fmt.Sprintf("execgate-test-%d", os.Getpid())
	ln, err := net.Listen("unix", "@"+name)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	script := fmt.Sprintf(`%s -c '
import socket
s = socket.socket(socket.AF_UNIX)
try:
    s.connect("\0%s"); print("CONNECTED")
except OSError as e:
    print("REFUSED", e.errno)
'`, py, name)
	spec := newSpec(t, d, script)
	spec.Network = true
	_, out, errs := runIt(t, r, spec)
	if !strings.Contains(out, fmt.Sprintf("REFUSED %d", unix.EPERM)) {
		t.Errorf("abstract socket of the host: %s %s", out, errs)
	}
	// Control: the same uid outside the sandbox connects.
	if out, _ := asAgent(d, "/bin/sh", "-c", script); !strings.Contains(out, "CONNECTED") {
		t.Errorf("control could not connect: %s", out)
	}
}

func TestEnvironment(t *testing.T) {
	r := newRunner(t)
	d := workdir(t)
	t.Setenv("SECRET_TOKEN", "tok-s3cret")
	t.Setenv("LD_PRELOAD", "/nonexistent/execgate-test.so")
	t.Setenv("NODE_OPTIONS", "--require /evil.js")
	t.Setenv("GREETING", "hello")
	spec := newSpec(t, d, "env")
	spec.Env = FilterEnv([]string{"PATH", "GREETING", "LD_PRELOAD", "LD_*", "NODE_OPTIONS"}, os.Environ(), d, "agent", d)
	_, out, _ := runIt(t, r, spec)
	for _, bad := range []string{"SECRET_TOKEN", "tok-s3cret", "LD_PRELOAD", "NODE_OPTIONS", "_EXECGATE"} {
		if strings.Contains(out, bad) {
			t.Errorf("%s reached the run:\n%s", bad, out)
		}
	}
	for _, good := range []string{"GREETING=hello", "HOME=" + d, "USER=agent", "LOGNAME=agent", "PWD=" + d, "PATH="} {
		if !strings.Contains(out, good) {
			t.Errorf("%s missing:\n%s", good, out)
		}
	}
	// Run scrubs loader variables even from a hand-made environment.
	spec = newSpec(t, d, "env")
	spec.Env = []string{"PATH=/usr/bin:/bin", "LD_PRELOAD=/x.so", "BASH_FUNC_ls%%=() { echo pwned; }", "OK=1"}
	_, out, _ = runIt(t, r, spec)
	if strings.Contains(out, "LD_PRELOAD") || strings.Contains(out, "BASH_FUNC") || !strings.Contains(out, "OK=1") {
		t.Errorf("Spec.Env not scrubbed:\n%s", out)
	}
}

func TestOutput(t *testing.T) {
	r := newRunner(t)
	d := workdir(t)

	spec := newSpec(t, d, `head -c 100000 /dev/zero | tr '\0' a; printf err >&2`)
	spec.Limits.Output = 1000
	res, out, errs := runIt(t, r, spec)
	if len(out) != 1000 || strings.Trim(out, "a") != "" {
		t.Errorf("stdout %d bytes, want the first 1000", len(out))
	}
	if res.StdoutBytes != 100000 || !res.Truncated {
		t.Errorf("StdoutBytes %d Truncated %v", res.StdoutBytes, res.Truncated)
	}
	if errs != "err" || res.StderrBytes != 3 {
		t.Errorf("stderr %q (%d)", errs, res.StderrBytes)
	}

	// Binary output passes through byte for byte.
	var bin []byte
	for i := 0; i < 4096; i++ {
		bin = append(bin, byte(i), byte(i*7), 0)
	}
	writeFile(t, filepath.Join(d, "blob"), string(bin), 0o644)
	spec = newSpec(t, d, `cat blob`)
	res, out, _ = runIt(t, r, spec)
	if out != string(bin) || res.Truncated || res.StdoutBytes != int64(len(bin)) {
		t.Errorf("binary output mangled: %d bytes, truncated %v", len(out), res.Truncated)
	}

	// Stdin is copied in; without it the run reads EOF.
	spec = newSpec(t, d, `cat; echo end`)
	spec.Stdin = strings.NewReader("from stdin\n")
	_, out, _ = runIt(t, r, spec)
	if out != "from stdin\nend\n" {
		t.Errorf("stdin: %q", out)
	}
	_, out, _ = runIt(t, r, newSpec(t, d, `cat; echo end`))
	if out != "end\n" {
		t.Errorf("no stdin: %q", out)
	}

	// Output streams while the run goes on.
	spec = newSpec(t, d, `echo first; sleep 2; echo second`)
	first := make(chan bool, 1)
	var finished atomic.Bool
	spec.Stdout = writerFunc(func(p []byte) (int, error) {
		select {
		case first <- finished.Load():
		default:
		}
		return len(p), nil
	})
	go func() {
		r.Run(context.Background(), spec)
		finished.Store(true)
	}()
	select {
	case done := <-first:
		if done {
			t.Error("first output arrived only after the run ended")
		}
	case <-time.After(30 * time.Second):
		t.Error("no output")
	}
	for !finished.Load() {
		time.Sleep(10 * time.Millisecond)
	}
}
