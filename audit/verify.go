package audit

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"strconv"
	"strings"
)

// VerifyOptions control VerifyFiles.
type VerifyOptions struct {
	// Head, when set, is a head noted earlier (64 hex digits, as the
	// summary prints it). It must be the hash of a record in the chain:
	// otherwise records were cut from the end, or the chain rewritten.
	Head string
}

// Finding is one thing the verifier found: a break in the chain, or a
// note that does not make the chain broken (a line torn by a crash, a
// chain continuing an earlier file).
type Finding struct {
	Source string // the file
	Line   int    // 1-based; 0 when about the chain as a whole
	Broken bool
	Msg    string
}

func (f Finding) String() string {
	kind := "note"
	if f.Broken {
		kind = "chain broken"
	}
	switch {
	case f.Source == "":
		return kind + ": " + f.Msg
	case f.Line == 0:
		return fmt.Sprintf("%s: %s: %s", f.Source, kind, f.Msg)
	}
	return fmt.Sprintf("%s:%d: %s: %s", f.Source, f.Line, kind, f.Msg)
}

// MaxFindings bounds the findings a VerifyResult keeps; the rest are
// only counted (VerifyResult.Omitted).
const MaxFindings = 200

// VerifyResult is what VerifyFiles found.
type VerifyResult struct {
	Files    []string
	Lines    int    // complete lines read
	Records  int    // record lines (JSON objects)
	Start    string // EXECGATE_PREV of the first record: Genesis, or an earlier file's head
	FirstSeq uint64 // EXECGATE_SEQ of the first and the last record
	LastSeq  uint64
	// Head is the hex SHA-256 of the last record line: what the next
	// record's EXECGATE_PREV will be (Genesis when there is no record).
	Head string
	// NotedHead is VerifyOptions.Head when it was found: NotedSource and
	// NotedLine locate it, AfterNoted counts the records after it.
	NotedHead   string
	NotedSource string
	NotedLine   int
	AfterNoted  int
	Findings    []Finding
	Breaks      int // findings that break the chain, kept or not
	Omitted     int // findings beyond MaxFindings
}

// Intact reports whether no finding breaks the chain.
func (r *VerifyResult) Intact() bool { return r.Breaks == 0 }

