package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/execgate/execgate/audit"
	"github.com/execgate/execgate/internal/journaltest"
)

// The fleet: two sender hosts and a collector, each a set of namespaces
// of its own (internal/journaltest.Host) on a private point-to-point
// network. Nothing is sent to any other address: the hosts' network
// namespaces hold only lo and these links.
const (
	fleetCollectorAddr = "10.77.0.1"
	fleetPort          = 19532 // systemd-journal-remote's own
)

const fleetFlowProfile = `uid = 65534
security = "full"
workdirs = ["WORK"]

[[rule]]
match = "git {checkout,switch,commit,push,reset,add} **"
action = "deny"
reason = "FibreFlow changes need a direct human approval; submit a PR instead"

[limits]
timeout = "20s"
`

const fleetBuilderProfile = `uid = 4321
security = "full"
workdirs = ["WORK"]

[limits]
timeout = "20s"
`

// fleetSender is one host of the fleet that runs execgated and uploads
// its journal.
type fleetSender struct {
	h      *journaltest.Host
	d      *daemon
	addr   string // its end of the link to the collector
	state  string // systemd-journal-upload --save-state file
	upload *journaltest.HostProcess
}

// journalRecord is one record as `execgate journal -o json` printed it:
// the raw JSON fields (to compare byte for byte) and the parsed record.
type journalRecord struct {
	raw map[string]json.RawMessage
	*audit.Record
}

func (r journalRecord) host() string { return r.Fields["_HOSTNAME"] }

