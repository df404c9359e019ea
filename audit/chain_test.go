package audit_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/execgate/execgate/audit"
)

// chainFile is a test's audit file and its sink.
type chainFile struct {
	t    *testing.T
	path string
	s    *audit.FileSink
	n    int
}

func newChainFile(t *testing.T) *chainFile {
	c := &chainFile{t: t, path: filepath.Join(t.TempDir(), "audit.jsonl")}
	c.reopen()
	return c
}

// reopen is a daemon restart: a new sink on the same path.
func (c *chainFile) reopen() {
	c.t.Helper()
	if c.s != nil {
		c.s.Close()
	}
	s, err := audit.NewFileSink(c.path)
	if err != nil {
		c.t.Fatal(err)
	}
	c.s = s
	c.t.Cleanup(func() { s.Close() })
}

func (c *chainFile) write(k int) {
	c.t.Helper()
	for range k {
		c.n++
		id := fmt.Sprintf("r%d", c.n)
		if err := c.s.Write(audit.New(audit.EventRequest, audit.PriInfo, "request "+id).Set(audit.FieldID, id)); err != nil {
			c.t.Fatal(err)
		}
	}
}

func (c *chainFile) appendRaw(b string) {
	c.t.Helper()
	f, err := os.OpenFile(c.path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		c.t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(b); err != nil {
		c.t.Fatal(err)
	}
}

func (c *chainFile) lines() []string {
	b, err := os.ReadFile(c.path)
	if err != nil {
		c.t.Fatal(err)
	}
	return strings.SplitAfter(string(b), "\n")
}

func lineSum(line string) string {
	s := sha256.Sum256([]byte(strings.TrimSuffix(line, "\n")))
	return hex.EncodeToString(s[:])
}

func verify(t *testing.T, head string, paths ...string) *audit.VerifyResult {
	t.Helper()
	res, err := audit.VerifyFiles(paths, audit.VerifyOptions{Head: head})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func findings(res *audit.VerifyResult) string {
	var b strings.Builder
	for _, f := range res.Findings {
		b.WriteString(f.String() + "\n")
	}
	return b.String()
}

// wantIntact checks the result: intact, with these records and seqs, and
// a head that is the hash of the last record line.
func wantIntact(t *testing.T, res *audit.VerifyResult, records int, lastLine string) {
	t.Helper()
	if !res.Intact() || res.Records != records || res.Head != lineSum(lastLine) {
		t.Fatalf("verify: intact %v, %d records (want %d), head %s (want %s)\n%s%s", res.Intact(), res.Records, records, res.Head, lineSum(lastLine), findings(res), res.Summary())
	}
}

// TestChainWriter: the sink keeps a valid chain across restarts, torn
// lines, rotation and removal.
func TestChainWriter(t *testing.T) {
	t.Run("new file", func(t *testing.T) {
		c := newChainFile(t)
		c.write(3)
		l := c.lines()
		res := verify(t, "", c.path)
		wantIntact(t, res, 3, l[2])
		if res.Start != audit.Genesis || res.FirstSeq != 1 || res.LastSeq != 3 || len(res.Findings) != 0 {
			t.Fatalf("start %s, seq %d-%d, findings %q", res.Start, res.FirstSeq, res.LastSeq, findings(res))
		}
		for i := 1; i < 3; i++ {
			want := fmt.Sprintf(`{"EXECGATE_PREV":"%s","EXECGATE_SEQ":"%d","__REALTIME_TIMESTAMP":`, lineSum(l[i-1]), i+1)
			if !strings.HasPrefix(l[i], want) {
				t.Errorf("line %d = %s, want it to start %s", i+1, l[i], want)
			}
		}
		if want := "intact: 3 records (seq 1-3) in " + c.path + ", from genesis, head=" + lineSum(l[2]); res.Summary() != want {
			t.Errorf("summary %q, want %q", res.Summary(), want)
		}
	})
	t.Run("restart", func(t *testing.T) {
		c := newChainFile(t)
		c.write(2)
		c.reopen()
		c.write(2)
		c.reopen()
		c.reopen()
		c.write(1)
		l := c.lines()
		wantIntact(t, verify(t, "", c.path), 5, l[4])
		if !strings.Contains(l[2], `"EXECGATE_PREV":"`+lineSum(l[1])+`","EXECGATE_SEQ":"3"`) {
			t.Errorf("the first record after a restart does not continue the chain: %s", l[2])
		}
	})
	t.Run("empty file", func(t *testing.T) {
		c := newChainFile(t)
		c.reopen()
		c.write(1)
		if l := c.lines(); !strings.HasPrefix(l[0], `{"EXECGATE_PREV":"`+audit.Genesis+`","EXECGATE_SEQ":"1",`) {
			t.Errorf("first record %s", l[0])
		}
	})
	for _, torn := range []struct{ name, raw string }{
		{"torn last line", `{"EXECGATE_PREV":"abc`},
		{"torn line of a few bytes", `{`},
		{"torn, restarted, torn again", "{\"EXEC\n{\"EXECGATE_PREV\":"},
		{"zeros left by a crash", "\x00\x00\x00\x00"},
	} {
		t.Run(torn.name, func(t *testing.T) {
			c := newChainFile(t)
			c.write(2)
			c.appendRaw(torn.raw)
			c.reopen()
			c.reopen() // a restart that wrote nothing changes nothing
			c.write(2)
			l := c.lines()
			nTorn := strings.Count(torn.raw, "\n") + 1
			res := verify(t, "", c.path)
			wantIntact(t, res, 4, l[3+nTorn])
			after := l[2+nTorn]
			tornSum := sha256.Sum256([]byte(torn.raw + "\n"))
			if !strings.HasPrefix(after, fmt.Sprintf(`{"EXECGATE_PREV":"%s","EXECGATE_SEQ":"3","EXECGATE_TORN":"%x",`, lineSum(l[1]), tornSum)) {
				t.Errorf("record after the torn line: %s", after)
			}
			if strings.Contains(l[3+nTorn], "EXECGATE_TORN") {
				t.Errorf("EXECGATE_TORN on a later record: %s", l[3+nTorn])
			}
			if f := findings(res); !strings.Contains(f, ":3: note: ") || !strings.Contains(f, ": a record torn by a crash, which line ") {
				t.Errorf("findings:\n%s", f)
			}
		})
	}
	t.Run("cut just before its newline", func(t *testing.T) {
		// A record whose newline did not make it is whole once the
		// restart adds the newline: it stays in the chain.
		c := newChainFile(t)
		c.write(2)
		b, _ := os.ReadFile(c.path)
		os.WriteFile(c.path, b[:len(b)-1], 0o640)
		c.reopen()
		c.write(1)
		l := c.lines()
		res := verify(t, "", c.path)
		wantIntact(t, res, 3, l[2])
		if len(res.Findings) != 0 || strings.Contains(l[2], "TORN") {
			t.Errorf("findings %q; line 3 %s", findings(res), l[2])
		}
	})
	t.Run("torn file without records", func(t *testing.T) {
		c := newChainFile(t)
		c.appendRaw(`{"EXECGATE_PR`)
		c.reopen()
		c.write(1)
		l := c.lines()
		wantIntact(t, verify(t, "", c.path), 1, l[1])
		if !strings.HasPrefix(l[1], `{"EXECGATE_PREV":"`+audit.Genesis+`","EXECGATE_SEQ":"1","EXECGATE_TORN":`) {
			t.Errorf("first record %s", l[1])
		}
	})
	t.Run("rotation", func(t *testing.T) {
		c := newChainFile(t)
		c.write(2)
		old := c.lines()
		os.Rename(c.path, c.path+".1")
		c.write(2)
		cur := c.lines()
		wantIntact(t, verify(t, "", c.path+".1"), 2, old[1])
		res := verify(t, "", c.path)
		wantIntact(t, res, 2, cur[1])
		if res.Start != lineSum(old[1]) || res.FirstSeq != 3 || !strings.Contains(findings(res), "the chain starts in an earlier file") ||
			!strings.Contains(res.Summary(), "from an earlier file (first EXECGATE_PREV "+lineSum(old[1])+")") {
			t.Errorf("rotated file: start %s seq %d\n%s%s", res.Start, res.FirstSeq, findings(res), res.Summary())
		}
		both := verify(t, "", c.path+".1", c.path)
		wantIntact(t, both, 4, cur[1])
		if len(both.Findings) != 0 {
			t.Errorf("both files: %s", findings(both))
		}
		rev := verify(t, "", c.path, c.path+".1")
		if rev.Intact() || !strings.Contains(findings(rev), c.path+".1:1: chain broken: a new chain starts (EXECGATE_PREV is genesis) with a record older than the last one of "+c.path+": the files are out of order") {
			t.Errorf("files in the wrong order:\n%s", findings(rev))
		}
	})
	t.Run("removed, then a new daemon", func(t *testing.T) {
		c := newChainFile(t)
		c.write(1)
		os.Remove(c.path)
		c.write(1) // reopens: continues the chain
		if l := c.lines(); strings.Contains(l[0], audit.Genesis) {
			t.Errorf("a file replacing a removed one starts a new chain: %s", l[0])
		}
		os.Remove(c.path)
		c.reopen() // a new daemon on a new file: genesis
		c.write(1)
		if l := c.lines(); !strings.Contains(l[0], audit.Genesis) {
			t.Errorf("a new daemon's new file does not start at genesis: %s", l[0])
		}
	})
}

// tamperBase writes six records and returns the file's lines (with
// their newlines).
func tamperBase(t *testing.T) (*chainFile, []string) {
	c := newChainFile(t)
	c.write(6)
	return c, c.lines()[:6]
}

// TestVerifyTamper: every kind of change to a chained file is found, at
// the right line, with the right reason.
func TestVerifyTamper(t *testing.T) {
	_, base := tamperBase(t)
	head := lineSum(base[5])
	forged := func(prev string, seq int) string {
		return fmt.Sprintf(`{"EXECGATE_PREV":"%s","EXECGATE_SEQ":"%d","PRIORITY":"6","MESSAGE":"forged"}`+"\n", prev, seq)
	}
	edit := func(l string) string { return strings.Replace(l, "request r3", "request r9", 1) }
	for _, c := range []struct {
		name   string
		lines  func(l []string) []string
		head   string
		intact bool
		want   string // in the findings
	}{
		{"untampered", func(l []string) []string { return l }, head, true, ""},
		{"edited middle line", func(l []string) []string { l[2] = edit(l[2]); return l }, "", false,
			":4: chain broken: EXECGATE_PREV is not the hash of line 3, the record before it: line 3 was changed after this record was written"},
		{"one byte edited into bad JSON", func(l []string) []string { l[2] = strings.Replace(l[2], `":"`, `":}`, 1); return l }, "", false,
			":4: chain broken: EXECGATE_PREV is not the hash of line 2, the record before it: the record it follows is not there: line 3 is not a JSON record where record 3 was (damaged or replaced)"},
		{"deleted line", func(l []string) []string { return append(l[:2:2], l[3:]...) }, "", false,
			":3: chain broken: EXECGATE_PREV is not the hash of line 2, the record before it: record 3 is missing: deleted"},
		{"deleted lines", func(l []string) []string { return append(l[:1:1], l[4:]...) }, "", false,
			":2: chain broken: EXECGATE_PREV is not the hash of line 1, the record before it: records 2-4 (3 records) are missing: deleted"},
		{"inserted forged line with a correct-looking PREV", func(l []string) []string {
			return append(append(l[:2:2], forged(lineSum(l[1]), 3)), l[2:]...)
		}, "", false, ":4: chain broken: EXECGATE_PREV is not the hash of line 3, the record before it: it follows line 2, so line 3 comes between: inserted there"},
		{"inserted forged line with a wrong PREV", func(l []string) []string {
			return append(append(l[:2:2], forged(strings.Repeat("ab", 32), 3)), l[2:]...)
		}, "", false, ":3: chain broken: EXECGATE_PREV is not the hash of line 2, the record before it: line 2 was changed"},
		{"swapped lines", func(l []string) []string { l[2], l[3] = l[3], l[2]; return l }, "", false,
			":3: chain broken: EXECGATE_PREV is not the hash of line 2, the record before it: it follows line 4, which comes after it: records reordered"},
		{"duplicated line", func(l []string) []string { return append(append(l[:3:3], l[2]), l[3:]...) }, "", false,
			":4: chain broken: EXECGATE_PREV is not the hash of line 3, the record before it: it is a copy of line 3"},
		{"inserted non-JSON line", func(l []string) []string { return append(append(l[:3:3], "hello\n"), l[3:]...) }, "", false,
			":4: chain broken: line 4 is not a JSON record, and line 5 does not account for it"},
		{"PREV removed", func(l []string) []string { l[3] = `{` + l[3][strings.Index(l[3], `"__REALTIME`):]; return l }, "", false,
			":4: chain broken: no EXECGATE_PREV"},
		{"PREV moved", func(l []string) []string {
			l[3] = strings.Replace(l[3], `"EXECGATE_SEQ":"4",`, "", 1)
			l[3] = `{"EXECGATE_SEQ":"4",` + strings.TrimPrefix(l[3], "{")
			return l
		}, "", false, ":4: chain broken: EXECGATE_PREV is not the record's first field"},
		{"SEQ renumbered", func(l []string) []string {
			l[5] = strings.Replace(l[5], `"EXECGATE_SEQ":"6"`, `"EXECGATE_SEQ":"9"`, 1)
			return l
		}, "", false,
			":6: chain broken: EXECGATE_SEQ is 9, want 6"},
		{"two chains joined", func(l []string) []string { return append(l[:3:3], l...) }, "", false,
			":4: chain broken: a new chain (EXECGATE_PREV genesis) starts in the middle of the file"},
		{"truncated, no head", func(l []string) []string { return l[:4] }, "", true, ""},
		{"truncated, with the noted head", func(l []string) []string { return l[:4] }, head, false,
			"chain broken: the noted head " + head + " is not the hash of any record: records were cut from the end"},
		{"last line edited, with the noted head", func(l []string) []string { l[5] = edit(strings.Replace(l[5], "r6", "r3", 1)); return l }, head, false,
			"the noted head " + head + " is not the hash of any record"},
		{"appended after the noted head", func(l []string) []string { return l }, strings.ToUpper(lineSum(base[3])), true, ""},
		{"trailing garbage", func(l []string) []string { return append(l, "garbage\n") }, head, true,
			":7: note: line 7 is not a JSON record, after the last record"},
		{"unterminated last line", func(l []string) []string { return append(l, `{"EXECGATE_PREV":"`) }, head, true,
			":7: note: an unterminated last line (18 bytes): a record being written"},
		{"torn line removed", func(l []string) []string {
			l[3] = strings.Replace(l[3], `"EXECGATE_SEQ":"4",`, `"EXECGATE_SEQ":"4","EXECGATE_TORN":"`+strings.Repeat("0", 64)+`",`, 1)
			return l
		}, "", false, ":4: chain broken: the record accounts for torn lines before it (EXECGATE_TORN), but there are none"},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "audit.jsonl")
			if err := os.WriteFile(path, []byte(strings.Join(c.lines(append([]string(nil), base...)), "")), 0o640); err != nil {
				t.Fatal(err)
			}
			res := verify(t, c.head, path)
			f := findings(res)
			t.Log("\n" + f + res.Summary())
			if res.Intact() != c.intact || !strings.Contains(f, c.want) {
				t.Fatalf("intact %v, want %v; findings:\n%swant one with %q\n%s", res.Intact(), c.intact, f, c.want, res.Summary())
			}
			if strings.Contains(c.name, "noted head") && c.intact && (res.NotedLine != 4 || !strings.Contains(res.Summary(), ":4 with 2 records after it, head="+head)) {
				t.Errorf("noted head at line %d, want 4: %s", res.NotedLine, res.Summary())
			}
		})
	}
}