// Summary is the one-line verdict, ending in head=HASH.
func (r *VerifyResult) Summary() string {
	var b strings.Builder
	if r.Intact() {
		b.WriteString("intact: ")
	} else {
		fmt.Fprintf(&b, "BROKEN (%d %s): ", r.Breaks, plural(r.Breaks, "break", "breaks"))
	}
	fmt.Fprintf(&b, "%d records", r.Records)
	if r.Records > 0 {
		fmt.Fprintf(&b, " (seq %d-%d)", r.FirstSeq, r.LastSeq)
	}
	if len(r.Files) == 1 {
		fmt.Fprintf(&b, " in %s", r.Files[0])
	} else {
		fmt.Fprintf(&b, " in %d files", len(r.Files))
	}
	switch {
	case r.Records == 0:
	case r.Start == Genesis:
		b.WriteString(", from genesis")
	default:
		fmt.Fprintf(&b, ", from an earlier file (first %s %s)", FieldPrev, r.Start)
	}
	if r.NotedHead != "" {
		fmt.Fprintf(&b, ", noted head at %s:%d with %d %s after it", r.NotedSource, r.NotedLine, r.AfterNoted, plural(r.AfterNoted, "record", "records"))
	}
	fmt.Fprintf(&b, ", head=%s", r.Head)
	return b.String()
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// VerifyFiles checks the chain of JSONL audit files, oldest first, from
// each file's first line to its last; each file after the first must
// continue the one before (or start a new chain at Genesis). The error is
// for a file that cannot be read; what the chain holds is in the result.
//
// The rules, which FileSink follows:
//   - a record line is a JSON object (at most DefaultMaxLine bytes);
//     it starts with {"EXECGATE_PREV":"H","EXECGATE_SEQ":"N", where H
//     is the lowercase hex SHA-256 of the previous record line's exact
//     bytes without its newline, or Genesis for a chain's first record,
//     and N is the previous record's N + 1 (1 at Genesis);
//   - other lines (torn by a crash) are not in the chain, but the next
//     record must account for them: its EXECGATE_TORN, right after
//     EXECGATE_SEQ, is the SHA-256 of those lines, each with its newline;
//   - lines after the last record are not covered yet, and an
//     unterminated last line is a record being written: both are notes.
//
// A chain shows changes to any line before its last record. It cannot
// show records cut from the end: a head noted earlier (opts.Head), kept
// where whoever can write the file cannot change it, does.
func VerifyFiles(paths []string, opts VerifyOptions) (*VerifyResult, error) {
	srcs := make([]chainSource, len(paths))
	for i, p := range paths {
		srcs[i] = chainSource{name: p, open: func() (io.ReadCloser, error) { return os.Open(p) }}
	}
	return verifySources(srcs, opts)
}

// chainSource is one file of the chain, opened once per pass.
type chainSource struct {
	name string
	open func() (io.ReadCloser, error)
}

// linePos is a line's place in the chain: file index, then line.
type linePos struct{ src, line int }

func (a linePos) before(b linePos) bool {
	return a.src < b.src || a.src == b.src && a.line < b.line
}

// recordState is the last record seen.
type recordState struct {
	pos    linePos
	sum    [32]byte
	seq    uint64
	hasSeq bool
	time   int64 // __REALTIME_TIMESTAMP, 0 when not found
}

// linkBreak is a record whose EXECGATE_PREV is not the hash of the record
// before it; the second pass looks for where its PREV and its own hash
// are, to say why.
type linkBreak struct {
	finding int // index in Findings
	pos     linePos
	link    chainLink
	self    [32]byte
	before  recordState // the record before it
	damaged string      // the non-record lines between, not accounted for
}

type verifier struct {
	srcs []chainSource
	res  *VerifyResult
	head *[32]byte

	last        *recordState // the last record, nil before the first
	fileRecords int          // records in the current file
	torn        hash.Hash    // the non-record lines since the last record
	tornFrom    int          // their first line (0: none)
	tornTo      int
	tornLong    bool   // one of them was longer than DefaultMaxLine
	damaged     string // the unaccounted non-record lines before this record
	breaks      []linkBreak
}

func verifySources(srcs []chainSource, opts VerifyOptions) (*VerifyResult, error) {
	v := &verifier{srcs: srcs, res: &VerifyResult{Head: Genesis}, torn: sha256.New()}
	if opts.Head != "" {
		h, err := ParseHead(strings.ToLower(opts.Head))
		if err != nil {
			return nil, err
		}
		v.head = &h
	}
	for i, s := range srcs {
		v.res.Files = append(v.res.Files, s.name)
		if err := v.readSource(i); err != nil {
			return nil, err
		}
	}
	if v.head != nil && v.res.NotedHead == "" {
		v.add(Finding{Broken: true, Msg: fmt.Sprintf("the noted head %x is not the hash of any record: records were cut from the end (truncated), or the chain was rewritten", v.head[:])})
	}
	if len(v.breaks) > 0 {
		if err := v.diagnose(); err != nil {
			return nil, err
		}
	}
	return v.res, nil
}

func (v *verifier) add(f Finding) int {
	if f.Broken {
		v.res.Breaks++
	}
	if len(v.res.Findings) >= MaxFindings {
		v.res.Omitted++
		return -1
	}
	v.res.Findings = append(v.res.Findings, f)
	return len(v.res.Findings) - 1
}

// readSource is the first pass over one file.
func (v *verifier) readSource(i int) error {
	name := v.srcs[i].name
	rc, err := v.srcs[i].open()
	if err != nil {
		return err
	}
	defer rc.Close()
	sc := newChainScanner(rc)
	v.fileRecords = 0
	for {
		line, err := sc.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("%s: read: %w", name, err)
		}
		v.res.Lines++
		if sc.long || !isRecordLine(line) {
			v.tornLine(sc.n, line, sc.long)
			continue
		}
		v.record(linePos{i, sc.n}, line)
	}
	if v.tornFrom > 0 {
		v.add(Finding{Source: name, Line: v.tornFrom, Msg: v.tornLines() + ", after the last record (a record torn by a crash, which the next record will account for, or appended): not covered by the chain"})
		v.tornFrom = 0
	}
	if sc.partial > 0 {
		v.add(Finding{Source: name, Line: sc.n + 1, Msg: fmt.Sprintf("an unterminated last line (%d bytes): a record being written, or cut by a crash; not checked", sc.partial)})
	}
	return nil
}