// TestFleetJournal collects the execgate journals of two hosts into one
// with systemd's own systemd-journal-upload and systemd-journal-remote,
// and reads the collection with `execgate journal --directory`.
//
// Hosts fleet-a and fleet-b each run execgated writing to a journald of
// their own (own hostname, own machine id) and systemd-journal-upload
// --save-state reading that journald's directory; fleet-r runs
// systemd-journal-remote --listen-http --split-mode=host. It checks:
//   - before the uploads start the collector holds nothing;
//   - after, every record execgated wrote on each sender is on the
//     collector with every field the same (EXECGATE_*, MESSAGE, PRIORITY,
//     _HOSTNAME, _MACHINE_ID, _PID, timestamps; only __CURSOR differs),
//     in the same order, including a multi-line UTF-8 script and a
//     100 KiB one, in one file per sender address holding only that
//     sender's records;
//   - flow's denied `git checkout` arrives with EXECGATE_DECISION=deny
//     from fleet-a, and --decision deny shows nothing of fleet-b;
//   - an uploader restarted with its state file goes on where it was
//     and resends no execgate record (systemd 252 resends the one entry
//     at the saved cursor: a marker that is not execgated's);
//   - `execgate journal --directory DIR -f --agent flow` on the
//     collector prints records that arrive after it started, from both
//     hosts, and nothing of the other agent;
//   - lockdown on one host locks that host's gate only, and its admin
//     record names that host;
//   - a lagging uploader's records all reach the collector, and the
//     running -f prints them although fleet-b's later records were
//     printed before they arrived;
//   - the -f printed the collector's last 10 records when it started
//     and then every record that reached the collector, each once.
func TestFleetJournal(t *testing.T) {
	journaltest.Require(t)
	build(t)
	remoteBin := fleetTool(t, "systemd-journal-remote")
	uploadBin := fleetTool(t, "systemd-journal-upload")
	begin := time.Now()

	binds := journaltest.HostOptions{Binds: []string{binDir}}
	collector := journaltest.NewHost(t, "fleet-r", binds)
	binds.Journald = true
	senders := []*fleetSender{
		{h: journaltest.NewHost(t, "fleet-a", binds), addr: "10.77.0.2"},
		{h: journaltest.NewHost(t, "fleet-b", binds), addr: "10.77.0.3"},
	}
	a, b := senders[0], senders[1]
	if a.h.MachineID == b.h.MachineID || a.h.BootID == b.h.BootID {
		t.Fatal("the senders share a machine id or a boot")
	}
	for _, s := range senders {
		journaltest.Link(t, collector, s.h, fleetCollectorAddr, s.addr)
		s.state = filepath.Join(s.h.Dir, "upload.state")
	}
	a.d = startFleetDaemon(t, a.h, profile{"flow", fleetFlowProfile})
	b.d = startFleetDaemon(t, b.h, profile{"flow", fleetFlowProfile}, profile{"builder", fleetBuilderProfile})

	// The collector listens on its private address only.
	remoteDir := filepath.Join(collector.Dir, "remote")
	if err := os.Mkdir(remoteDir, 0o755); err != nil {
		t.Fatal(err)
	}
	remote := collector.Start(t, fleetLogEnv, remoteBin,
		fmt.Sprintf("--listen-http=%s:%d", fleetCollectorAddr, fleetPort), "--output="+remoteDir+"/", "--split-mode=host")
	fleetWait(t, 10*time.Second, "systemd-journal-remote to listen", func() string {
		if remote.Exited() {
			t.Fatalf("systemd-journal-remote exited:\n%s", remote.Logs())
		}
		if collector.Listening(fleetPort) {
			return ""
		}
		return remote.Logs()
	})

	// Work on both senders while nothing uploads.
	token := fleetToken()
	multiline := "echo 'zażółć gęślą jaźń " + token + "'\nprintf '%s\\t%s\\n' two columns"
	if r := a.d.egsh(agentUID, nil, "-c", multiline); r.code != 0 || !strings.Contains(string(r.stdout), "zażółć") {
		t.Fatalf("multi-line script on fleet-a: exit %d: %s %s", r.code, r.stdout, r.stderr)
	}
	denied := a.d.egsh(agentUID, nil, "-c", "git checkout flow/a11y-badge-recordings")
	if denied.code != 126 || !strings.Contains(string(denied.stderr), "execgate: denied: git checkout flow/a11y-badge-recordings") {
		t.Fatalf("git checkout on fleet-a: exit %d, stderr %q; want 126 and a denial", denied.code, denied.stderr)
	}
	// A 100 KiB script: far beyond journalctl's 4096-byte cut without
	// --all and the uploader's 8 KiB line chunks. (The sandbox runs a
	// script as one bash -c argument, so above 128 KiB, the kernel's
	// MAX_ARG_STRLEN, a run fails with E2BIG although policy takes 1 MiB.)
	big := "echo big-" + token + " # " + strings.Repeat("0123456789abcdef", 100<<10/16)
	if r := a.d.egsh(agentUID, nil, "-c", big); r.code != 0 || string(r.stdout) != "big-"+token+"\n" {
		t.Fatalf("big script on fleet-a: exit %d: %.300s", r.code, r.stderr)
	}
	if r := b.d.egsh(agentUID, nil, "-c", "echo flow-on-b-"+token); r.code != 0 {
		t.Fatalf("flow on fleet-b: exit %d: %s", r.code, r.stderr)
	}
	if r := b.d.egsh(otherUID, nil, "-c", "echo builder-on-b-"+token); r.code != 0 {
		t.Fatalf("builder on fleet-b: exit %d: %s", r.code, r.stderr)
	}

	// Each sender's own journal has its records, stamped with its own
	// hostname and machine id.
	aReq := a.h.WaitFor(t, 1, audit.FieldEvent+"=request", audit.FieldScript+"="+multiline)
	if aReq[0].Fields["_HOSTNAME"] != "fleet-a" || aReq[0].Fields["_MACHINE_ID"] != a.h.MachineID || aReq[0].Fields["_PID"] != strconv.Itoa(a.d.pid) {
		t.Fatalf("fleet-a's own journal: %v", aReq[0].Fields)
	}
	b.h.WaitFor(t, 1, audit.FieldEvent+"=request", audit.FieldAgent+"=builder")
	if n := len(a.h.Query(t, audit.FieldAgent+"=builder")); n != 0 {
		t.Fatalf("fleet-a's journal has %d records of fleet-b's builder", n)
	}
	// ... and the collector nothing yet.
	if files := fleetJournalFiles(t, remoteDir); len(files) != 0 {
		t.Fatalf("the collector has journal files before any upload: %v", files)
	}
	if recs := fleetRead(t, collector, "--directory", remoteDir, "--agent", "flow"); len(recs) != 0 {
		t.Fatalf("the collector shows %d records before any upload", len(recs))
	}

	for _, s := range senders {
		s.upload = startFleetUpload(t, s, uploadBin)
	}
	fleetConverge(t, collector, remoteDir, senders, remote)

	// The collector: one file per sender address, holding that sender's
	// records only.
	wantFiles := []string{"remote-" + a.addr + ".journal", "remote-" + b.addr + ".journal"}
	if files := fleetJournalFiles(t, remoteDir); strings.Join(files, " ") != strings.Join(wantFiles, " ") {
		t.Errorf("collector's files %v, want %v (--split-mode=host names them by the sender's address)", files, wantFiles)
	}
	for _, s := range senders {
		recs, err := journaltest.ReadJournal("--file=" + filepath.Join(remoteDir, "remote-"+s.addr+".journal"))
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			t.Errorf("remote-%s.journal is empty", s.addr)
		}
		for _, r := range recs {
			if r.Fields["_HOSTNAME"] != s.h.Name || r.Fields["_MACHINE_ID"] != s.h.MachineID || r.Fields["_BOOT_ID"] != s.h.BootID {
				t.Errorf("remote-%s.journal holds a record of _HOSTNAME=%q _MACHINE_ID=%q _BOOT_ID=%q, want %s's: %q", s.addr,
					r.Fields["_HOSTNAME"], r.Fields["_MACHINE_ID"], r.Fields["_BOOT_ID"], s.h.Name, r.Message)
			}
		}
	}

	all := fleetRead(t, collector, "--directory", remoteDir, "--agent", "flow")
	byHost := map[string][]journalRecord{}
	for _, r := range all {
		byHost[r.host()] = append(byHost[r.host()], r)
		if r.Fields[audit.FieldAgent] != "flow" {
			t.Errorf("--agent flow printed an agent %q record from %s", r.Fields[audit.FieldAgent], r.host())
		}
		if want := map[string]string{"fleet-a": a.h.MachineID, "fleet-b": b.h.MachineID}[r.host()]; want == "" || r.Fields["_MACHINE_ID"] != want {
			t.Errorf("collector record with _HOSTNAME=%q _MACHINE_ID=%q: not one of the senders' pairs: %q", r.host(), r.Fields["_MACHINE_ID"], r.Message)
		}
	}
	if len(byHost["fleet-a"]) == 0 || len(byHost["fleet-b"]) == 0 || len(byHost) != 2 {
		t.Fatalf("the collector's flow records by host: %v", fleetCounts(byHost))
	}
	// The scripts, byte for byte.
	for _, script := range []string{multiline, big} {
		got := fleetFind(all, audit.FieldEvent, "request", audit.FieldScript, script)
		if len(got) != 1 || got[0].host() != "fleet-a" {
			t.Errorf("collector: %d request records with the %d-byte script, want 1 from fleet-a", len(got), len(script))
		}
	}
	if got := fleetFind(all, audit.FieldScript, "echo flow-on-b-"+token); len(got) != 1 || got[0].host() != "fleet-b" || got[0].Fields["_MACHINE_ID"] != b.h.MachineID {
		t.Errorf("collector: fleet-b's flow request: %d records %v", len(got), got)
	}

	// The incident's command, denied on fleet-a, arrives as a denial.
	denials := fleetRead(t, collector, "--directory", remoteDir, "--agent", "flow", "--decision", "deny")
	var checkout *journalRecord
	for i, r := range denials {
		if r.host() != "fleet-a" || r.Fields["_MACHINE_ID"] != a.h.MachineID || r.Fields[audit.FieldDecision] != "deny" {
			t.Errorf("--decision deny on the collector printed a record of %s: %v", r.host(), r.Fields)
		}
		if r.Fields[audit.FieldEvent] == "decision" && r.Fields[audit.FieldArgv] == `["git","checkout","flow/a11y-badge-recordings"]` {
			checkout = &denials[i]
		}
	}
	if checkout == nil {
		t.Fatalf("no deny decision for git checkout among the collector's %d denials", len(denials))
	}
	if checkout.Priority != audit.PriWarning || checkout.Fields[audit.FieldRule] != "flow.toml:6" ||
		checkout.Fields[audit.FieldReason] != "FibreFlow changes need a direct human approval; submit a PR instead" ||
		checkout.Fields[audit.FieldIdentifier] != "execgated" ||
		checkout.Message != "flow DENY git checkout flow/a11y-badge-recordings (flow.toml:6: FibreFlow changes need a direct human approval; submit a PR instead)" {
		t.Errorf("the denial on the collector: %q priority %d %v", checkout.Message, checkout.Priority, checkout.Fields)
	}
	if ends := fleetFind(all, audit.FieldID, checkout.Fields[audit.FieldID], audit.FieldEvent, "end"); len(ends) != 1 || ends[0].Fields[audit.FieldExit] != "126" {
		t.Errorf("the denied run's end record on the collector: %v", ends)
	}

	// The uploader restarted with its state file goes on after the last
	// entry it sent. A marker entry (not execgated's) is the last one
	// uploaded, so what systemd-journal-upload resends of it is seen.
	marker := fleetToken()
	if err := a.h.Send(map[string]string{"MESSAGE": "fleet test marker " + marker, "SYSLOG_IDENTIFIER": "execgate-fleet-test", "FLEET_MARKER": marker}); err != nil {
		t.Fatal(err)
	}
	markerCursor := a.h.WaitFor(t, 1, "FLEET_MARKER="+marker)[0].Fields["__CURSOR"]
	fleetWait(t, 20*time.Second, "fleet-a's uploader to save the marker's cursor", func() string {
		st, _ := os.ReadFile(a.state)
		if strings.Contains(string(st), "LAST_CURSOR="+markerCursor+"\n") {
			return ""
		}
		return fmt.Sprintf("state %q, want the cursor %s\nupload's log:\n%s", st, markerCursor, a.upload.Logs())
	})
	a.upload.Stop()
	a.upload = startFleetUpload(t, a, uploadBin)
	if r := a.d.egsh(agentUID, nil, "-c", "echo after-restart-"+token); r.code != 0 {
		t.Fatalf("fleet-a after the uploader's restart: exit %d %s", r.code, r.stderr)
	}
	fleetConverge(t, collector, remoteDir, senders, remote)
	markers, err := journaltest.ReadJournal("--directory="+remoteDir, "FLEET_MARKER="+marker)
	if err != nil {
		t.Fatal(err)
	}
	switch len(markers) {
	case 1:
	case 2:
		t.Logf("systemd-journal-upload resent the entry at its saved cursor after the restart (systemd 252 does): the marker is on the collector twice")
	default:
		t.Errorf("the marker is on the collector %d times, want once (or twice: the entry at the saved cursor resent)", len(markers))
	}

	// Follow on the collector, then lock fleet-a down and work on fleet-b.
	// Nothing is uploading now: before is what the collector holds when
	// the follower starts.
	before := fleetRead(t, collector, "--directory", remoteDir, "--agent", "flow")
	f := startFleetFollow(t, collector, remoteDir)
	fleetWait(t, 20*time.Second, "the follower's first records", func() string {
		if len(f.records()) > 0 {
			return ""
		}
		return f.proc.Logs()
	})
	seen := len(f.records())
	lock := a.h.Command(filepath.Join(binDir, "execgate"), "lockdown", "on")
	lock.Env = append(lock.Env, "EXECGATE_ADMIN_SOCKET="+a.d.adminSock())
	if out, err := lock.CombinedOutput(); err != nil {
		t.Fatalf("execgate lockdown on, on fleet-a: %v: %s", err, out)
	}
	if r := a.d.egsh(agentUID, nil, "-c", "echo locked-"+token); r.code != 126 {
		t.Fatalf("fleet-a in lockdown ran a command: exit %d %s", r.code, r.stdout)
	}
	lockedID := fleetWaitEnd(t, collector, remoteDir, "fleet-a", "echo locked-"+token)
	followB := "echo follow-on-b-" + token
	if r := b.d.egsh(agentUID, nil, "-c", followB); r.code != 0 || string(r.stdout) != "follow-on-b-"+token+"\n" {
		t.Fatalf("fleet-b (not locked down) refused a command: exit %d %s", r.code, r.stderr)
	}
	if r := b.d.egsh(otherUID, nil, "-c", "echo builder-follow-"+token); r.code != 0 {
		t.Fatalf("builder on fleet-b: exit %d %s", r.code, r.stderr)
	}
	followBID := fleetWaitEnd(t, collector, remoteDir, "fleet-b", followB)
	var lockedDeny, bEnd *journalRecord
	fleetWait(t, 20*time.Second, "the follower to print fleet-a's lockdown denial and fleet-b's new run", func() string {
		recs := f.records()[seen:]
		if got := fleetFind(recs, "_HOSTNAME", "fleet-a", audit.FieldID, lockedID, audit.FieldEvent, "decision", audit.FieldDecision, "deny"); len(got) > 0 {
			lockedDeny = &got[0]
		}
		if got := fleetFind(recs, "_HOSTNAME", "fleet-b", audit.FieldID, followBID, audit.FieldEvent, "end"); len(got) > 0 {
			bEnd = &got[0]
		}
		if lockedDeny != nil && bEnd != nil {
			return ""
		}
		return fleetSummary(recs) + "\nfollower's stderr:\n" + f.proc.Logs()
	})
	if !strings.Contains(lockedDeny.Fields[audit.FieldReason], "lockdown") || lockedDeny.Fields["_MACHINE_ID"] != a.h.MachineID {
		t.Errorf("fleet-a's lockdown denial on the collector: %v", lockedDeny.Fields)
	}
	if bEnd.Fields[audit.FieldExit] != "0" || bEnd.Fields["_MACHINE_ID"] != b.h.MachineID {
		t.Errorf("fleet-b's run on the collector: %v", bEnd.Fields)
	}

	// A lagging uploader: fleet-a's records reach the collector after
	// fleet-b's later ones. journalctl -f over the whole directory
	// prints in one merged time order and skips what lands behind a
	// record it already printed (systemd 252; upstream issues #359 and
	// #14911); execgate journal -f follows each machine on its own
	// (journalctl -D DIR -f _MACHINE_ID=ID), which does not.
	if err := a.upload.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	if r := a.d.egsh(agentUID, nil, "-c", "echo lagging-"+token); r.code != 126 {
		t.Fatalf("fleet-a in lockdown: exit %d", r.code)
	}
	if r := b.d.egsh(agentUID, nil, "-c", "echo ahead-"+token); r.code != 0 {
		t.Fatalf("fleet-b: exit %d %s", r.code, r.stderr)
	}
	aheadID := fleetWaitEnd(t, collector, remoteDir, "fleet-b", "echo ahead-"+token)
	fleetWait(t, 20*time.Second, "the follower to print fleet-b's run while fleet-a's uploader is stopped", func() string {
		if len(fleetFind(f.records(), audit.FieldID, aheadID, audit.FieldEvent, "end")) > 0 {
			return ""
		}
		return fleetSummary(f.records()[seen:])
	})
	if err := a.upload.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	laggingID := fleetWaitEnd(t, collector, remoteDir, "fleet-a", "echo lagging-"+token)
	fleetCheckLagging(t, collector, remoteDir, f, laggingID, aheadID)
	fleetConverge(t, collector, remoteDir, senders, remote)
	fleetCheckFollowed(t, before, fleetRead(t, collector, "--directory", remoteDir, "--agent", "flow"), f.records())
	for _, r := range f.records() {
		if r.Fields[audit.FieldAgent] != "flow" {
			t.Errorf("the follower (--agent flow) printed a record of agent %q from %s", r.Fields[audit.FieldAgent], r.host())
		}
	}
	if st := f.proc.Stop(); !st.Success() {
		t.Errorf("execgate journal -f ended with %v on SIGTERM, want status 0:\n%s", st, f.proc.Logs())
	}
	// The lockdown's admin record names fleet-a, and fleet-b has none.
	admins := fleetRead(t, collector, "--directory", remoteDir, "--event", "admin")
	var lockdowns []string
	for _, r := range admins {
		if r.Fields[audit.FieldAdminAction] == "lockdown" || strings.Contains(r.Message, "lockdown") {
			lockdowns = append(lockdowns, r.host())
		}
	}
	if strings.Join(lockdowns, " ") != "fleet-a" {
		t.Errorf("lockdown admin records on the collector come from %v, want [fleet-a]", lockdowns)
	}
	t.Logf("fleet of 3 hosts, %d flow records on the collector, in %v", len(fleetRead(t, collector, "--directory", remoteDir, "--agent", "flow")), time.Since(begin).Round(time.Millisecond))
}

