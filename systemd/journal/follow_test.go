package journal_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/execgate/execgate/audit"
	"github.com/execgate/execgate/internal/journaltest"
	"github.com/execgate/execgate/systemd/journal"
)

// A remoteHost is a made-up machine whose records reach a collector's
// directory the way systemd-journal-remote stores them: one journal file
// of its own (DIR/remote-NAME.journal), written by a
// systemd-journal-remote that reads the records in journalctl's export
// format from a pipe. Each record carries the host's own _MACHINE_ID,
// _BOOT_ID and _HOSTNAME, and the timestamps the test gives it, so a
// record can come late: stored after another host's newer records, as
// from a lagging uploader.
type remoteHost struct {
	name, machine, boot, file string

	w    io.WriteCloser
	cmd  *exec.Cmd
	logs journaltest.LockedBuffer
	done chan struct{}
}

// newRemoteHost starts host name writing to dir, with a boot id of its
// own.
func newRemoteHost(t *testing.T, dir, name string) *remoteHost {
	t.Helper()
	return newRemoteHostBoot(t, dir, name, randomID())
}

// newRemoteHostBoot is newRemoteHost with the boot id given: hosts that
// share one are like containers of one kernel (as in the fleet
// integration test), which journalctl orders by their monotonic clock.
func newRemoteHostBoot(t *testing.T, dir, name, boot string) *remoteHost {
	t.Helper()
	bin := ""
	for _, d := range []string{"/lib/systemd", "/usr/lib/systemd"} {
		if _, err := os.Stat(filepath.Join(d, "systemd-journal-remote")); err == nil {
			bin = filepath.Join(d, "systemd-journal-remote")
			break
		}
	}
	if bin == "" {
		t.Fatal("systemd-journal-remote not found: install the Debian package systemd-journal-remote (scripts/deps.sh does)")
	}
	h := &remoteHost{name: name, machine: randomID(), boot: boot, file: filepath.Join(dir, "remote-"+name+".journal"), done: make(chan struct{})}
	h.cmd = exec.Command(bin, "--output="+h.file, "-")
	h.cmd.Stdout, h.cmd.Stderr = &h.logs, &h.logs
	w, err := h.cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	h.w = w
	if err := h.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { h.cmd.Wait(); close(h.done) }()
	t.Cleanup(h.close)
	return h
}

func randomID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// close ends the host's systemd-journal-remote (at the end of its input).
func (h *remoteHost) close() {
	h.w.Close()
	select {
	case <-h.done:
	case <-time.After(10 * time.Second):
		h.cmd.Process.Kill()
		<-h.done
	}
}

// write sends one record logged at at, with fields, and waits until it
// is stored in the host's file.
func (h *remoteHost) write(t *testing.T, at time.Time, msg string, fields ...string) {
	t.Helper()
	if err := h.send(at, msg, fields...); err != nil {
		t.Fatal(err)
	}
	h.wait(t, msg)
}

// send sends one record logged at at, with fields (KEY, value, ...) and
// MESSAGE msg, without waiting.
func (h *remoteHost) send(at time.Time, msg string, fields ...string) error {
	us := strconv.FormatInt(at.UnixMicro(), 10)
	var b strings.Builder
	for _, kv := range [][2]string{
		{"__REALTIME_TIMESTAMP", us}, {"__MONOTONIC_TIMESTAMP", us}, {"_BOOT_ID", h.boot},
		{"_MACHINE_ID", h.machine}, {"_HOSTNAME", h.name}, {"PRIORITY", "6"}, {"MESSAGE", msg},
	} {
		fmt.Fprintf(&b, "%s=%s\n", kv[0], kv[1])
	}
	for i := 0; i+1 < len(fields); i += 2 {
		fmt.Fprintf(&b, "%s=%s\n", fields[i], fields[i+1])
	}
	b.WriteByte('\n')
	if _, err := io.WriteString(h.w, b.String()); err != nil {
		return fmt.Errorf("host %s: systemd-journal-remote: %v\n%s", h.name, err, h.logs.String())
	}
	return nil
}