func (v *verifier) tornLine(n int, line []byte, long bool) {
	if v.tornFrom == 0 {
		v.tornFrom, v.tornLong = n, false
		v.torn.Reset()
	}
	v.tornTo = n
	v.tornLong = v.tornLong || long
	v.torn.Write(line)
	v.torn.Write([]byte{'\n'})
}

// tornLines names the current non-record lines: "line 3 is not a JSON
// record" or "lines 3-4 are not JSON records".
func (v *verifier) tornLines() string {
	if v.tornFrom == v.tornTo {
		return fmt.Sprintf("line %d is not a JSON record", v.tornFrom)
	}
	return fmt.Sprintf("lines %d-%d are not JSON records", v.tornFrom, v.tornTo)
}

// record checks one record line and makes it the chain's end.
func (v *verifier) record(pos linePos, line []byte) {
	name := v.srcs[pos.src].name
	sum := sha256.Sum256(line)
	l, err := parseLink(line)
	v.checkTorn(name, pos.line, l, err == nil)
	if err != nil {
		v.add(Finding{Source: name, Line: pos.line, Broken: true, Msg: err.Error() + fmt.Sprintf(" (a record must start with %s<64 hex>%s<n>\",...)", prefixPrev, prefixSeq)})
	} else {
		v.checkLink(pos, line, l, sum)
	}
	v.res.Records++
	v.fileRecords++
	v.res.Head = hex.EncodeToString(sum[:])
	v.res.LastSeq = l.seq
	if v.last == nil {
		v.res.Start, v.res.FirstSeq = hex.EncodeToString(l.prev[:]), l.seq
	}
	v.last = &recordState{pos: pos, sum: sum, seq: l.seq, hasSeq: err == nil, time: lineTime(line)}
	switch {
	case v.head != nil && sum == *v.head:
		v.res.NotedHead, v.res.NotedSource, v.res.NotedLine, v.res.AfterNoted = v.res.Head, name, pos.line, 0
	case v.res.NotedHead != "":
		v.res.AfterNoted++
	}
}

// checkTorn checks that the non-record lines before a record are the
// ones it accounts for.
func (v *verifier) checkTorn(name string, n int, l chainLink, parsed bool) {
	hasTorn := parsed && l.hasTorn
	v.damaged = ""
	if v.tornFrom == 0 {
		if hasTorn {
			v.add(Finding{Source: name, Line: n, Broken: true, Msg: "the record accounts for torn lines before it (" + FieldTorn + "), but there are none: they were removed"})
		}
		return
	}
	from, lines := v.tornFrom, v.tornLines()
	v.tornFrom = 0
	v.damaged = lines
	var sum [32]byte
	v.torn.Sum(sum[:0])
	switch {
	case v.tornLong:
		v.add(Finding{Source: name, Line: from, Broken: true, Msg: fmt.Sprintf("%s, and one is longer than %d bytes, which no record is: inserted or damaged", lines, DefaultMaxLine)})
	case !hasTorn:
		v.add(Finding{Source: name, Line: from, Broken: true, Msg: fmt.Sprintf("%s, and line %d does not account for it as torn by a crash (%s): inserted, or a record there was damaged", lines, n, FieldTorn)})
	case sum != l.torn:
		v.add(Finding{Source: name, Line: from, Broken: true, Msg: fmt.Sprintf("%s, and not the torn bytes line %d accounts for (%s): changed", lines, n, FieldTorn)})
	default:
		v.damaged = ""
		v.add(Finding{Source: name, Line: from, Msg: fmt.Sprintf("%s: a record torn by a crash, which line %d accounts for (%s)", lines, n, FieldTorn)})
	}
}

