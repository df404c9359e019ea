package audit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"os"
	"strconv"
	"strings"
	"time"
)

// Entry is a record as read, with the JSON object it was parsed from
// (without the newline), for output that passes records through.
type Entry struct {
	*Record
	Raw []byte
}

// LineError is a line that is not a JSON object of journal fields, or is
// longer than the reader's limit. Readers report it and go on with the
// next line: it never ends a sequence by itself.
type LineError struct {
	Source string // file path, or "journalctl"
	Line   int    // 1-based
	Err    error
}

func (e *LineError) Error() string {
	return fmt.Sprintf("%s:%d: bad audit record: %v", e.Source, e.Line, e.Err)
}

func (e *LineError) Unwrap() error { return e.Err }

// DefaultMaxLine bounds a line's length for the readers; a longer line is
// skipped and reported as a *LineError. journald itself keeps entries up
// to 768 MiB; execgate's own records are far smaller.
const DefaultMaxLine = 256 << 20

// ParseLine parses one JSON object in journalctl -o json form (also the
// file sink's form) into a Record. MESSAGE, PRIORITY and
// __REALTIME_TIMESTAMP go to Message, Priority and Time; every other
// field (SYSLOG_IDENTIFIER, EXECGATE_*, and journald's own _PID, __CURSOR
// ... when present) stays in Fields.
//
// Values may be JSON strings, arrays of byte numbers (journalctl's form
// for values that are not printable UTF-8), arrays of values (a field
// repeated in one entry: the first value is kept), or null (a value
// journalctl left out as too large without --all: the field is skipped).
// A missing PRIORITY reads as PriInfo, as journalctl assumes.
func ParseLine(line []byte) (*Record, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(line, &raw); err != nil {
		return nil, err
	}
	if raw == nil {
		return nil, errors.New("not a JSON object")
	}
	r := &Record{Priority: PriInfo, Fields: make(map[string]string, len(raw))}
	for k, v := range raw {
		s, ok, err := decodeValue(v, true)
		if err != nil {
			return nil, fmt.Errorf("field %s: %w", k, err)
		}
		if !ok {
			continue
		}
		switch k {
		case FieldMessage:
			r.Message = s
		case FieldPriority:
			p, err := strconv.Atoi(s)
			if err != nil {
				return nil, fmt.Errorf("field %s: %q is not a number", k, s)
			}
			r.Priority = p
		case FieldRealtime:
			us, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("field %s: %q is not a number", k, s)
			}
			r.Time = time.UnixMicro(us)
		default:
			r.Fields[k] = s
		}
	}
	return r, nil
}

// decodeValue decodes one journal JSON value. ok is false for null.
func decodeValue(v json.RawMessage, multi bool) (s string, ok bool, err error) {
	v = bytes.TrimSpace(v)
	if len(v) == 0 {
		return "", false, errors.New("empty value")
	}
	switch v[0] {
	case '"':
		if err := json.Unmarshal(v, &s); err != nil {
			return "", false, err
		}
		return s, true, nil
	case 'n':
		return "", false, nil
	case '[':
		var elems []json.RawMessage
		if err := json.Unmarshal(v, &elems); err != nil {
			return "", false, err
		}
		if len(elems) == 0 {
			return "", true, nil
		}
		if first := bytes.TrimSpace(elems[0]); len(first) > 0 && first[0] >= '0' && first[0] <= '9' {
			b := make([]byte, len(elems))
			for i, e := range elems {
				n, err := strconv.ParseUint(string(bytes.TrimSpace(e)), 10, 8)
				if err != nil {
					return "", false, fmt.Errorf("byte array element %d: %w", i, err)
				}
				b[i] = byte(n)
			}
			return string(b), true, nil
		}
		if !multi {
			return "", false, errors.New("nested array of values")
		}
		for _, e := range elems {
			if s, ok, err := decodeValue(e, false); err != nil || ok {
				return s, ok, err
			}
		}
		return "", false, nil
	default:
		// A bare number or boolean: keep its text.
		return string(v), true, nil
	}
}

