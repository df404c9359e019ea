package journal_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
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

// Every test here runs in a private mount namespace with a real
// systemd-journald of its own.
func TestMain(m *testing.M) { journaltest.Main(m) }

func newID(prefix string) string {
	var b [6]byte
	rand.Read(b[:])
	return prefix + "-" + hex.EncodeToString(b[:])
}

// sinkCase is one sink under test with a way to read it back.
type sinkCase struct {
	name string
	open func(t *testing.T) audit.Sink
	// read returns the entries matching f once there are at least n.
	read func(t *testing.T, f audit.Filter, n int) []*audit.Entry
	// raw returns the stored JSON objects of run id, as stored.
	raw func(t *testing.T, id string) [][]byte
}

func collect(t *testing.T, seq func(func(*audit.Entry, error) bool)) []*audit.Entry {
	t.Helper()
	var es []*audit.Entry
	for e, err := range seq {
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		es = append(es, e)
	}
	return es
}

func sinks(t *testing.T) []sinkCase {
	journalCase := sinkCase{
		name: "journald",
		open: func(t *testing.T) audit.Sink {
			s, err := journal.NewSink()
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		read: func(t *testing.T, f audit.Filter, n int) []*audit.Entry {
			t.Helper()
			matches := append([]string{"SYSLOG_IDENTIFIER=execgated"}, f.Matches()...)
			journaltest.WaitFor(t, n, matches...)
			return collect(t, journal.Read(context.Background(), journal.ReadOptions{ReadOptions: audit.ReadOptions{Filter: f}}))
		},
		raw: func(t *testing.T, id string) [][]byte {
			t.Helper()
			if err := journaltest.Sync(); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command("journalctl", "-o", "json", "--all", "-q", "--no-pager", "EXECGATE_ID="+id).Output()
			if err != nil {
				t.Fatal(err)
			}
			return bytes.Split(bytes.TrimSpace(out), []byte("\n"))
		},
	}
	path := filepath.Join(t.TempDir(), "log", "audit.jsonl")
	fileCase := sinkCase{
		name: "file",
		open: func(t *testing.T) audit.Sink {
			s, err := journal.OpenSink("file:" + path)
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		read: func(t *testing.T, f audit.Filter, n int) []*audit.Entry {
			t.Helper()
			return collect(t, audit.ReadFile(context.Background(), path, audit.ReadOptions{Filter: f}))
		},
		raw: func(t *testing.T, id string) [][]byte {
			t.Helper()
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var lines [][]byte
			for _, l := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
				if bytes.Contains(l, []byte(`"EXECGATE_ID":"`+id+`"`)) {
					lines = append(lines, l)
				}
			}
			return lines
		},
	}
	return []sinkCase{journalCase, fileCase}
}

// TestSinksEveryEvent writes a record of every event type, plus one with
// a 2 MiB script and a binary field, to journald and to the file, and
// reads them back: through the package readers, and as raw JSON.
func TestSinksEveryEvent(t *testing.T) {
	for _, sc := range sinks(t) {
		t.Run(sc.name, func(t *testing.T) {
			s := sc.open(t)
			defer s.Close()
			id := newID("every")
			want := journaltest.Samples(id, "flow")
			big := audit.New(audit.EventRequest, audit.PriInfo, "flow request (2 MiB script)").
				Set(audit.FieldID, id).Set(audit.FieldAgent, "flow").
				Set(audit.FieldScript, bigScript(2<<20)).
				Set(audit.FieldEnvNames, "HOME\tPATH\xff\x00") // not printable UTF-8: stored as bytes
			want = append(want, big)
			before := time.Now()
			for _, r := range want {
				if err := s.Write(r); err != nil {
					t.Fatalf("%s: %v", r.Event(), err)
				}
				if r.Time.IsZero() || r.Time.Before(before) {
					t.Fatalf("Write left Time %v", r.Time)
				}
			}
			got := sc.read(t, audit.Filter{ID: id}, len(want))
			if len(got) != len(want) {
				t.Fatalf("read %d records, want %d", len(got), len(want))
			}
			byEvent := map[string]*audit.Entry{}
			for _, e := range got {
				byEvent[e.Fields[audit.FieldEvent]+"/"+e.Message] = e
			}
			for _, w := range want {
				g := byEvent[string(w.Event())+"/"+w.Message]
				if g == nil {
					t.Errorf("%s record %q missing", w.Event(), w.Message)
					continue
				}
				if err := journaltest.SameRecord(g.Record, w); err != nil {
					t.Error(err)
				}
			}
			if n := len(byEvent["request/flow request (2 MiB script)"].Fields[audit.FieldScript]); n != 2<<20 {
				t.Errorf("the big script came back with %d bytes", n)
			}

			// The stored JSON, read without our reader.
			raws := sc.raw(t, id)
			if len(raws) != len(want) {
				t.Fatalf("%d raw records, want %d", len(raws), len(want))
			}
			prios := map[string]int{}
			for _, line := range raws {
				var m map[string]any
				if err := json.Unmarshal(line, &m); err != nil {
					t.Fatalf("stored JSON: %v", err)
				}
				if m["SYSLOG_IDENTIFIER"] != "execgated" {
					t.Errorf("SYSLOG_IDENTIFIER = %v", m["SYSLOG_IDENTIFIER"])
				}
				if _, ok := m["MESSAGE"].(string); !ok {
					t.Errorf("MESSAGE = %v", m["MESSAGE"])
				}
				ts, _ := m["__REALTIME_TIMESTAMP"].(string)
				var us int64
				if _, err := fmt.Sscan(ts, &us); err != nil || time.UnixMicro(us).Before(before.Add(-time.Second)) {
					t.Errorf("__REALTIME_TIMESTAMP = %v", m["__REALTIME_TIMESTAMP"])
				}
				p, _ := m["PRIORITY"].(string)
				prios[p]++
				if ev := m["EXECGATE_EVENT"]; ev == "request" && m["MESSAGE"] == big.Message {
					if _, isBytes := m["EXECGATE_ENV_NAMES"].([]any); !isBytes {
						t.Errorf("binary EXECGATE_ENV_NAMES stored as %T, want an array of bytes", m["EXECGATE_ENV_NAMES"])
					}
				}
			}
			// 6 for allow and the rest, 4 for deny and the admin kill, 3 for the error.
			if prios["6"] != 7 || prios["4"] != 2 || prios["3"] != 1 {
				t.Errorf("priorities %v, want 6:7 4:2 3:1", prios)
			}
		})
	}
}

func bigScript(n int) string {
	var b strings.Builder
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "echo line %d of a long generated script 'quoted' \"and\" $VAR\n", i)
	}
	return b.String()[:n]
}