// checkLink checks a record's EXECGATE_PREV and EXECGATE_SEQ against the
// record before it.
func (v *verifier) checkLink(pos linePos, line []byte, l chainLink, sum [32]byte) {
	name := v.srcs[pos.src].name
	genesis := l.prev == [32]byte{}
	brk := func(format string, a ...any) {
		v.add(Finding{Source: name, Line: pos.line, Broken: true, Msg: fmt.Sprintf(format, a...)})
	}
	switch {
	case v.last == nil || v.fileRecords == 0 && genesis:
		if !genesis {
			v.add(Finding{Source: name, Line: pos.line, Msg: fmt.Sprintf("the chain starts in an earlier file: %s is %x, that file's head", FieldPrev, l.prev[:])})
		} else if v.last != nil {
			prev := v.srcs[v.last.pos.src].name
			if t := lineTime(line); t != 0 && v.last.time != 0 && t < v.last.time {
				brk("a new chain starts (%s is genesis) with a record older than the last one of %s: the files are out of order", FieldPrev, prev)
			} else {
				v.add(Finding{Source: name, Line: pos.line, Msg: fmt.Sprintf("a new chain starts (%s is genesis): the daemon started on a new file after %s", FieldPrev, prev)})
			}
		}
		if genesis && l.seq != 1 {
			brk("the first record of a chain has %s %d, want 1", FieldSeq, l.seq)
		}
	case l.prev == v.last.sum:
		if v.last.hasSeq && l.seq != v.last.seq+1 {
			brk("%s is %d, want %d (one more than %s's)", FieldSeq, l.seq, v.last.seq+1, v.where(v.last.pos, pos))
		}
	case genesis:
		brk("a new chain (%s genesis) starts in the middle of the file: the lines before it are from another chain, or it was forged", FieldPrev)
	default:
		i := v.add(Finding{Source: name, Line: pos.line, Broken: true})
		v.breaks = append(v.breaks, linkBreak{finding: i, pos: pos, link: l, self: sum, before: *v.last, damaged: v.damaged})
		if i >= 0 {
			v.res.Findings[i].Msg = fmt.Sprintf("%s is not the hash of %s, the record before it", FieldPrev, v.where(v.last.pos, pos))
		}
	}
}

// lineTime returns a record line's __REALTIME_TIMESTAMP as the sink
// writes it (right after the chain fields), or 0.
func lineTime(line []byte) int64 {
	const key = `"` + FieldRealtime + `":"`
	head := line[:min(len(line), maxPrefix+len(key)+24)]
	i := bytes.Index(head, []byte(key))
	if i < 0 {
		return 0
	}
	rest := head[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return 0
	}
	t, err := strconv.ParseInt(string(rest[:j]), 10, 64)
	if err != nil {
		return 0
	}
	return t
}

// where names a line as seen from a line at pos.
func (v *verifier) where(p, from linePos) string {
	if p.src == from.src {
		return fmt.Sprintf("line %d", p.line)
	}
	return fmt.Sprintf("%s:%d", v.srcs[p.src].name, p.line)
}

// diagnose is the second pass: it finds the lines whose hashes the
// broken links name, and says why each link is broken.
func (v *verifier) diagnose() error {
	want := map[[32]byte][]linePos{}
	for _, b := range v.breaks {
		want[b.link.prev], want[b.self] = nil, nil
	}
	for i, s := range v.srcs {
		rc, err := s.open()
		if err != nil {
			return err
		}
		sc := newChainScanner(rc)
		for {
			line, err := sc.next()
			if err != nil {
				rc.Close()
				if !errors.Is(err, io.EOF) {
					return fmt.Errorf("%s: read: %w", s.name, err)
				}
				break
			}
			if sc.long || !isRecordLine(line) {
				continue
			}
			sum := sha256.Sum256(line)
			if locs, ok := want[sum]; ok {
				want[sum] = append(locs, linePos{i, sc.n})
			}
		}
	}
	for _, b := range v.breaks {
		if b.finding >= 0 {
			f := &v.res.Findings[b.finding]
			f.Msg += ": " + v.why(b, want)
		}
	}
	return nil
}

