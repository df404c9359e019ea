package journaltest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
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
)

// A Host is a machine of a simulated fleet on this one kernel: a process
// (the anchor) holding a network namespace, a UTS namespace with the
// host's own hostname and a private mount namespace with a tmpfs on /run
// and its own /etc/machine-id and boot id, and optionally a systemd-journald of its
// own in there. Everything the test runs on the host (Command, Start,
// Wrap) joins the anchor's namespaces with nsenter(1), so a daemon there
// writes to that host's journald, and journald stamps _HOSTNAME and
// _MACHINE_ID of that host. The network namespace has only lo until Link
// adds a veth pair to another Host: nothing a host sends can reach any
// other address.
//
// The host's journal files are Dir/journal/MACHINEID (its
// /run/log/journal is a bind of Dir/journal), readable from outside
// with journalctl --directory. Dir is under /var/tmp, which the host
// shares with the test: sockets and files made there are seen by both.
//
// NewHost registers a cleanup that stops what was started on the host
// and then the anchor: the namespaces die with their last process, so a
// test that fails half-way leaves no network device, mount or journald
// behind (the anchor and everything started by Start also die with the
// test process, through PR_SET_PDEATHSIG).
type Host struct {
	Name      string // its hostname (also the journal's _HOSTNAME)
	MachineID string // its /etc/machine-id (the journal's _MACHINE_ID)
	BootID    string // its boot id (the journal's _BOOT_ID), 32 hex digits
	Dir       string // its directory, same path inside and out

	t       testing.TB
	nsenter string
	anchor  *process
	jd      *process

	mu    sync.Mutex
	procs []*HostProcess
}

// HostOptions say what a Host gets besides its namespaces.
type HostOptions struct {
	// Journald starts a systemd-journald of the host's own (volatile
	// storage in Dir/journal, no rate limit), and NewHost returns once
	// it stores records.
	Journald bool
	// Binds are directories under /run that the host sees at the same
	// path although its /run is a fresh tmpfs: the built binaries, say.
	Binds []string
}

// hostScript runs as the anchor: $1 the hostname, $2 the host's dir, $3...
// directories to bind at the same path after /run is covered.
const hostScript = `set -eu
name=$1 dir=$2
shift 2
mount --make-rprivate /
printf '%s' "$name" >/proc/sys/kernel/hostname
i=0
for b in "$@"; do
	mkdir -p "$dir/.stage/$i"
	mount --bind "$b" "$dir/.stage/$i"
	i=$((i+1))
done
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
i=0
for b in "$@"; do
	mkdir -p "$b"
	mount --bind "$dir/.stage/$i" "$b"
	umount "$dir/.stage/$i"
	i=$((i+1))
done
mkdir -p /run/log/journal /run/systemd/journald.conf.d
mount --bind "$dir/journal" /run/log/journal
mount --bind "$dir/machine-id" /etc/machine-id
mount --bind "$dir/boot_id" /proc/sys/kernel/random/boot_id
for d in /var/log/journal /etc/systemd/journald.conf.d; do
	if [ -d "$d" ]; then mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs "$d"; fi
done
cat >/run/systemd/journald.conf.d/zz-execgate-journaltest.conf
echo ready
exec sleep infinity
`

