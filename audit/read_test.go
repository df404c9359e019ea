package audit_test

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/execgate/execgate/audit"
)

// A line as journalctl -o json --all prints it: trusted fields, a value
// with a tab (not printable: an array of bytes), a field repeated in one
// entry (an array of values), and a null (too large without --all).
const journalctlLine = `{"__CURSOR":"s=95;i=3","__REALTIME_TIMESTAMP":"1795312937282967","__MONOTONIC_TIMESTAMP":"1450908142",` +
	`"_PID":"24405","_UID":"0","PRIORITY":"4","SYSLOG_IDENTIFIER":"execgated","MESSAGE":"flow DENY git checkout x",` +
	`"EXECGATE_AGENT":"flow","EXECGATE_DECISION":"deny","EXECGATE_ARGV":"[\"git\",\"checkout\",\"x\"]",` +
	`"EXECGATE_SCRIPT":[103,105,116,9,255],"EXECGATE_VIA":["egsh","mcp"],"EXECGATE_REASON":null,"EXECGATE_CWD":[[47,115],"/t"]}`

func TestParseLineJournalctl(t *testing.T) {
	r, err := audit.ParseLine([]byte(journalctlLine))
	if err != nil {
		t.Fatal(err)
	}
	if r.Message != "flow DENY git checkout x" || r.Priority != 4 || !r.Time.Equal(time.UnixMicro(1795312937282967)) {
		t.Fatalf("parsed %+v", r)
	}
	want := map[string]string{
		"__CURSOR": "s=95;i=3", "__MONOTONIC_TIMESTAMP": "1450908142", "_PID": "24405", "_UID": "0",
		"SYSLOG_IDENTIFIER": "execgated", "EXECGATE_AGENT": "flow", "EXECGATE_DECISION": "deny",
		"EXECGATE_ARGV": `["git","checkout","x"]`, "EXECGATE_SCRIPT": "git\t\xff", "EXECGATE_VIA": "egsh",
		"EXECGATE_CWD": "/s",
	}
	for k, v := range want {
		if r.Fields[k] != v {
			t.Errorf("%s = %q, want %q", k, r.Fields[k], v)
		}
	}
	for _, k := range []string{"MESSAGE", "PRIORITY", "__REALTIME_TIMESTAMP", "EXECGATE_REASON"} {
		if _, ok := r.Fields[k]; ok {
			t.Errorf("%s left in Fields", k)
		}
	}
	if len(r.Fields) != len(want) {
		t.Errorf("fields %v", r.Fields)
	}
	argv, err := r.Argv()
	if err != nil || strings.Join(argv, " ") != "git checkout x" {
		t.Errorf("Argv = %q, %v", argv, err)
	}

	for _, bad := range []string{`[1,2]`, `"x"`, `{"PRIORITY":"high"}`, `{"A":[300]}`, `{"__REALTIME_TIMESTAMP":"x"}`, `{"A":`, `null`} {
		if _, err := audit.ParseLine([]byte(bad)); err == nil {
			t.Errorf("ParseLine(%s) accepted", bad)
		}
	}
	if r, err := audit.ParseLine([]byte(`{"MESSAGE":"m"}`)); err != nil || r.Priority != audit.PriInfo {
		t.Errorf("no PRIORITY: %v, %v; want PriInfo", r, err)
	}
}

func TestDecoderGoesOnAfterBadLines(t *testing.T) {
	in := `{"MESSAGE":"a","PRIORITY":"6"}` + "\n\n" + "-- not json --\n" + `{"MESSAGE":"b","PRIORITY":"3"}` + "\n" + `{"MESSAGE":"unfinished`
	d := audit.NewDecoder(strings.NewReader(in), "test")
	var got []string
	var bad []int
	for {
		e, err := d.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		var le *audit.LineError
		if errors.As(err, &le) {
			bad = append(bad, le.Line)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, e.Message+":"+string(e.Raw))
	}
	if strings.Join(got, "|") != `a:{"MESSAGE":"a","PRIORITY":"6"}|b:{"MESSAGE":"b","PRIORITY":"3"}` {
		t.Errorf("entries %q", got)
	}
	if len(bad) != 1 || bad[0] != 3 {
		t.Errorf("bad lines %v, want [3]", bad)
	}
}

func TestFilter(t *testing.T) {
	t0 := time.Date(2025, 6, 1, 18, 22, 25, 0, time.UTC)
	r := &audit.Record{Time: t0, Fields: map[string]string{
		audit.FieldAgent: "flow", audit.FieldDecision: "deny", audit.FieldEvent: "decision", audit.FieldID: "r1",
	}}
	for _, c := range []struct {
		f    audit.Filter
		want bool
	}{
		{audit.Filter{}, true},
		{audit.Filter{Agent: "flow", Decision: "deny", Event: audit.EventDecision, ID: "r1", Since: t0}, true},
		{audit.Filter{Agent: "other"}, false},
		{audit.Filter{Decision: "allow"}, false},
		{audit.Filter{Decision: "DENY"}, false}, // exact, as journalctl matches are
		{audit.Filter{Event: audit.EventEnd}, false},
		{audit.Filter{ID: "r2"}, false},
		{audit.Filter{Since: t0.Add(time.Microsecond)}, false},
		{audit.Filter{Since: t0.Add(-time.Hour)}, true},
	} {
		if got := c.f.Match(r); got != c.want {
			t.Errorf("%+v.Match = %v, want %v", c.f, got, c.want)
		}
	}
	f := audit.Filter{Agent: "flow", Decision: "deny", Since: t0}
	if got := strings.Join(f.Matches(), " "); got != "EXECGATE_AGENT=flow EXECGATE_DECISION=deny" {
		t.Errorf("Matches = %s", got)
	}
}