// why explains a broken link from where the hashes are.
func (v *verifier) why(b linkBreak, want map[[32]byte][]linePos) string {
	for _, p := range want[b.self] {
		if p.before(b.pos) {
			return fmt.Sprintf("it is a copy of %s (a duplicated record)", v.where(p, b.pos))
		}
	}
	var earlier, later *linePos
	for _, p := range want[b.link.prev] {
		switch {
		case p.before(b.before.pos):
			earlier = &p
		case b.pos.before(p) && later == nil:
			later = &p
		}
	}
	switch {
	case earlier != nil:
		between := fmt.Sprintf("the lines from %s on come", v.where(linePos{earlier.src, earlier.line + 1}, b.pos))
		switch {
		case earlier.src != b.before.pos.src:
		case earlier.line+1 == b.before.pos.line:
			between = fmt.Sprintf("line %d comes", b.before.pos.line)
		default:
			between = fmt.Sprintf("lines %d-%d come", earlier.line+1, b.before.pos.line)
		}
		return fmt.Sprintf("it follows %s, so %s between: inserted there, or moved from elsewhere", v.where(*earlier, b.pos), between)
	case later != nil:
		return fmt.Sprintf("it follows %s, which comes after it: records reordered", v.where(*later, b.pos))
	case b.damaged != "" && b.before.hasSeq && b.link.seq > b.before.seq+1:
		return fmt.Sprintf("the record it follows is not there: %s where record %d was (damaged or replaced)", b.damaged, b.link.seq-1)
	case !b.before.hasSeq:
	case b.link.seq == b.before.seq+1:
		return fmt.Sprintf("%s was changed after this record was written (or this record's %s was)", v.where(b.before.pos, b.pos), FieldPrev)
	case b.link.seq > b.before.seq+1:
		if n := b.link.seq - b.before.seq - 1; n > 1 {
			return fmt.Sprintf("records %d-%d (%d records) are missing: deleted", b.before.seq+1, b.link.seq-1, n)
		}
		return fmt.Sprintf("record %d is missing: deleted", b.before.seq+1)
	default:
		return fmt.Sprintf("its %s %d does not follow %d, and the record it follows is not there: inserted or forged", FieldSeq, b.link.seq, b.before.seq)
	}
	return fmt.Sprintf("%s was changed, or records after it were deleted", v.where(b.before.pos, b.pos))
}

// chainScanner splits a file into lines, keeping lines up to
// DefaultMaxLine and only counting longer ones.
type chainScanner struct {
	r       *bufio.Reader
	buf     []byte
	n       int  // lines returned so far
	long    bool // the last line returned was longer than DefaultMaxLine
	partial int  // at io.EOF: the length of an unterminated last line
}

func newChainScanner(r io.Reader) *chainScanner {
	return &chainScanner{r: bufio.NewReaderSize(r, 64<<10)}
}

// next returns the next complete line without its newline (nil when
// long), or io.EOF.
func (s *chainScanner) next() ([]byte, error) {
	s.buf, s.long = s.buf[:0], false
	size := 0
	for {
		chunk, err := s.r.ReadSlice('\n')
		size += len(chunk)
		if !s.long {
			s.buf = append(s.buf, chunk...)
			if len(s.buf) > DefaultMaxLine+1 {
				s.buf, s.long = s.buf[:0], true
			}
		}
		switch {
		case err == nil:
			s.n++
			if s.long {
				return nil, nil
			}
			return s.buf[:len(s.buf)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
		case errors.Is(err, io.EOF):
			s.partial = size
			return nil, io.EOF
		default:
			return nil, err
		}
	}
}