// wait waits until the record with MESSAGE msg is in the host's file.
func (h *remoteHost) wait(t *testing.T, msg string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		recs, err := journaltest.ReadJournal("--file="+h.file, "MESSAGE="+msg)
		if err == nil && len(recs) > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("host %s: record %q not stored after 30s (%v)\nsystemd-journal-remote's log:\n%s", h.name, msg, err, h.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// execgated is the fields of an execgated record of agent and run id.
func execgated(agent, id string) []string {
	return []string{audit.FieldIdentifier, audit.Identifier, audit.FieldAgent, agent, audit.FieldID, id}
}

// follower is Read with Follow running in the background.
type follower struct {
	cancel context.CancelFunc
	got    chan *audit.Entry
	ended  chan struct{} // closed when Read has ended
	err    error         // then, the first error it yielded
}

func startFollower(t *testing.T, opts journal.ReadOptions) *follower {
	t.Helper()
	opts.Follow = true
	ctx, cancel := context.WithCancel(context.Background())
	f := &follower{cancel: cancel, got: make(chan *audit.Entry, 1<<16), ended: make(chan struct{})}
	go func() {
		defer close(f.ended)
		for e, err := range journal.Read(ctx, opts) {
			if err != nil {
				if f.err == nil {
					f.err = err
				}
				continue
			}
			f.got <- e
		}
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-f.ended:
		case <-time.After(10 * time.Second):
			t.Error("Read did not end after cancel")
		}
	})
	return f
}

// expect takes the next records the follower yields, which must have
// the messages want in that order.
func (f *follower) expect(t *testing.T, want ...string) []*audit.Entry {
	t.Helper()
	var got []string
	var es []*audit.Entry
	timeout := time.After(30 * time.Second)
	for len(got) < len(want) {
		select {
		case e := <-f.got:
			got = append(got, e.Message)
			es = append(es, e)
		case <-f.ended:
			t.Fatalf("follow ended (%v) after %q, want %q", f.err, got, want)
		case <-timeout:
			t.Fatalf("follow yielded %q after 30s, want %q", got, want)
		}
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("follow yielded %q, want %q", got, want)
	}
	return es
}

// quiet checks that the follower yields nothing more for a while.
func (f *follower) quiet(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case e := <-f.got:
		t.Fatalf("follow yielded %q from %s, want nothing more", e.Message, e.Fields["_HOSTNAME"])
	case <-f.ended:
		t.Fatalf("follow ended: %v", f.err)
	case <-time.After(d):
	}
}

// stop cancels the follow, which must end without error, leaving no
// journalctl running.
func (f *follower) stop(t *testing.T) {
	t.Helper()
	f.cancel()
	select {
	case <-f.ended:
		if f.err != nil {
			t.Fatalf("follow ended with %v after cancel, want nil", f.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("follow did not end after cancel")
	}
	if kids := children(t, "journalctl"); len(kids) > 0 {
		t.Fatalf("journalctl still running after the follow ended: %v", kids)
	}
}

// children lists this process's child processes whose name (comm)
// starts with one of names, as "PID NAME".
func children(t *testing.T, names ...string) []string {
	t.Helper()
	procs, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // gone
		}
		// pid (comm) state ppid ...
		open, close := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
		if open < 0 || close < open {
			continue
		}
		comm, rest := string(b[open+1:close]), strings.Fields(string(b[close+1:]))
		if len(rest) < 2 || rest[1] != strconv.Itoa(os.Getpid()) {
			continue
		}
		for _, n := range names {
			if strings.HasPrefix(comm, n) {
				out = append(out, strings.TrimSpace(string(b[:open]))+" "+comm)
			}
		}
	}
	return out
}