// NewHost makes a host named name (a valid hostname). It fails t with
// the Debian package to install when a tool is missing.
func NewHost(t testing.TB, name string, opts HostOptions) *Host {
	t.Helper()
	if err := supported(); err != nil {
		t.Fatalf("journaltest: %v", err)
	}
	nsenter := needTool(t, "nsenter", "util-linux")
	needTool(t, "mount", "mount")
	if st, err := os.Stat("/etc/machine-id"); err != nil || !st.Mode().IsRegular() {
		t.Fatalf("journaltest: a host binds its own machine id over /etc/machine-id, which must be a file here (systemd-machine-id-setup makes one): %v", err)
	}
	dir, err := os.MkdirTemp("/var/tmp", "execgate-host-"+name+"-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	var id, boot [16]byte
	rand.Read(id[:])
	rand.Read(boot[:])
	h := &Host{Name: name, MachineID: hex.EncodeToString(id[:]), BootID: hex.EncodeToString(boot[:]), Dir: dir, t: t, nsenter: nsenter}
	t.Cleanup(h.cleanup)
	if err := os.Mkdir(filepath.Join(dir, "journal"), 0o2755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "machine-id"), []byte(h.MachineID+"\n"), 0o444); err != nil {
		t.Fatal(err)
	}
	// Its own boot too, as real hosts have: journalctl -f without --merge
	// follows only the newest record's boot, which one shared boot id
	// would hide. The kernel's file reads as a dashed UUID.
	b := h.BootID
	if err := os.WriteFile(filepath.Join(dir, "boot_id"), []byte(b[:8]+"-"+b[8:12]+"-"+b[12:16]+"-"+b[16:20]+"-"+b[20:]+"\n"), 0o444); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command("/bin/sh", append([]string{"-c", hostScript, "sh", name, dir}, opts.Binds...)...)
	cmd.Stdin = strings.NewReader(conf)
	logs := &tailBuffer{max: 16 << 10}
	cmd.Stderr = logs
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	cmd.Stdout = pw
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWUTS | syscall.CLONE_NEWNET,
		Pdeathsig:  syscall.SIGKILL,
	}
	p := &process{cmd: cmd, done: make(chan struct{}), logs: logs}
	err = spawn(cmd)
	pw.Close()
	if err != nil {
		t.Fatalf("journaltest: start host %s: %v", name, err)
	}
	h.anchor = p
	go func() {
		cmd.Wait()
		close(p.done)
	}()
	ready := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(pr).ReadString('\n')
		ready <- line
	}()
	select {
	case line := <-ready:
		if line != "ready\n" {
			<-p.done
			t.Fatalf("journaltest: host %s: setting up its namespaces failed: %v\n%s", name, cmd.ProcessState, logs.String())
		}
	case <-time.After(startTimeout):
		t.Fatalf("journaltest: host %s: namespaces not set up after %v\n%s", name, startTimeout, logs.String())
	}
	needTool(t, "ip", "iproute2")
	if out, err := h.Command("ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("journaltest: host %s: ip link set lo up: %v: %s (is iproute2 installed?)", name, err, out)
	}
	if opts.Journald {
		h.startJournald()
	}
	return h
}

func needTool(t testing.TB, tool, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		t.Fatalf("journaltest: %s not found: install the Debian package %s (scripts/deps.sh does)", tool, pkg)
	}
	return p
}

// PID is the anchor's pid: /proc/PID/ns/* are the host's namespaces.
func (h *Host) PID() int { return h.anchor.cmd.Process.Pid }

// Wrap returns argv run on the host: nsenter joining its mount, UTS and
// network namespaces, which then execs argv (same pid).
func (h *Host) Wrap(argv []string) []string {
	return append([]string{h.nsenter, "--target", strconv.Itoa(h.PID()), "--mount", "--uts", "--net", "--"}, argv...)
}

// Command is exec.Command for argv run on the host. Its working directory
// there is / (joining a mount namespace resets it).
func (h *Host) Command(name string, args ...string) *exec.Cmd {
	argv := h.Wrap(append([]string{name}, args...))
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = cleanEnv()
	return cmd
}

// CommandContext is Command under ctx.
func (h *Host) CommandContext(ctx context.Context, name string, args ...string) *exec.Cmd {
	argv := h.Wrap(append([]string{name}, args...))
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = cleanEnv()
	return cmd
}

// A HostProcess is a background process started on a Host.
type HostProcess struct {
	Name string
	p    *process
}

// Start starts argv on the host in the background with env added to a
// clean environment; its stdout and stderr go to Logs. The host's
// cleanup stops it (SIGTERM, then SIGKILL) if the test has not.
func (h *Host) Start(t testing.TB, env []string, argv ...string) *HostProcess {
	t.Helper()
	return h.StartOutput(t, nil, env, argv...)
}

// StartOutput is Start with the process's stdout going to stdout (when
// not nil) instead of Logs, which then holds its stderr only.
func (h *Host) StartOutput(t testing.TB, stdout io.Writer, env []string, argv ...string) *HostProcess {
	t.Helper()
	cmd := h.Command(argv[0], argv[1:]...)
	cmd.Env = append(cmd.Env, env...)
	hp := &HostProcess{Name: filepath.Base(argv[0]), p: &process{cmd: cmd, done: make(chan struct{}), logs: &tailBuffer{max: 256 << 10}}}
	cmd.Stdout, cmd.Stderr = hp.p.logs, hp.p.logs
	if stdout != nil {
		cmd.Stdout = stdout
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := spawn(cmd); err != nil {
		t.Fatalf("journaltest: host %s: start %s: %v", h.Name, argv[0], err)
	}
	go func() {
		cmd.Wait()
		close(hp.p.done)
	}()
	h.mu.Lock()
	h.procs = append(h.procs, hp)
	h.mu.Unlock()
	return hp
}

// Logs is the tail of the process's stdout and stderr.
func (hp *HostProcess) Logs() string { return hp.p.logs.String() }

// Exited reports whether the process has ended.
func (hp *HostProcess) Exited() bool { return hp.p.exited() }

// PID is the process's pid.
func (hp *HostProcess) PID() int { return hp.p.cmd.Process.Pid }

// Signal sends sig to the process (SIGSTOP and SIGCONT to make it lag,
// say).
func (hp *HostProcess) Signal(sig syscall.Signal) error { return hp.p.cmd.Process.Signal(sig) }

// Stop sends SIGTERM (and SIGCONT, should it be stopped) and waits for
// the process to exit (SIGKILL after 10s); it returns how it ended.
// Stopping an ended process just returns.
func (hp *HostProcess) Stop() *os.ProcessState {
	if !hp.p.exited() {
		hp.p.cmd.Process.Signal(syscall.SIGTERM)
		hp.p.cmd.Process.Signal(syscall.SIGCONT)
		select {
		case <-hp.p.done:
		case <-time.After(stopTimeout):
			hp.p.cmd.Process.Kill()
			<-hp.p.done
		}
	}
	return hp.p.cmd.ProcessState
}

func (h *Host) cleanup() {
	h.mu.Lock()
	procs := h.procs
	h.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].Stop()
	}
	if h.jd != nil {
		(&HostProcess{p: h.jd}).Stop()
	}
	if h.anchor != nil {
		h.anchor.cmd.Process.Kill()
		<-h.anchor.done
	}
	os.RemoveAll(h.Dir)
}