// fleetCheckLagging checks that the follower f prints every record of
// fleet-a's run laggingID, which reached the collector after fleet-b's
// later run aheadID had been printed: records older than one printed
// before them.
func fleetCheckLagging(t *testing.T, collector *journaltest.Host, remoteDir string, f *fleetFollow, laggingID, aheadID string) {
	t.Helper()
	stored := fleetFind(fleetRead(t, collector, "--directory", remoteDir, "--agent", "flow"), audit.FieldID, laggingID)
	ahead := fleetFind(f.records(), audit.FieldID, aheadID, audit.FieldEvent, "end")
	if len(stored) == 0 || len(ahead) != 1 || !stored[len(stored)-1].Time.Before(ahead[0].Time) {
		t.Fatalf("fleet-a's run %s: %d records on the collector, fleet-b's later run's end printed %d times: "+
			"want fleet-a's records older than that end (the uploader lagged, not the run)", laggingID, len(stored), len(ahead))
	}
	fleetWait(t, 20*time.Second, "the follower to print fleet-a's lagging run "+laggingID+" (it reached the collector after fleet-b's later run "+aheadID+" was printed)", func() string {
		recs := f.records()
		got := fleetFind(recs, audit.FieldID, laggingID)
		if len(got) == len(stored) {
			return ""
		}
		return fmt.Sprintf("%d of the run's %d records printed; the follower printed:\n%s\nfollower's stderr:\n%s", len(got), len(stored), fleetSummary(recs), f.proc.Logs())
	})
	for i, r := range fleetFind(f.records(), audit.FieldID, laggingID) {
		if r.Fields["__CURSOR"] != stored[i].Fields["__CURSOR"] {
			t.Errorf("the follower printed fleet-a's lagging run's record %d as %q, want %q", i, r.Message, stored[i].Message)
		}
	}
}