// TestFollowMachines follows a collector's directory of three hosts'
// files, and a fourth that comes later: the last records of all of them
// first, in time order; then each host's new records, a lagging host's
// included (stored after another host's newer ones, which journalctl
// --follow over the directory never prints), and a new host's from its
// first record; never a record twice, nor one that does not match.
//
// The hosts have boot ids of their own (as a real fleet: there
// journalctl --follow over the directory shows one host only, the one
// with the newest record, since --follow implies --boot), or all the
// same one (as the fleet integration test's hosts, which share a
// kernel: there it skips the lagging host's records).
func TestFollowMachines(t *testing.T) {
	journaltest.Require(t)
	t.Run("own-boots", func(t *testing.T) { testFollowMachines(t, "") })
	t.Run("one-boot", func(t *testing.T) { testFollowMachines(t, randomID()) })
}

func testFollowMachines(t *testing.T, boot string) {
	dir := t.TempDir()
	tag := newID("machines")
	host := func(name string) *remoteHost {
		if boot == "" {
			return newRemoteHost(t, dir, name)
		}
		return newRemoteHostBoot(t, dir, name, boot)
	}
	a, b, d := host("a"), host("b"), host("d")
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	at := func(s int) time.Time { return base.Add(time.Duration(s) * time.Second) }
	flow := execgated("flow", tag)

	// a's matching records are older than the last two of all: a is
	// not among the records Read starts with, and its last record is
	// one that does not match (another agent).
	a.write(t, at(1), "a1", flow...)
	a.write(t, at(2), "a2", flow...)
	b.write(t, at(3), "b1", flow...)
	b.write(t, at(4), "b2", flow...)
	a.write(t, at(5), "a-other", execgated("other", tag)...)
	a.write(t, at(6), "a-not-execgated", "SYSLOG_IDENTIFIER", "sshd", audit.FieldAgent, "flow", audit.FieldID, tag)
	d.write(t, at(2), "d-other", execgated("other", tag)...) // d has no matching record yet

	f := startFollower(t, journal.ReadOptions{
		ReadOptions: audit.ReadOptions{Filter: audit.Filter{ID: tag, Agent: "flow"}, Lines: 2, Poll: 100 * time.Millisecond},
		Directory:   dir,
	})
	es := f.expect(t, "b1", "b2")
	if es[0].Fields["_MACHINE_ID"] != b.machine || es[0].Fields["__CURSOR"] == "" {
		t.Errorf("first record's fields: %v", es[0].Fields)
	}
	b.write(t, at(10), "b3", flow...)
	f.expect(t, "b3")
	// a's uploader lagged: its record of second 7 arrives after b's of
	// second 10 was printed.
	a.write(t, at(7), "a3-late", flow...)
	f.expect(t, "a3-late")
	d.write(t, at(8), "d1-late", flow...)
	f.expect(t, "d1-late")
	b.write(t, at(11), "b-other", execgated("other", tag)...)
	a.write(t, at(12), "a4", flow...)
	f.expect(t, "a4")

	// A host that starts uploading now, with records older than all
	// the others': followed from its first.
	c := host("c")
	c.write(t, at(0), "c1", flow...)
	c.write(t, at(9), "c2", flow...)
	f.expect(t, "c1", "c2")
	c.write(t, at(20), "c3", flow...)
	f.expect(t, "c3")
	f.quiet(t, 500*time.Millisecond)
	f.stop(t)
}