// lineReader splits a stream into lines. At EOF it keeps an unterminated
// last line, so a follower can complete it once the rest is written.
type lineReader struct {
	r        *bufio.Reader
	max      int
	buf      []byte
	skipping bool  // discarding the rest of an over-long line
	line     int   // lines returned so far
	off      int64 // bytes read so far, partial line included
}

func newLineReader(r io.Reader, max int) *lineReader {
	if max <= 0 {
		max = DefaultMaxLine
	}
	return &lineReader{r: bufio.NewReaderSize(r, 64<<10), max: max}
}

// next returns the next complete line without its newline, a *LineError
// (Source unset) for an over-long line, or the reader's error (io.EOF).
func (l *lineReader) next() ([]byte, error) {
	for {
		chunk, err := l.r.ReadSlice('\n')
		l.off += int64(len(chunk))
		if l.skipping {
			if err == nil {
				l.skipping = false
			}
		} else if len(chunk) > 0 {
			l.buf = append(l.buf, chunk...)
		}
		switch {
		case err == nil:
			if l.buf == nil { // the end of a skipped line
				continue
			}
			line := l.buf[:len(l.buf)-1]
			l.buf = nil
			l.line++
			return line, nil
		case errors.Is(err, bufio.ErrBufferFull):
			if !l.skipping && len(l.buf) > l.max {
				l.buf = nil
				l.skipping = true
				l.line++
				return nil, &LineError{Line: l.line, Err: fmt.Errorf("line longer than %d bytes", l.max)}
			}
		default:
			return nil, err
		}
	}
}

// Decoder reads records from JSON lines: journalctl -o json output or an
// audit file. Blank lines are skipped; an unterminated last line is
// treated as not yet written and dropped.
type Decoder struct {
	lr     *lineReader
	source string
}

// NewDecoder reads from r; source names it in errors.
func NewDecoder(r io.Reader, source string) *Decoder {
	return &Decoder{lr: newLineReader(r, DefaultMaxLine), source: source}
}