// TestVerifyHalves: an untampered file split in two (as rotation does)
// passes as two halves, each alone and both in order, and fails in the
// wrong order.
func TestVerifyHalves(t *testing.T) {
	_, l := tamperBase(t)
	dir := t.TempDir()
	first, second := filepath.Join(dir, "a.jsonl"), filepath.Join(dir, "b.jsonl")
	os.WriteFile(first, []byte(strings.Join(l[:3], "")), 0o640)
	os.WriteFile(second, []byte(strings.Join(l[3:], "")), 0o640)
	wantIntact(t, verify(t, "", first), 3, l[2])
	res := verify(t, "", second)
	wantIntact(t, res, 3, l[5])
	if res.Start != lineSum(l[2]) || res.FirstSeq != 4 {
		t.Errorf("second half starts at %s seq %d", res.Start, res.FirstSeq)
	}
	both := verify(t, lineSum(l[4]), first, second)
	wantIntact(t, both, 6, l[5])
	if both.NotedSource != second || both.NotedLine != 2 || both.AfterNoted != 1 {
		t.Errorf("noted head at %s:%d, %d after", both.NotedSource, both.NotedLine, both.AfterNoted)
	}
	if rev := verify(t, "", second, first); rev.Intact() {
		t.Errorf("halves in the wrong order verify:\n%s", findings(rev))
	}
	// A missing middle file.
	mid := filepath.Join(dir, "c.jsonl")
	os.WriteFile(mid, []byte(strings.Join(l[5:], "")), 0o640)
	if gap := verify(t, "", first, mid); gap.Intact() || !strings.Contains(findings(gap), "records 4-5 (2 records) are missing") {
		t.Errorf("a file missing between two: %s", findings(gap))
	}
}