// TestSinksConcurrent writes 5,000 records from 32 goroutines into each
// sink; every record must come back exactly once and intact.
func TestSinksConcurrent(t *testing.T) {
	const writers, total = 32, 5000
	for _, sc := range sinks(t) {
		t.Run(sc.name, func(t *testing.T) {
			s := sc.open(t)
			defer s.Close()
			agent := newID("conc")
			var wg sync.WaitGroup
			errs := make(chan error, writers)
			for w := 0; w < writers; w++ {
				wg.Add(1)
				go func(w int) {
					defer wg.Done()
					for i := w; i < total; i += writers {
						id := fmt.Sprintf("%s-%05d", agent, i)
						r := audit.New(audit.EventExec, audit.PriInfo, "exec "+id).
							Set(audit.FieldID, id).Set(audit.FieldAgent, agent).
							SetArgv([]string{"echo", id, "\"quoted\" \\ x"}).
							Set(audit.FieldScript, fmt.Sprintf("line one %s\nline two %s", id, id))
						if err := s.Write(r); err != nil {
							errs <- fmt.Errorf("record %d: %w", i, err)
							return
						}
					}
				}(w)
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			got := sc.read(t, audit.Filter{Agent: agent}, total)
			seen := make(map[string]int, total)
			for _, e := range got {
				id := e.Fields[audit.FieldID]
				seen[id]++
				argv, err := e.Argv()
				if err != nil || len(argv) != 3 || argv[1] != id || argv[2] != "\"quoted\" \\ x" ||
					e.Message != "exec "+id || e.Fields[audit.FieldScript] != fmt.Sprintf("line one %s\nline two %s", id, id) {
					t.Fatalf("record %s corrupted: %+v", id, e.Record)
				}
			}
			if len(got) != total || len(seen) != total {
				t.Fatalf("read %d records, %d distinct, want %d", len(got), len(seen), total)
			}
		})
	}
}

// restartJournald makes sure later tests find journald running.
func restartJournald(t *testing.T) {
	t.Cleanup(func() {
		journaltest.Resume()
		if err := journaltest.Start(); err != nil {
			t.Fatal(err)
		}
	})
}

// TestJournaldGone: without journald, Write fails at once (no hang),
// NewSink fails clearly, and auto picks the file; with it back, auto
// picks journald again.
func TestJournaldGone(t *testing.T) {
	restartJournald(t)
	s, err := journal.NewSink()
	if err != nil {
		t.Fatal(err)
	}
	id := newID("gone")
	rec := func(msg string) *audit.Record {
		return audit.New(audit.EventRequest, audit.PriInfo, msg).Set(audit.FieldID, id)
	}
	// A datagram journald has not read yet dies with it: wait until each
	// record is stored before taking journald away.
	stored := func(n int) { journaltest.WaitFor(t, n, "EXECGATE_ID="+id) }
	if err := s.Write(rec("before")); err != nil {
		t.Fatal(err)
	}
	stored(1)

	n := 1
	for _, stop := range []struct {
		name string
		f    func() error
	}{{"SIGKILL", journaltest.Kill}, {"SIGTERM", journaltest.Stop}} {
		if err := stop.f(); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		err := s.Write(rec("after " + stop.name))
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("Write after journald's %s: %v, want ECONNREFUSED", stop.name, err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("Write took %v to fail", d)
		}
		if _, err := journal.NewSink(); !errors.Is(err, journal.ErrUnavailable) {
			t.Fatalf("NewSink with a dead journald: %v, want ErrUnavailable", err)
		}
		if err := journaltest.Start(); err != nil {
			t.Fatal(err)
		}
		if err := s.Write(rec("back after " + stop.name)); err != nil {
			t.Fatalf("Write after journald came back: %v", err)
		}
		n++
		stored(n)
	}

	// No journald and no socket at all.
	if err := journaltest.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(journaltest.Socket); err != nil {
		t.Fatal(err)
	}
	_, err = journal.NewSink()
	if !errors.Is(err, journal.ErrUnavailable) || !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), journal.SocketPath) {
		t.Fatalf("NewSink without a socket: %v; want ErrUnavailable naming %s", err, journal.SocketPath)
	}
	if _, err := journal.OpenSink("journal"); !errors.Is(err, journal.ErrUnavailable) {
		t.Fatalf(`OpenSink("journal") without journald: %v`, err)
	}
	if err := s.Write(rec("no socket")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Write without a socket: %v, want ENOENT", err)
	}
	def := filepath.Join(t.TempDir(), "var", "log", "execgate", "audit.jsonl")
	auto, err := journal.OpenSink("auto", journal.WithDefaultFile(def))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := auto.(*audit.FileSink); !ok {
		t.Fatalf(`OpenSink("auto") without journald = %T, want *audit.FileSink`, auto)
	}
	if err := auto.Write(rec("to the file")); err != nil {
		t.Fatal(err)
	}
	auto.Close()
	if b, err := os.ReadFile(def); err != nil || !bytes.Contains(b, []byte(`"MESSAGE":"to the file"`)) {
		t.Fatalf("default file: %q, %v", b, err)
	}

	if err := journaltest.Start(); err != nil {
		t.Fatal(err)
	}
	auto, err = journal.OpenSink("auto", journal.WithDefaultFile(def))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := auto.(*journal.Sink); !ok {
		t.Fatalf(`OpenSink("auto") with journald = %T, want *journal.Sink`, auto)
	}
	if err := auto.Write(rec("auto to journald")); err != nil {
		t.Fatal(err)
	}
	var msgs []string
	for _, r := range journaltest.WaitFor(t, 4, "EXECGATE_ID="+id) {
		msgs = append(msgs, r.Message)
	}
	if got := strings.Join(msgs, ","); got != "before,back after SIGKILL,back after SIGTERM,auto to journald" {
		t.Fatalf("journal holds %s", got)
	}
}