// fleetCheckFollowed checks what `execgate journal -f` (its -n 10)
// printed on the collector: first the last 10 records of before (the
// collector's when it started), in order, then every record that
// reached the collector afterwards (after: the collector's at the end),
// each once, and nothing else. Records are told apart by their cursor.
func fleetCheckFollowed(t *testing.T, before, after, followed []journalRecord) {
	t.Helper()
	cursor := func(r journalRecord) string { return r.Fields["__CURSOR"] }
	printed := map[string]int{}
	for _, r := range followed {
		if printed[cursor(r)]++; printed[cursor(r)] == 2 {
			t.Errorf("the follower printed %s's record %q more than once", r.host(), r.Message)
		}
	}
	old := map[string]bool{}
	for _, r := range before {
		old[cursor(r)] = true
	}
	last := before[max(0, len(before)-10):]
	for i, r := range last {
		if i >= len(followed) || cursor(followed[i]) != cursor(r) {
			t.Errorf("the follower's first records:\n%s\nwant the collector's last 10 when it started:\n%s", fleetSummary(followed[:min(len(followed), len(last))]), fleetSummary(last))
			break
		}
	}
	stored := map[string]bool{}
	for _, r := range after {
		stored[cursor(r)] = true
		if !old[cursor(r)] && printed[cursor(r)] == 0 {
			t.Errorf("the follower did not print %s's record %q (%s %s), which reached the collector after it started", r.host(), r.Message, r.Fields[audit.FieldEvent], r.Fields[audit.FieldID])
		}
	}
	for _, r := range followed {
		if !stored[cursor(r)] {
			t.Errorf("the follower printed %s's record %q, which is not on the collector", r.host(), r.Message)
		}
	}
}