// JournalDir is the directory of the host's journal files, as seen from
// outside (journalctl --directory reads it).
func (h *Host) JournalDir() string { return filepath.Join(h.Dir, "journal", h.MachineID) }

// JournaldLogs is the tail of the host's journald's own log.
func (h *Host) JournaldLogs() string {
	if h.jd == nil {
		return ""
	}
	return h.jd.logs.String()
}

// Socket is the host's journald socket as seen from outside (through
// the anchor's root).
func (h *Host) Socket() string {
	return filepath.Join("/proc", strconv.Itoa(h.PID()), "root", strings.TrimPrefix(Socket, "/"))
}

func (h *Host) startJournald() {
	h.t.Helper()
	bin, err := journaldPath()
	if err != nil {
		h.t.Fatalf("journaltest: %v: install the Debian package systemd", err)
	}
	cmd := h.Command(bin)
	cmd.Env = append(cmd.Env, "SYSTEMD_LOG_TARGET=console", "SYSTEMD_LOG_LEVEL=info", "SYSTEMD_COLORS=0")
	p := &process{cmd: cmd, done: make(chan struct{}), logs: &tailBuffer{max: 64 << 10}}
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := spawn(cmd); err != nil {
		h.t.Fatalf("journaltest: host %s: start %s: %v", h.Name, bin, err)
	}
	go func() {
		cmd.Wait()
		close(p.done)
	}()
	h.jd = p
	var token [8]byte
	rand.Read(token[:])
	probe := hex.EncodeToString(token[:])
	deadline := time.Now().Add(startTimeout)
	sent := false
	for {
		if p.exited() {
			h.t.Fatalf("journaltest: host %s: journald exited: %v\n%s", h.Name, cmd.ProcessState, p.logs.String())
		}
		if !sent {
			sent = h.Send(map[string]string{"MESSAGE": "journaltest probe " + probe, "SYSLOG_IDENTIFIER": probeIdentifier, probeField: probe}) == nil
		}
		if sent {
			if recs, err := h.query([]string{probeField + "=" + probe}); err == nil && len(recs) > 0 {
				if f := recs[0].Fields; f["_HOSTNAME"] != h.Name || f["_MACHINE_ID"] != h.MachineID || f["_BOOT_ID"] != h.BootID {
					h.t.Fatalf("journaltest: host %s: journald stamps _HOSTNAME=%q _MACHINE_ID=%q _BOOT_ID=%q, want %q %q %q", h.Name,
						f["_HOSTNAME"], f["_MACHINE_ID"], f["_BOOT_ID"], h.Name, h.MachineID, h.BootID)
				}
				return
			}
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("journaltest: host %s: no probe record after %v (sent: %v)\njournald's log:\n%s", h.Name, startTimeout, sent, p.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Send writes one record straight to the host's journald over its native
// protocol (one datagram; values may hold newlines). The sender, as
// journald sees it, is the test process.
func (h *Host) Send(fields map[string]string) error {
	var b bytes.Buffer
	for k, v := range fields {
		if strings.ContainsRune(v, '\n') {
			b.WriteString(k)
			b.WriteByte('\n')
			var n [8]byte
			l := uint64(len(v))
			for i := range n {
				n[i] = byte(l >> (8 * i))
			}
			b.Write(n[:])
			b.WriteString(v)
			b.WriteByte('\n')
			continue
		}
		fmt.Fprintf(&b, "%s=%s\n", k, v)
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: h.Socket(), Net: "unixgram"})
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Write(b.Bytes())
	return err
}

// Sync is journalctl --sync on the host: records sent before it can be
// read when it returns.
func (h *Host) Sync() error {
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	out, err := h.CommandContext(ctx, "journalctl", "--sync").CombinedOutput()
	if err != nil {
		return fmt.Errorf("journalctl --sync on %s: %w: %s", h.Name, err, bytes.TrimSpace(out))
	}
	return nil
}

func (h *Host) query(matches []string) ([]*audit.Record, error) {
	if h.jd != nil && !h.jd.exited() {
		if err := h.Sync(); err != nil {
			return nil, err
		}
	}
	out, err := ReadJournal(append([]string{"--directory=" + h.JournalDir()}, matches...)...)
	if err != nil {
		return nil, fmt.Errorf("host %s: %w", h.Name, err)
	}
	return out, nil
}

// Query returns the host's journal records matching the field matches
// (after a Sync), like the package's Query. It fails t on errors.
func (h *Host) Query(t testing.TB, matches ...string) []*audit.Record {
	t.Helper()
	recs, err := h.query(matches)
	if err != nil {
		t.Fatalf("journaltest: %v", err)
	}
	return recs
}

// WaitFor polls Query until at least n records match and returns them;
// it fails t after WaitTimeout.
func (h *Host) WaitFor(t testing.TB, n int, matches ...string) []*audit.Record {
	t.Helper()
	deadline := time.Now().Add(WaitTimeout)
	for {
		recs := h.Query(t, matches...)
		if len(recs) >= n {
			return recs
		}
		if time.Now().After(deadline) {
			t.Fatalf("journaltest: host %s: %d records match %q after %v, want at least %d\njournald's log:\n%s", h.Name, len(recs), matches, WaitTimeout, n, h.JournaldLogs())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ReadJournal runs journalctl -q -o json --all with args (a source such
// as --directory=DIR or --file=PATH, and field matches) in the calling
// process's namespaces and parses the records.
func ReadJournal(args ...string) ([]*audit.Record, error) {
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	out, err := journalctl(ctx, append([]string{"-q", "-o", "json", "--all"}, args...)...)
	if err != nil {
		return nil, err
	}
	var recs []*audit.Record
	dec := audit.NewDecoder(bytes.NewReader(out), "journalctl")
	for {
		e, err := dec.Next()
		if errors.Is(err, io.EOF) {
			return recs, nil
		}
		if err != nil {
			return nil, err
		}
		recs = append(recs, e.Record)
	}
}

// Listening reports whether a TCP socket listens on port in the host's
// network namespace (read from the anchor's /proc/PID/net/tcp{,6}).
func (h *Host) Listening(port int) bool {
	want := fmt.Sprintf(":%04X", port)
	for _, f := range []string{"tcp", "tcp6"} {
		b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(h.PID()), "net", f))
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n")[1:] {
			fs := strings.Fields(l)
			if len(fs) > 3 && strings.HasSuffix(fs[1], want) && fs[3] == "0A" {
				return true
			}
		}
	}
	return false
}

// Link joins hosts a and b with a veth pair, a point-to-point link with
// aAddr on a's end and bAddr on b's (IPv4 addresses in a private range,
// such as 10.77.0.1 and 10.77.0.2; anything else fails t). The pair lives
// in the two hosts' network namespaces only and goes with them.
func Link(t testing.TB, a, b *Host, aAddr, bAddr string) {
	t.Helper()
	needTool(t, "ip", "iproute2")
	for _, s := range []string{aAddr, bAddr} {
		ip := net.ParseIP(s)
		if ip == nil || ip.To4() == nil || !ip.IsPrivate() {
			t.Fatalf("journaltest: Link %s: want an IPv4 address in a private range", s)
		}
	}
	ifName := func(to *Host) string {
		n := "eg-" + to.Name
		if len(n) > 15 {
			n = n[:15]
		}
		return n
	}
	aIf, bIf := ifName(b), ifName(a)
	steps := []struct {
		h    *Host
		args []string
	}{
		{a, []string{"link", "add", "name", aIf, "type", "veth", "peer", "name", bIf, "netns", strconv.Itoa(b.PID())}},
		{a, []string{"addr", "add", aAddr, "peer", bAddr, "dev", aIf}},
		{b, []string{"addr", "add", bAddr, "peer", aAddr, "dev", bIf}},
		{a, []string{"link", "set", aIf, "up"}},
		{b, []string{"link", "set", bIf, "up"}},
	}
	for _, s := range steps {
		cmd := exec.Command(s.h.nsenter, append([]string{"--target", strconv.Itoa(s.h.PID()), "--net", "--", "ip"}, s.args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("journaltest: on %s: ip %s: %v: %s", s.h.Name, strings.Join(s.args, " "), err, out)
		}
	}
}