// TestFollowSince: with --since and no -n, Read starts with every
// record since then of every host, then follows each host; a record
// older than --since never shows, even when it comes late.
func TestFollowSince(t *testing.T) {
	journaltest.Require(t)
	dir := t.TempDir()
	tag := newID("since")
	a, b := newRemoteHost(t, dir, "a"), newRemoteHost(t, dir, "b")
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	at := func(s int) time.Time { return base.Add(time.Duration(s) * time.Second) }
	flow := execgated("flow", tag)
	a.write(t, at(1), "a-before", flow...)
	b.write(t, at(2), "b-before", flow...)
	a.write(t, at(10), "a-since", flow...)
	// Since falls inside second 10: a-since is at its start, so only
	// the Go filter, not journalctl's whole-second --since, drops it.
	since := at(10).Add(time.Millisecond)
	a.write(t, at(11), "a-since2", flow...)

	f := startFollower(t, journal.ReadOptions{
		ReadOptions: audit.ReadOptions{Filter: audit.Filter{ID: tag, Since: since}, Poll: 100 * time.Millisecond},
		Directory:   dir,
	})
	f.expect(t, "a-since2")
	b.write(t, at(3), "b-late-before", flow...) // older than since: not shown
	b.write(t, at(12), "b-since", flow...)
	f.expect(t, "b-since")
	c := newRemoteHost(t, dir, "c")
	c.write(t, at(4), "c-before", flow...)
	c.write(t, at(13), "c-since", flow...)
	f.expect(t, "c-since")
	f.quiet(t, 300*time.Millisecond)
	f.stop(t)
}

// TestFollowHandover starts following while two hosts store records as
// fast as they can: from the records read before following to each
// host's follower no record may be lost or come twice, so each host's
// records come in one unbroken run up to its last.
func TestFollowHandover(t *testing.T) {
	journaltest.Require(t)
	const perHost = 1000
	dir := t.TempDir()
	tag := newID("handover")
	hosts := []*remoteHost{newRemoteHost(t, dir, "a"), newRemoteHost(t, dir, "b")}
	base := time.Now().Add(-time.Hour)
	for _, h := range hosts {
		h.write(t, base, h.name+"-0000", execgated("flow", tag)...)
	}
	var wg sync.WaitGroup
	for hi, h := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 1; i < perHost; i++ {
				if err := h.send(base.Add(time.Duration(2*i+hi)*time.Millisecond), fmt.Sprintf("%s-%04d", h.name, i), execgated("flow", tag)...); err != nil {
					t.Error(err)
					return
				}
				if i%10 == 0 {
					time.Sleep(2 * time.Millisecond)
				}
			}
		}()
	}
	time.Sleep(50 * time.Millisecond)
	f := startFollower(t, journal.ReadOptions{
		ReadOptions: audit.ReadOptions{Filter: audit.Filter{ID: tag}, Lines: 5, Poll: 100 * time.Millisecond},
		Directory:   dir,
	})
	wg.Wait()
	if t.Failed() {
		return
	}
	last := map[string]int{}
	first := map[string]int{}
	timeout := time.After(60 * time.Second)
	for last["a"] != perHost-1 || last["b"] != perHost-1 {
		select {
		case e := <-f.got:
			name, num, _ := strings.Cut(e.Message, "-")
			n, _ := strconv.Atoi(num)
			if l, ok := last[name]; ok && n != l+1 {
				t.Fatalf("host %s: record %d after %d", name, n, l)
			}
			if _, ok := last[name]; !ok {
				first[name] = n
			}
			last[name] = n
		case <-timeout:
			t.Fatalf("after 60s the follow is at %v (from %v), want %d of each host", last, first, perHost-1)
		}
	}
	t.Logf("each host's records from %v on", first)
	f.quiet(t, 300*time.Millisecond)
	f.stop(t)
}