func TestParseSince(t *testing.T) {
	loc := time.FixedZone("SAST", 2*3600)
	now := time.Date(2025, 6, 1, 18, 22, 25, 500, loc)
	day := func(d, h, m, s int) time.Time { return time.Date(2025, 6, d, h, m, s, 0, loc) }
	for in, want := range map[string]time.Time{
		"2025-06-01 10:00:00":          day(1, 10, 0, 0),
		"2025-05-31 23:59":             time.Date(2025, 5, 31, 23, 59, 0, 0, loc),
		"2025-06-01":                   day(1, 0, 0, 0),
		"2025-06-01T10:00:00Z":         time.Date(2025, 6, 1, 10, 0, 0, 0, time.UTC),
		"2025-06-01T10:00:00.25+02:00": day(1, 10, 0, 0).Add(250 * time.Millisecond),
		"09:30":                        day(1, 9, 30, 0),
		"09:30:15":                     day(1, 9, 30, 15),
		"today":                        day(1, 0, 0, 0),
		"yesterday":                    day(1, 0, 0, 0).AddDate(0, 0, -1),
		"now":                          now,
		"-1h":                          now.Add(-time.Hour),
		"90s ago":                      now.Add(-90 * time.Second),
		"2d":                           now.Add(-48 * time.Hour),
		"@1748800945":                  time.Unix(1748800945, 0),
		"@1748800945.5":                time.Unix(1748800945, 5e8),
	} {
		got, err := audit.ParseSince(in, now)
		if err != nil {
			t.Errorf("ParseSince(%q): %v", in, err)
			continue
		}
		if !got.Equal(want) {
			t.Errorf("ParseSince(%q) = %v, want %v", in, got, want)
		}
	}
	for _, bad := range []string{"", "soon", "@x", "25:00", "2025-13-01"} {
		if _, err := audit.ParseSince(bad, now); err == nil {
			t.Errorf("ParseSince(%q) accepted", bad)
		}
	}
}

func writeRecords(t *testing.T, s *audit.FileSink, msgs ...string) {
	t.Helper()
	for _, m := range msgs {
		if err := s.Write(audit.New(audit.EventRequest, audit.PriInfo, m).Set(audit.FieldAgent, strings.SplitN(m, "-", 2)[0])); err != nil {
			t.Fatal(err)
		}
	}
}

func TestReadFileLinesAndFilter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	s, err := audit.NewFileSink(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	writeRecords(t, s, "flow-1", "other-1", "flow-2", "flow-3", "other-2", "flow-4")
	var got []string
	for e, err := range audit.ReadFile(context.Background(), path, audit.ReadOptions{Filter: audit.Filter{Agent: "flow"}, Lines: 2}) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, e.Message)
	}
	if strings.Join(got, ",") != "flow-3,flow-4" {
		t.Errorf("last 2 of flow: %q", got)
	}
	for _, err := range audit.ReadFile(context.Background(), filepath.Join(t.TempDir(), "missing"), audit.ReadOptions{}) {
		if !errors.Is(err, os.ErrNotExist) {
			t.Errorf("missing file: %v", err)
		}
	}
}

// follower collects what a following ReadFile yields.
type follower struct {
	mu   sync.Mutex
	msgs []string
	errs []error
	done chan struct{}
}

func follow(ctx context.Context, path string, opts audit.ReadOptions) *follower {
	f := &follower{done: make(chan struct{})}
	opts.Follow = true
	opts.Poll = 10 * time.Millisecond
	go func() {
		defer close(f.done)
		for e, err := range audit.ReadFile(ctx, path, opts) {
			f.mu.Lock()
			if err != nil {
				f.errs = append(f.errs, err)
			} else {
				f.msgs = append(f.msgs, e.Message)
			}
			f.mu.Unlock()
		}
	}()
	return f
}

func (f *follower) waitFor(t *testing.T, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		f.mu.Lock()
		got := strings.Join(f.msgs, ",")
		errs := f.errs
		f.mu.Unlock()
		if got == want {
			return
		}
		if len(errs) > 0 || time.Now().After(deadline) || !strings.HasPrefix(want, got) {
			t.Fatalf("followed %q (errors %v), want %q", got, errs, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestReadFileFollow(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	s, err := audit.NewFileSink(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	writeRecords(t, s, "a-1", "a-2", "a-3")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := follow(ctx, path, audit.ReadOptions{Lines: 2})
	f.waitFor(t, "a-2,a-3")

	writeRecords(t, s, "a-4")
	f.waitFor(t, "a-2,a-3,a-4")

	// A line written in two parts is yielded once, whole.
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	fh.WriteString(`{"MESSAGE":"a-5","PRI`)
	time.Sleep(100 * time.Millisecond) // several polls see the half line
	f.waitFor(t, "a-2,a-3,a-4")
	fh.WriteString(`ORITY":"6"}` + "\n")
	fh.Close()
	f.waitFor(t, "a-2,a-3,a-4,a-5")

	// Rotation: the sink moves on to a new file at the path; the
	// follower finishes the old one, then reads the new one.
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	writeRecords(t, s, "a-6")
	f.waitFor(t, "a-2,a-3,a-4,a-5,a-6")

	// Truncation (copytruncate): reading starts again at the top.
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // tail -f's rule: a shrunk file is seen at a poll
	writeRecords(t, s, "a-7")
	f.waitFor(t, "a-2,a-3,a-4,a-5,a-6,a-7")

	cancel()
	select {
	case <-f.done:
	case <-time.After(10 * time.Second):
		t.Fatal("follow did not end after cancel")
	}
	if len(f.errs) != 0 {
		t.Fatalf("follow ended with %v, want no error", f.errs)
	}
}