// fleetLogEnv makes systemd's tools log (at debug level, kept for the
// failure messages) on stderr.
var fleetLogEnv = []string{"SYSTEMD_LOG_TARGET=console", "SYSTEMD_LOG_LEVEL=debug", "SYSTEMD_COLORS=0"}

// fleetTool finds one of systemd's journal tools or fails naming the
// package.
func fleetTool(t *testing.T, name string) string {
	t.Helper()
	for _, dir := range []string{"/lib/systemd", "/usr/lib/systemd"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p
		}
	}
	t.Fatalf("%s not found in /lib/systemd: install the Debian package systemd-journal-remote (scripts/deps.sh does)", name)
	return ""
}

func fleetToken() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// startFleetDaemon starts execgated on host h (its namespaces, so its
// journald), auditing to the journal, under a cgroup root of its own.
func startFleetDaemon(t *testing.T, h *journaltest.Host, profiles ...profile) *daemon {
	t.Helper()
	d := prepareDaemon(t, "journal", profiles...)
	root := uniqueCgroupRoot()
	t.Cleanup(func() { d.stop(); bypassRemoveCgroups(root) })
	d.launch(launchOpts{args: []string{"--cgroup-root", root}, wrap: h.Wrap})
	return d
}

// startFleetUpload runs systemd-journal-upload on sender s: its journald's
// directory, following, to the collector, with a state file.
func startFleetUpload(t *testing.T, s *fleetSender, bin string) *journaltest.HostProcess {
	t.Helper()
	return s.h.Start(t, fleetLogEnv, bin, fmt.Sprintf("--url=http://%s:%d", fleetCollectorAddr, fleetPort),
		"--directory="+journaltest.Dir, "--save-state="+s.state, "--follow=yes")
}