// fakeJournalctl writes a journalctl that runs the real one, except
// that it ends a run whose arguments hold all of fail with status code
// and a message on stderr, after printing whatever the real one prints
// in 300ms, once the file flag exists (or always when flag is "").
func fakeJournalctl(t *testing.T, flag string, code int, fail ...string) string {
	t.Helper()
	real, err := exec.LookPath("journalctl")
	if err != nil {
		t.Fatal(err)
	}
	var cond []string
	for _, f := range fail {
		cond = append(cond, fmt.Sprintf(`case " $* " in *" %s "*) ;; *) exec %s "$@";; esac`, f, real))
	}
	if flag != "" {
		cond = append(cond, fmt.Sprintf(`[ -e %s ] || exec %s "$@"`, flag, real))
	}
	script := "#!/bin/sh\n" + strings.Join(cond, "\n") + "\n" +
		real + ` "$@" & pid=$!` + "\nsleep 0.3\nkill $pid 2>/dev/null\necho 'fake journalctl: failing on purpose' >&2\nexit " + strconv.Itoa(code) + "\n"
	path := filepath.Join(t.TempDir(), "fakejournalctl")
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestFollowErrors: a journalctl that fails (one host's follower, or the
// look for new hosts) ends the follow with its error and stderr, and
// stops every other journalctl. So does a follower that exits 0, as
// journalctl does when it has no inotify instance left ("Insufficient
// watch descriptors available. Reverting to -n.").
func TestFollowErrors(t *testing.T) {
	journaltest.Require(t)
	dir := t.TempDir()
	tag := newID("errors")
	a, b := newRemoteHost(t, dir, "a"), newRemoteHost(t, dir, "b")
	base := time.Now().Add(-time.Hour)
	a.write(t, base, "a1", execgated("flow", tag)...)
	b.write(t, base.Add(time.Second), "b1", execgated("flow", tag)...)
	flag := filepath.Join(t.TempDir(), "fail-now")
	for _, c := range []struct {
		name string
		fail []string
		flag string
		code int
		want string
	}{
		{"follower", []string{"--follow", "_MACHINE_ID=" + b.machine}, "", 3, "exit status 3: fake journalctl: failing on purpose"},
		{"follower-exit-0", []string{"--follow", "_MACHINE_ID=" + a.machine}, "", 0, "exited while following: fake journalctl: failing on purpose"},
		{"watch", []string{"--field=_MACHINE_ID"}, flag, 3, "exit status 3: fake journalctl: failing on purpose"},
	} {
		t.Run(c.name, func(t *testing.T) {
			bin := fakeJournalctl(t, c.flag, c.code, c.fail...)
			opts := journal.ReadOptions{
				ReadOptions: audit.ReadOptions{Filter: audit.Filter{ID: tag}, Follow: true, Lines: 10, Poll: 100 * time.Millisecond},
				Directory:   dir, Journalctl: bin,
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var msgs []string
			var ferr error
			for e, err := range journal.Read(ctx, opts) {
				if err != nil {
					ferr = err
					continue
				}
				msgs = append(msgs, e.Message)
				if c.flag != "" && len(msgs) == 2 {
					os.WriteFile(c.flag, nil, 0o644)
				}
			}
			if ctx.Err() != nil {
				t.Fatalf("the follow did not end on the failing journalctl; read %q", msgs)
			}
			if ferr == nil || !strings.HasSuffix(ferr.Error(), c.want) {
				t.Fatalf("follow ended with %v, want the failing journalctl's error", ferr)
			}
			for _, arg := range c.fail {
				if !strings.Contains(ferr.Error(), " "+arg) {
					t.Errorf("the error does not name the failing journalctl's argument %s: %v", arg, ferr)
				}
			}
			sort.Strings(msgs)
			if got := strings.Join(msgs, ","); got != "a1,b1" {
				t.Errorf("read %q before the error, want a1,b1", got)
			}
			if kids := children(t, "journalctl", "fakejournalctl"); len(kids) > 0 {
				t.Errorf("still running after the follow ended: %v", kids)
			}
		})
	}

	// A journal that cannot be read at all.
	for _, err := range journal.Read(context.Background(), journal.ReadOptions{ReadOptions: audit.ReadOptions{Follow: true}, Directory: "/nonexistent"}) {
		if err == nil || !strings.Contains(err.Error(), "journalctl") || !strings.Contains(err.Error(), "/nonexistent") {
			t.Errorf("follow of a missing directory: %v", err)
		}
	}
	if kids := children(t, "journalctl"); len(kids) > 0 {
		t.Errorf("journalctl still running: %v", kids)
	}
}