// TestJournaldHung: journald stopped with SIGSTOP stops reading; once its
// socket queue is full, Write gives up after the timeout with ErrTimeout
// instead of blocking the caller for ever.
func TestJournaldHung(t *testing.T) {
	restartJournald(t)
	s, err := journal.NewSink(journal.WithTimeout(300 * time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if err := journaltest.Pause(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	var werr error
	for i := 0; werr == nil; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("%d writes to a paused journald all succeeded", i)
		}
		start := time.Now()
		werr = s.Write(audit.New(audit.EventRequest, audit.PriInfo, fmt.Sprint("hung ", i)))
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("Write blocked %v", d)
		}
	}
	if !errors.Is(werr, journal.ErrTimeout) {
		t.Fatalf("Write to a paused journald: %v, want ErrTimeout", werr)
	}
	if err := journaltest.Resume(); err != nil {
		t.Fatal(err)
	}
	// journald drains its queue and takes records again.
	id := newID("resumed")
	if err := s.Write(audit.New(audit.EventRequest, audit.PriInfo, "resumed").Set(audit.FieldID, id)); err != nil {
		t.Fatal(err)
	}
	journaltest.WaitFor(t, 1, "EXECGATE_ID="+id)
}

func TestOpenSinkSpecs(t *testing.T) {
	for _, bad := range []string{"", "syslog", "file:", "file:relative/audit.jsonl", "journal:x"} {
		if s, err := journal.OpenSink(bad); err == nil {
			s.Close()
			t.Errorf("OpenSink(%q) accepted", bad)
		}
	}
	path := filepath.Join(t.TempDir(), "a.jsonl")
	s, err := journal.OpenSink("file:" + path)
	if err != nil {
		t.Fatal(err)
	}
	if fs, ok := s.(*audit.FileSink); !ok || fs.Path() != path {
		t.Fatalf(`OpenSink("file:...") = %T`, s)
	}
	s.Close()
	s, err = journal.OpenSink("journal")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.(*journal.Sink); !ok {
		t.Fatalf(`OpenSink("journal") = %T`, s)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(audit.New(audit.EventRequest, audit.PriInfo, "closed")); !errors.Is(err, audit.ErrClosed) {
		t.Errorf("Write after Close: %v", err)
	}
	if err := s.Write(audit.New(audit.EventRequest, audit.PriInfo, "x").Set("lower_case", "v")); err == nil {
		t.Error("invalid field name accepted")
	}
}

// TestRead: filters, last-N, --directory and follow against journald.
func TestRead(t *testing.T) {
	s, err := journal.NewSink()
	if err != nil {
		t.Fatal(err)
	}
	tag := newID("read")
	write := func(agent, decision, msg string) {
		t.Helper()
		r := audit.New(audit.EventDecision, audit.PriInfo, msg).Set(audit.FieldID, tag).Set(audit.FieldAgent, agent).Set(audit.FieldDecision, decision)
		if err := s.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	write("flow", "deny", "m1")
	write("flow", "allow", "m2")
	write("other", "deny", "m3")
	recs := journaltest.WaitFor(t, 3, "EXECGATE_ID="+tag)
	// A record at a later microsecond than m1..m3, for Since.
	var last time.Time
	for _, r := range recs {
		if r.Time.After(last) {
			last = r.Time
		}
	}
	for time.Now().Before(last.Add(2 * time.Millisecond)) {
		time.Sleep(time.Millisecond)
	}
	write("flow", "deny", "m4")
	journaltest.WaitFor(t, 4, "EXECGATE_ID="+tag)

	read := func(o journal.ReadOptions) string {
		t.Helper()
		o.Filter.ID = tag
		var m []string
		for _, e := range collect(t, journal.Read(context.Background(), o)) {
			m = append(m, e.Message)
		}
		return strings.Join(m, ",")
	}
	opts := func(f audit.Filter, lines int) journal.ReadOptions {
		return journal.ReadOptions{ReadOptions: audit.ReadOptions{Filter: f, Lines: lines}}
	}
	for _, c := range []struct {
		o    journal.ReadOptions
		want string
	}{
		{opts(audit.Filter{}, 0), "m1,m2,m3,m4"},
		{opts(audit.Filter{Agent: "flow"}, 0), "m1,m2,m4"},
		{opts(audit.Filter{Decision: "deny"}, 0), "m1,m3,m4"},
		{opts(audit.Filter{Agent: "flow", Decision: "deny"}, 0), "m1,m4"},
		{opts(audit.Filter{Since: last.Add(time.Microsecond)}, 0), "m4"},
		{opts(audit.Filter{Event: audit.EventEnd}, 0), ""},
		{opts(audit.Filter{Agent: "flow"}, 2), "m2,m4"},
		{journal.ReadOptions{ReadOptions: audit.ReadOptions{Filter: audit.Filter{Agent: "other"}}, Directory: journaltest.Dir}, "m3"},
	} {
		if got := read(c.o); got != c.want {
			t.Errorf("Read(%v) = %q, want %q", journal.Args(c.o), got, c.want)
		}
	}

	// A failing journalctl is an error that says so.
	for _, err := range journal.Read(context.Background(), journal.ReadOptions{Directory: "/nonexistent"}) {
		if err == nil || !strings.Contains(err.Error(), "journalctl") || !strings.Contains(err.Error(), "/nonexistent") {
			t.Errorf("Read from a missing directory: %v", err)
		}
	}

	// Follow: records written after the start show up; cancel ends it.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan string, 16)
	ended := make(chan error, 1)
	go func() {
		var ferr error
		for e, err := range journal.Read(ctx, journal.ReadOptions{ReadOptions: audit.ReadOptions{Filter: audit.Filter{ID: tag, Agent: "flow"}, Follow: true, Lines: 1}}) {
			if err != nil {
				ferr = err
				continue
			}
			got <- e.Message
		}
		ended <- ferr
	}()
	expect := func(want string) {
		t.Helper()
		select {
		case m := <-got:
			if m != want {
				t.Fatalf("followed %q, want %q", m, want)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("follow did not yield %q", want)
		}
	}
	expect("m4")
	write("other", "allow", "m5") // filtered out
	write("flow", "allow", "m6")
	expect("m6")
	cancel()
	select {
	case err := <-ended:
		if err != nil {
			t.Fatalf("follow ended with %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("follow did not end after cancel")
	}
}

func TestArgs(t *testing.T) {
	since := time.Unix(1748800945, 700_000_000)
	got := strings.Join(journal.Args(journal.ReadOptions{
		ReadOptions: audit.ReadOptions{Filter: audit.Filter{Agent: "flow", Decision: "deny", Since: since}, Follow: true},
		Directory:   "/d", Files: []string{"/f1", "/f2"},
	}), " ")
	// With Follow, Args is the read of the records already stored, the
	// same as without: Read follows each machine with calls of its own.
	want := "-o json --all -q --no-pager --directory=/d --file=/f1 --file=/f2 --since=@1748800945 SYSLOG_IDENTIFIER=execgated EXECGATE_AGENT=flow EXECGATE_DECISION=deny"
	if got != want {
		t.Errorf("Args:\n%s\nwant\n%s", got, want)
	}
	got = strings.Join(journal.Args(journal.ReadOptions{
		ReadOptions: audit.ReadOptions{Filter: audit.Filter{ID: "x"}, Follow: true, Lines: 10},
	}), " ")
	want = "-o json --all -q --no-pager --lines=10 SYSLOG_IDENTIFIER=execgated EXECGATE_ID=x"
	if got != want {
		t.Errorf("Args:\n%s\nwant\n%s", got, want)
	}
}