// fleetRead runs `execgate journal -o json ARGS` on host h and parses
// what it prints; it fails t unless it exits 0 with nothing on stderr.
func fleetRead(t *testing.T, h *journaltest.Host, args ...string) []journalRecord {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := h.CommandContext(ctx, filepath.Join(binDir, "execgate"), append([]string{"journal", "-o", "json"}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil || stderr.Len() > 0 {
		t.Fatalf("execgate journal %s on %s: %v: %s", strings.Join(args, " "), h.Name, err, stderr.Bytes())
	}
	return fleetParse(t, stdout.Bytes())
}

func fleetParse(t testing.TB, out []byte) []journalRecord {
	t.Helper()
	var recs []journalRecord
	for _, l := range bytes.Split(out, []byte("\n")) {
		if len(bytes.TrimSpace(l)) == 0 {
			continue
		}
		r, err := fleetParseLine(l)
		if err != nil {
			t.Fatalf("execgate journal -o json printed %.200q: %v", l, err)
		}
		recs = append(recs, r)
	}
	return recs
}

func fleetParseLine(l []byte) (journalRecord, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(l, &raw); err != nil {
		return journalRecord{}, err
	}
	rec, err := audit.ParseLine(l)
	if err != nil {
		return journalRecord{}, err
	}
	return journalRecord{raw: raw, Record: rec}, nil
}

func fleetFind(recs []journalRecord, kv ...string) []journalRecord {
	var out []journalRecord
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

func fleetCounts(m map[string][]journalRecord) map[string]int {
	out := map[string]int{}
	for k, v := range m {
		out[k] = len(v)
	}
	return out
}

// fleetJournalFiles lists the journal files in dir.
func fleetJournalFiles(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".journal") || strings.HasSuffix(e.Name(), ".journal~") {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out
}

// fleetConverge waits until, for every sender, the execgated records on
// the collector with that sender's machine id are exactly the ones in
// the sender's own journal (`execgate journal -o json` there), in the
// same order, each with the same fields and values; only __CURSOR, the
// position in a file, differs.
func fleetConverge(t *testing.T, collector *journaltest.Host, remoteDir string, senders []*fleetSender, remote *journaltest.HostProcess) {
	t.Helper()
	fleetWait(t, 30*time.Second, "the collector to hold every sender's records", func() string {
		if remote.Exited() {
			t.Fatalf("systemd-journal-remote exited:\n%s", remote.Logs())
		}
		got := fleetRead(t, collector, "--directory", remoteDir)
		var why []string
		for _, s := range senders {
			if s.upload.Exited() {
				t.Fatalf("systemd-journal-upload on %s exited:\n%s", s.h.Name, s.upload.Logs())
			}
			if err := s.h.Sync(); err != nil {
				t.Fatal(err)
			}
			want := fleetRead(t, s.h)
			var have []journalRecord
			for _, r := range got {
				if r.Fields["_MACHINE_ID"] == s.h.MachineID {
					have = append(have, r)
				}
			}
			if d := fleetDiff(want, have); d != "" {
				why = append(why, fmt.Sprintf("%s (%d records, collector %d): %s\nupload's log:\n%s", s.h.Name, len(want), len(have), d, s.upload.Logs()))
			}
		}
		if len(why) == 0 {
			return ""
		}
		return strings.Join(why, "\n") + "\njournal-remote's log:\n" + remote.Logs()
	})
}

// fleetDiff compares a sender's records with the collector's copies.
func fleetDiff(want, have []journalRecord) string {
	for i := range max(len(want), len(have)) {
		if i >= len(want) {
			return fmt.Sprintf("extra record %d on the collector: %q", i, have[i].Message)
		}
		if i >= len(have) {
			return fmt.Sprintf("record %d not on the collector: %q", i, want[i].Message)
		}
		var diffs []string
		for k, v := range want[i].raw {
			if k == "__CURSOR" {
				continue
			}
			if hv, ok := have[i].raw[k]; !ok {
				diffs = append(diffs, k+" missing")
			} else if !bytes.Equal(v, hv) {
				diffs = append(diffs, fmt.Sprintf("%s = %.80s, want %.80s", k, hv, v))
			}
		}
		for k := range have[i].raw {
			if _, ok := want[i].raw[k]; !ok && k != "__CURSOR" {
				diffs = append(diffs, k+" added")
			}
		}
		if len(diffs) > 0 {
			sort.Strings(diffs)
			return fmt.Sprintf("record %d (%q): %s", i, want[i].Message, strings.Join(diffs, "; "))
		}
	}
	return ""
}

// fleetWaitEnd waits until the collector holds the end record of host's
// run of script (read without following), and returns the run id.
func fleetWaitEnd(t *testing.T, collector *journaltest.Host, remoteDir, host, script string) string {
	t.Helper()
	id := ""
	fleetWait(t, 20*time.Second, host+"'s run of "+script+" on the collector", func() string {
		recs := fleetRead(t, collector, "--directory", remoteDir)
		req := fleetFind(recs, "_HOSTNAME", host, audit.FieldEvent, "request", audit.FieldScript, script)
		if len(req) == 1 {
			id = req[0].Fields[audit.FieldID]
			if len(fleetFind(recs, "_HOSTNAME", host, audit.FieldID, id, audit.FieldEvent, "end")) == 1 {
				return ""
			}
		}
		return fmt.Sprintf("%d request records", len(req))
	})
	return id
}

// fleetSummary is one line a record, for failure messages.
func fleetSummary(recs []journalRecord) string {
	var lines []string
	for _, r := range recs {
		lines = append(lines, fmt.Sprintf("%s %s %s %s", r.host(), r.Fields[audit.FieldEvent], r.Fields[audit.FieldID], r.Message))
	}
	return strings.Join(lines, "\n")
}

// fleetWait polls cond (which returns "" when done, else what it saw)
// every 100ms and fails t after d.
func fleetWait(t *testing.T, d time.Duration, what string, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		saw := cond()
		if saw == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s:\n%s", d, what, saw)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// fleetFollow is `execgate journal --directory DIR -f --agent flow -o
// json` running on the collector, its records parsed as they come.
type fleetFollow struct {
	proc *journaltest.HostProcess
	mu   sync.Mutex
	part []byte
	recs []journalRecord
	bad  []string
}

func startFleetFollow(t *testing.T, collector *journaltest.Host, remoteDir string) *fleetFollow {
	t.Helper()
	f := &fleetFollow{}
	f.proc = collector.StartOutput(t, f, nil, filepath.Join(binDir, "execgate"), "journal", "--directory", remoteDir, "-f", "--agent", "flow", "-o", "json")
	t.Cleanup(func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		if len(f.bad) > 0 {
			t.Errorf("execgate journal -f printed lines that are not records: %q", f.bad)
		}
	})
	return f
}

// Write takes the follower's stdout, one JSON record a line.
func (f *fleetFollow) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.part = append(f.part, p...)
	for {
		i := bytes.IndexByte(f.part, '\n')
		if i < 0 {
			return len(p), nil
		}
		line := f.part[:i]
		if r, err := fleetParseLine(line); err != nil {
			f.bad = append(f.bad, string(line))
		} else {
			f.recs = append(f.recs, r)
		}
		f.part = append(f.part[:0:0], f.part[i+1:]...)
	}
}

func (f *fleetFollow) records() []journalRecord {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]journalRecord(nil), f.recs...)
}
