package audit_test

import (
	"bytes"
	"context"
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
)

// readAll reads every entry of the file, failing on any error.
func readAll(t *testing.T, path string, f audit.Filter) []*audit.Entry {
	t.Helper()
	var es []*audit.Entry
	for e, err := range audit.ReadFile(context.Background(), path, audit.ReadOptions{Filter: f}) {
		if err != nil {
			t.Fatalf("read %s: %v", path, err)
		}
		es = append(es, e)
	}
	return es
}

func TestFileSinkFormat(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "log", "execgate")
	path := filepath.Join(dir, "audit.jsonl")
	s, err := audit.NewFileSink(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r := audit.New(audit.EventDecision, audit.PriWarning, `flow DENY git checkout flow/a11y (flow.toml:14: "PR" <only> & more)`).
		Set(audit.FieldAgent, "flow").
		Set(audit.FieldDecision, "deny").
		SetArgv([]string{"git", "checkout", "flow/a11y"}).
		Set(audit.FieldCwd, "/srv/a\tb\x01\u2028").
		Set(audit.FieldReason, "bad\xffbytes")
	r.Fields[audit.FieldMessage] = "ignored: Message wins"
	r.Fields[audit.FieldIdentifier] = "ignored too"
	r.Fields[audit.FieldPrev] = "ignored: the chain is the sink's"
	r.Fields[audit.FieldSeq] = "7"
	r.Time = time.UnixMicro(1748800945123456)
	if err := s.Write(r); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"EXECGATE_PREV":"` + audit.Genesis + `","EXECGATE_SEQ":"1","__REALTIME_TIMESTAMP":"1748800945123456","PRIORITY":"4","SYSLOG_IDENTIFIER":"execgated",` +
		`"MESSAGE":"flow DENY git checkout flow/a11y (flow.toml:14: \"PR\" <only> & more)",` +
		`"EXECGATE_AGENT":"flow","EXECGATE_ARGV":"[\"git\",\"checkout\",\"flow/a11y\"]",` +
		`"EXECGATE_CWD":"/srv/a\tb\u0001\u2028","EXECGATE_DECISION":"deny","EXECGATE_EVENT":"decision",` +
		`"EXECGATE_REASON":[98,97,100,255,98,121,116,101,115]}` + "\n"
	if string(got) != want {
		t.Fatalf("file:\n%s\nwant:\n%s", got, want)
	}
	for p, mode := range map[string]os.FileMode{path: 0o640, dir: 0o750 | os.ModeDir} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode() != mode {
			t.Errorf("%s: mode %v, want %v", p, st.Mode(), mode)
		}
	}

	// The reader gives back exactly what was written.
	es := readAll(t, path, audit.Filter{})
	if len(es) != 1 {
		t.Fatalf("%d entries, want 1", len(es))
	}
	back := es[0]
	if !back.Time.Equal(r.Time) || back.Message != r.Message || back.Priority != 4 || back.Fields[audit.FieldIdentifier] != "execgated" {
		t.Fatalf("read back %+v", back.Record)
	}
	for k, v := range r.Fields {
		if k == audit.FieldMessage || k == audit.FieldIdentifier || k == audit.FieldPrev || k == audit.FieldSeq {
			continue
		}
		if back.Fields[k] != v {
			t.Errorf("%s = %q, want %q", k, back.Fields[k], v)
		}
	}
	if string(back.Raw)+"\n" != want {
		t.Errorf("Raw = %s", back.Raw)
	}
	if back.Fields[audit.FieldPrev] != audit.Genesis || back.Fields[audit.FieldSeq] != "1" {
		t.Errorf("chain fields read back as %q, %q", back.Fields[audit.FieldPrev], back.Fields[audit.FieldSeq])
	}

	// A bad field name or priority is refused and nothing is written.
	bad := audit.New(audit.EventError, audit.PriErr, "x").Set("execgate_lower", "v")
	if err := s.Write(bad); err == nil {
		t.Error("lower-case field name accepted")
	}
	if err := s.Write(&audit.Record{Priority: 9, Fields: map[string]string{}}); err == nil {
		t.Error("priority 9 accepted")
	}
	if err := s.Write(audit.New(audit.EventError, audit.PriErr, "x").Set("_PID", "1")); err == nil {
		t.Error("trusted field name accepted")
	}
	if after, _ := os.ReadFile(path); string(after) != want {
		t.Errorf("refused records changed the file:\n%s", after)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(audit.New(audit.EventError, audit.PriErr, "late")); !errors.Is(err, audit.ErrClosed) {
		t.Errorf("Write after Close: %v, want ErrClosed", err)
	}
	if _, err := audit.NewFileSink("relative/audit.jsonl"); err == nil {
		t.Error("relative path accepted")
	}
}

func TestFileSinkEveryEvent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	s, err := audit.NewFileSink(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	want := journaltest.Samples("run-every", "flow")
	big := journaltest.Samples("run-big", "flow")[0]
	big.Set(audit.FieldScript, bigScript(2<<20))
	big.Set(audit.FieldEnvNames, "A\x00B\xfe\tC")
	want = append(want, big)
	for _, r := range want {
		if err := s.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	got := readAll(t, path, audit.Filter{})
	if len(got) != len(want) {
		t.Fatalf("%d records, want %d", len(got), len(want))
	}
	prios := map[int]bool{}
	for i := range want {
		if err := journaltest.SameRecord(got[i].Record, want[i]); err != nil {
			t.Errorf("record %d: %v", i, err)
		}
		prios[got[i].Priority] = true
	}
	if !prios[6] || !prios[4] || !prios[3] {
		t.Errorf("priorities %v, want 6, 4 and 3", prios)
	}
	if n := len(got[len(got)-1].Fields[audit.FieldScript]); n != 2<<20 {
		t.Errorf("script is %d bytes, want %d", n, 2<<20)
	}
}

// bigScript is n bytes of shell-ish text with newlines.
func bigScript(n int) string {
	var b strings.Builder
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "echo line %d of a very long generated script 'quoted' \"and\" $VAR\n", i)
	}
	return b.String()[:n]
}

func TestFileSinkConcurrent(t *testing.T) {
	const writers, total = 32, 5000
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	s, err := audit.NewFileSink(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var wg sync.WaitGroup
	errs := make(chan error, total)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < total; i += writers {
				id := fmt.Sprintf("c-%05d", i)
				// Sizes vary from tiny to 16 KiB, so writes cross pages.
				r := audit.New(audit.EventRequest, audit.PriInfo, "request "+id).
					Set(audit.FieldID, id).
					Set(audit.FieldAgent, fmt.Sprint("agent", w)).
					Set(audit.FieldScript, id+":"+strings.Repeat("x", (i*7919)%(16<<10)))
				if err := s.Write(r); err != nil {
					errs <- err
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
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(raw, []byte("\n")); n != total || raw[len(raw)-1] != '\n' {
		t.Fatalf("%d lines (last byte %q), want %d", n, raw[len(raw)-1], total)
	}
	seen := map[string]int{}
	for _, e := range readAll(t, path, audit.Filter{}) {
		id := e.Fields[audit.FieldID]
		seen[id]++
		var i int
		fmt.Sscanf(id, "c-%05d", &i)
		if want := id + ":" + strings.Repeat("x", (i*7919)%(16<<10)); e.Fields[audit.FieldScript] != want || e.Message != "request "+id {
			t.Fatalf("record %s corrupted", id)
		}
	}
	if len(seen) != total {
		t.Fatalf("%d distinct records, want %d", len(seen), total)
	}
	if res, err := audit.VerifyFiles([]string{path}, audit.VerifyOptions{}); err != nil || !res.Intact() || res.Records != total || res.LastSeq != total {
		t.Fatalf("verify: %v %s", err, res.Summary())
	}
	for id, n := range seen {
		if n != 1 {
			t.Fatalf("%s read %d times", id, n)
		}
	}
}

// TestFileSinkDiskFull fills a 64 KiB tmpfs: Write must fail with
// ENOSPC, and the file must hold exactly the records that were
// acknowledged, each whole.
func TestFileSinkDiskFull(t *testing.T) {
	if !journaltest.IsolateMounts(t) {
		return
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=64k,mode=0755"); err != nil {
		t.Fatal(err)
	}
	defer syscall.Unmount(dir, syscall.MNT_DETACH)
	path := filepath.Join(dir, "audit.jsonl")
	s, err := audit.NewFileSink(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var acked []string
	var werr error
	for i := 0; i < 1000; i++ {
		id := fmt.Sprint("full-", i)
		// 1500 bytes: not a divisor of the page size, so the failing
		// write is a partial one that must be cut back.
		r := audit.New(audit.EventRequest, audit.PriInfo, id).Set(audit.FieldID, id).Set(audit.FieldScript, strings.Repeat("s", 1500))
		if werr = s.Write(r); werr != nil {
			break
		}
		acked = append(acked, id)
	}
	if werr == nil {
		t.Fatal("1000 records of 1.5 KiB fit in a 64 KiB tmpfs")
	}
	if !errors.Is(werr, syscall.ENOSPC) {
		t.Fatalf("Write on a full disk: %v, want ENOSPC", werr)
	}
	if len(acked) < 10 {
		t.Fatalf("only %d records fit before the disk was full", len(acked))
	}
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(before) == 0 || before[len(before)-1] != '\n' {
		t.Fatal("the file does not end with a whole line")
	}
	// A big record fails too and leaves the file as it was.
	big := audit.New(audit.EventRequest, audit.PriInfo, "big").Set(audit.FieldScript, strings.Repeat("b", 100<<10))
	if err := s.Write(big); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("big Write on a full disk: %v, want ENOSPC", err)
	}
	after, _ := os.ReadFile(path)
	if !bytes.Equal(before, after) {
		t.Fatalf("a failed Write changed the file (%d -> %d bytes)", len(before), len(after))
	}
	es := readAll(t, path, audit.Filter{})
	if len(es) != len(acked) {
		t.Fatalf("%d records in the file, %d acknowledged", len(es), len(acked))
	}
	for i, e := range es {
		if e.Fields[audit.FieldID] != acked[i] || len(e.Fields[audit.FieldScript]) != 1500 {
			t.Fatalf("record %d is %q, want %q whole", i, e.Fields[audit.FieldID], acked[i])
		}
	}
	// The failed Writes left the chain whole.
	if res, err := audit.VerifyFiles([]string{path}, audit.VerifyOptions{}); err != nil || !res.Intact() || res.Records != len(acked) {
		t.Fatalf("verify after a full disk: %v %s", err, res.Summary())
	}
}

// TestFileSinkReadOnly: a file that becomes immutable fails Writes, and
// a path on a read-only mount fails both NewFileSink and a Write that has
// to reopen there.
func TestFileSinkReadOnly(t *testing.T) {
	if !journaltest.IsolateMounts(t) {
		return
	}
	t.Run("immutable", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "audit.jsonl")
		s, err := audit.NewFileSink(path)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if err := s.Write(audit.New(audit.EventRequest, audit.PriInfo, "first")); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("chattr", "+i", path).CombinedOutput(); err != nil {
			t.Skipf("chattr +i is not supported on %s (%v: %s); the read-only mount test covers EROFS", filepath.Dir(path), err, out)
		}
		defer exec.Command("chattr", "-i", path).Run()
		if err := s.Write(audit.New(audit.EventRequest, audit.PriInfo, "second")); !errors.Is(err, syscall.EPERM) {
			t.Fatalf("Write to an immutable file: %v, want EPERM", err)
		}
		if es := readAll(t, path, audit.Filter{}); len(es) != 1 || es[0].Message != "first" {
			t.Fatalf("file holds %d records", len(es))
		}
	})
	t.Run("read-only mount", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "audit.jsonl")
		s, err := audit.NewFileSink(path)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if err := s.Write(audit.New(audit.EventRequest, audit.PriInfo, "first")); err != nil {
			t.Fatal(err)
		}
		// Mount a read-only tmpfs over the directory: the path now
		// names nothing, and nothing can be created there.
		if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_RDONLY, "size=64k"); err != nil {
			t.Fatal(err)
		}
		defer syscall.Unmount(dir, syscall.MNT_DETACH)
		if err := s.Write(audit.New(audit.EventRequest, audit.PriInfo, "second")); !errors.Is(err, syscall.EROFS) {
			t.Fatalf("Write that must reopen on a read-only mount: %v, want EROFS", err)
		}
		if _, err := audit.NewFileSink(filepath.Join(dir, "other.jsonl")); !errors.Is(err, syscall.EROFS) {
			t.Fatalf("NewFileSink on a read-only mount: %v, want EROFS", err)
		}
	})
}

// TestFileSinkReopens: a rotated (renamed) or removed file is replaced
// by a new file at the path on the next Write; the old file keeps its
// records.
func TestFileSinkReopens(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	s, err := audit.NewFileSink(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	write := func(msg string) {
		t.Helper()
		if err := s.Write(audit.New(audit.EventRequest, audit.PriInfo, msg)); err != nil {
			t.Fatal(err)
		}
	}
	messages := func(p string) (m []string) {
		for _, e := range readAll(t, p, audit.Filter{}) {
			m = append(m, e.Message)
		}
		return m
	}
	write("one")
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	write("two")
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	write("three")
	if got := strings.Join(messages(path+".1"), ","); got != "one" {
		t.Errorf("rotated file holds %s, want one", got)
	}
	if got := strings.Join(messages(path), ","); got != "three" {
		t.Errorf("current file holds %s, want three", got)
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o640 {
		t.Errorf("recreated file mode %v", st.Mode())
	}
}

// TestFileSinkTornLine: a file whose last line was cut by a crash gets
// its newline, so the next record is on a line of its own and readable.
func TestFileSinkTornLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	if err := os.WriteFile(path, []byte(`{"MESSAGE":"whole","PRIORITY":"6"}`+"\n"+`{"MESSAGE":"to`), 0o640); err != nil {
		t.Fatal(err)
	}
	s, err := audit.NewFileSink(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Write(audit.New(audit.EventRequest, audit.PriInfo, "after")); err != nil {
		t.Fatal(err)
	}
	var msgs []string
	var lineErrs []*audit.LineError
	for e, err := range audit.ReadFile(context.Background(), path, audit.ReadOptions{}) {
		var le *audit.LineError
		switch {
		case errors.As(err, &le):
			lineErrs = append(lineErrs, le)
		case err != nil:
			t.Fatal(err)
		default:
			msgs = append(msgs, e.Message)
		}
	}
	if strings.Join(msgs, ",") != "whole,after" {
		t.Errorf("records %q, want whole,after", msgs)
	}
	if len(lineErrs) != 1 || lineErrs[0].Line != 2 || lineErrs[0].Source != path {
		t.Errorf("line errors %v, want one for line 2", lineErrs)
	}
}