// Next returns the next entry, io.EOF at the end, or a *LineError for a
// bad line (call Next again to go on).
func (d *Decoder) Next() (*Entry, error) {
	for {
		line, err := d.lr.next()
		if err != nil {
			var le *LineError
			if errors.As(err, &le) {
				le.Source = d.source
			}
			return nil, err
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		rec, err := ParseLine(line)
		if err != nil {
			return nil, &LineError{Source: d.source, Line: d.lr.line, Err: err}
		}
		return &Entry{Record: rec, Raw: line}, nil
	}
}

// Filter selects records. Zero fields match everything; set fields must
// match exactly (Since: at or after).
type Filter struct {
	Agent    string    // EXECGATE_AGENT
	Decision string    // EXECGATE_DECISION: allow, deny, ask, approved, rejected, expired
	Event    Event     // EXECGATE_EVENT
	ID       string    // EXECGATE_ID
	Since    time.Time // records at or after this time
}

// Match reports whether r passes the filter.
func (f *Filter) Match(r *Record) bool {
	if f == nil {
		return true
	}
	return (f.Agent == "" || r.Fields[FieldAgent] == f.Agent) &&
		(f.Decision == "" || r.Fields[FieldDecision] == f.Decision) &&
		(f.Event == "" || r.Fields[FieldEvent] == string(f.Event)) &&
		(f.ID == "" || r.Fields[FieldID] == f.ID) &&
		(f.Since.IsZero() || !r.Time.Before(f.Since))
}

// Matches returns the filter as journal field matches (FIELD=value), for
// journalctl. Since is not a field match: pass it as --since.
func (f *Filter) Matches() []string {
	var m []string
	add := func(k, v string) {
		if v != "" {
			m = append(m, k+"="+v)
		}
	}
	add(FieldAgent, f.Agent)
	add(FieldDecision, f.Decision)
	add(FieldEvent, string(f.Event))
	add(FieldID, f.ID)
	return m
}

// ReadOptions control the readers (ReadFile here, and the journald
// reader in package systemd/journal).
type ReadOptions struct {
	Filter Filter
	// Follow keeps reading new records as they are written (tail -f)
	// until the context is done; the sequence then ends without error.
	Follow bool
	// Lines, when positive, starts with only the last Lines matching
	// records already stored (then follows, with Follow).
	Lines int
	// Poll is how often a file follower looks for new data; default 200ms.
	Poll time.Duration
}

// ReadFile reads the JSONL audit file at path and yields the entries
// matching opts.Filter. A *LineError is yielded for a bad line and
// reading goes on; any other error ends the sequence. An unterminated
// last line is a record still being written: without Follow it is left
// out; with Follow it is yielded once its newline arrives.
//
// With Follow the file is tailed until ctx is done, across truncation
// (reading restarts at its beginning) and rotation (the old file is read
// to its end, then the new file at the path from its beginning).
// Without Follow, a cancelled ctx ends the sequence with ctx.Err().
func ReadFile(ctx context.Context, path string, opts ReadOptions) iter.Seq2[*Entry, error] {
	return func(yield func(*Entry, error) bool) {
		f, err := os.Open(path)
		if err != nil {
			yield(nil, fmt.Errorf("audit file: %w", err))
			return
		}
		t := &fileTail{path: path, opts: opts, f: f, lr: newLineReader(f, DefaultMaxLine), first: true, poll: opts.Poll}
		defer t.close()
		if t.poll <= 0 {
			t.poll = 200 * time.Millisecond
		}
		for {
			if err := ctx.Err(); err != nil {
				if !opts.Follow {
					yield(nil, err)
				}
				return
			}
			line, err := t.lr.next()
			if err == nil {
				if !t.line(line, yield) {
					return
				}
				continue
			}
			var le *LineError
			if errors.As(err, &le) {
				le.Source = path
				if !yield(nil, le) {
					return
				}
				continue
			}
			if !errors.Is(err, io.EOF) {
				yield(nil, fmt.Errorf("audit file %s: read: %w", path, err))
				return
			}
			if !t.atEOF(ctx, yield) {
				return
			}
		}
	}
}

// fileTail is ReadFile's state.
type fileTail struct {
	path    string
	opts    ReadOptions
	f       *os.File
	lr      *lineReader
	tail    []*Entry // the last opts.Lines matches of the first pass
	first   bool     // still in the first pass over the file
	rotated bool     // the path names another file: finish this one first
	poll    time.Duration
	timer   *time.Timer
}

func (t *fileTail) close() {
	_ = t.f.Close() // opened read-only
	if t.timer != nil {
		t.timer.Stop()
	}
}

// line handles one complete line; false means stop.
func (t *fileTail) line(line []byte, yield func(*Entry, error) bool) bool {
	if len(bytes.TrimSpace(line)) == 0 {
		return true
	}
	rec, perr := ParseLine(line)
	if perr != nil {
		return yield(nil, &LineError{Source: t.path, Line: t.lr.line, Err: perr})
	}
	if !t.opts.Filter.Match(rec) {
		return true
	}
	e := &Entry{Record: rec, Raw: line}
	if t.first && t.opts.Lines > 0 {
		if len(t.tail) == t.opts.Lines {
			copy(t.tail, t.tail[1:])
			t.tail = t.tail[:len(t.tail)-1]
		}
		t.tail = append(t.tail, e)
		return true
	}
	return yield(e, nil)
}

// atEOF handles the end of the data: it ends the first pass, and, when
// following, waits for more, going on across rotation and truncation.
// false means stop.
func (t *fileTail) atEOF(ctx context.Context, yield func(*Entry, error) bool) bool {
	if t.first {
		t.first = false
		for _, e := range t.tail {
			if !yield(e, nil) {
				return false
			}
		}
		t.tail = nil
	}
	if !t.opts.Follow {
		return false
	}
	if t.rotated {
		// The old file is read to its end: go on with the new one.
		if nf, err := os.Open(t.path); err == nil {
			_ = t.f.Close() // opened read-only
			t.f, t.lr, t.rotated = nf, newLineReader(nf, DefaultMaxLine), false
			return true
		}
	}
	if t.timer == nil {
		t.timer = time.NewTimer(t.poll)
	} else {
		t.timer.Reset(t.poll)
	}
	select {
	case <-ctx.Done():
		return false
	case <-t.timer.C:
	}
	cur, err1 := t.f.Stat()
	now, err2 := os.Stat(t.path)
	switch {
	case err1 != nil:
		yield(nil, fmt.Errorf("audit file %s: stat: %w", t.path, err1))
		return false
	case err2 == nil && !os.SameFile(cur, now):
		t.rotated = true // read what is left of the old file first
	case cur.Size() < t.lr.off:
		if _, err := t.f.Seek(0, io.SeekStart); err != nil {
			yield(nil, fmt.Errorf("audit file %s: truncated, and seeking back failed: %w", t.path, err))
			return false
		}
		t.lr = newLineReader(t.f, DefaultMaxLine)
	}
	return true
}

// ParseSince parses a --since value, relative to now, in the local zone:
//   - RFC 3339 ("2025-06-01T18:22:25Z", fractional seconds allowed),
//     "2006-01-02 15:04:05", "2006-01-02 15:04", "2006-01-02";
//   - a time of day today: "15:04:05" or "15:04";
//   - "now", "today", "yesterday";
//   - "@UNIX" seconds since the epoch (fractions allowed);
//   - a duration ago: "-1h30m", "90s ago", "2d" (d = 24h).
func ParseSince(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	loc := now.Location()
	midnight := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, loc)
	switch s {
	case "":
		return time.Time{}, errors.New("empty time")
	case "now":
		return now, nil
	case "today":
		return midnight, nil
	case "yesterday":
		return midnight.AddDate(0, 0, -1), nil
	}
	if rest, ok := strings.CutPrefix(s, "@"); ok {
		sec, frac, _ := strings.Cut(rest, ".")
		n, err := strconv.ParseInt(sec, 10, 64)
		if err != nil {
			return time.Time{}, fmt.Errorf("bad epoch time %q", s)
		}
		var ns int64
		if frac != "" {
			if len(frac) > 9 {
				frac = frac[:9]
			}
			f, err := strconv.ParseInt(frac+strings.Repeat("0", 9-len(frac)), 10, 64)
			if err != nil {
				return time.Time{}, fmt.Errorf("bad epoch time %q", s)
			}
			ns = f
		}
		return time.Unix(n, ns).In(loc), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	for _, layout := range []string{"2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05.999999999", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, loc); err == nil {
			return t, nil
		}
	}
	for _, layout := range []string{"15:04:05", "15:04"} {
		if t, err := time.ParseInLocation(layout, s, loc); err == nil {
			return midnight.Add(time.Duration(t.Hour())*time.Hour + time.Duration(t.Minute())*time.Minute + time.Duration(t.Second())*time.Second), nil
		}
	}
	d := strings.TrimSpace(strings.TrimSuffix(s, " ago"))
	d = strings.TrimPrefix(d, "-")
	if days, ok := strings.CutSuffix(d, "d"); ok {
		if n, err := strconv.Atoi(days); err == nil && n >= 0 {
			return now.Add(-time.Duration(n) * 24 * time.Hour), nil
		}
	}
	if dur, err := time.ParseDuration(d); err == nil && dur >= 0 {
		return now.Add(-dur), nil
	}
	return time.Time{}, fmt.Errorf("cannot parse time %q (want e.g. 2025-06-01 18:22:25, 18:22, today, -1h or @1748800000)", s)
}