func TestVerifyErrors(t *testing.T) {
	if _, err := audit.VerifyFiles([]string{filepath.Join(t.TempDir(), "missing")}, audit.VerifyOptions{}); !os.IsNotExist(err) {
		t.Errorf("missing file: %v", err)
	}
	path := filepath.Join(t.TempDir(), "empty.jsonl")
	os.WriteFile(path, nil, 0o640)
	if _, err := audit.VerifyFiles([]string{path}, audit.VerifyOptions{Head: "xyz"}); err == nil {
		t.Error("a bad head was accepted")
	}
	res := verify(t, "", path)
	if !res.Intact() || res.Records != 0 || res.Head != audit.Genesis {
		t.Errorf("empty file: %s", res.Summary())
	}
	if res := verify(t, audit.Genesis, path); res.Intact() {
		t.Errorf("an empty file has no noted head: %s", res.Summary())
	}
}

// TestFileSinkChainConcurrent: concurrent Writes make one valid chain.
func TestFileSinkChainConcurrent(t *testing.T) {
	c := newChainFile(t)
	done := make(chan struct{})
	for w := 0; w < 16; w++ {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := 0; i < 100; i++ {
				r := audit.New(audit.EventExec, audit.PriInfo, "exec").Set(audit.FieldScript, strings.Repeat("x", (w*131+i*17)%5000))
				if err := c.s.Write(r); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	for range 16 {
		<-done
	}
	l := c.lines()
	res := verify(t, "", c.path)
	wantIntact(t, res, 1600, l[1599])
	if res.LastSeq != 1600 || !bytes.HasSuffix([]byte(l[1599]), []byte("}\n")) {
		t.Errorf("seq %d", res.LastSeq)
	}
}
