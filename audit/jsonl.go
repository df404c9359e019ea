package audit

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"
)

// DefaultFile is the audit file used when there is no journald.
const DefaultFile = "/var/log/execgate/audit.jsonl"

// FieldRealtime is journald's receive time in microseconds since the
// epoch; the file sink writes it too, so one reader handles both.
const FieldRealtime = "__REALTIME_TIMESTAMP"

// ErrClosed is returned by Write after Close.
var ErrClosed = errors.New("audit: sink is closed")

// FileSink appends records to a JSONL file: one JSON object per line with
// the journal's field names (MESSAGE, PRIORITY, SYSLOG_IDENTIFIER,
// EXECGATE_*) and __REALTIME_TIMESTAMP. Values are JSON strings, or, when
// a value is not valid UTF-8, an array of byte numbers, as journalctl -o
// json prints binary values.
//
// The lines form a hash chain (EXECGATE_PREV, EXECGATE_SEQ and, after a
// torn line, EXECGATE_TORN first on each line; see the package
// documentation and VerifyFiles).
//
// Each Write issues one write(2) of the whole line on an O_APPEND
// descriptor and then fsync(2)s it; Writes are serialised by the sink's
// mutex (which also guards the chain's end), so lines never interleave
// and each links to the one written before it. A failed write is cut
// back off the file, so a record is either whole or absent. Write returns
// nil only when the line is fsync'd into a file that is still linked: a
// full disk, an immutable or read-only file, or a file removed during the
// write all give an error.
//
// When the path no longer names the open file (log rotation moved it, or
// someone removed it) the next Write reopens the path, creating it again;
// the chain goes on in the new file. The sink assumes it is the only
// writer of the file: a line written by anyone else breaks the chain.
type FileSink struct {
	path string
	// afterSync, when set, runs between fsync and the removal check
	// (tests: it removes the file at exactly that moment).
	afterSync func()

	mu     sync.Mutex
	f      *os.File
	closed bool
	chain  chain // what the next record links to
}

var _ Sink = (*FileSink)(nil)

// NewFileSink opens (creating it 0640, and its directory 0750, when
// missing) the audit file at path for appending. The chain goes on from
// the file's last record, or starts at Genesis in a new or empty file.
func NewFileSink(path string) (*FileSink, error) {
	if !filepath.IsAbs(path) {
		return nil, fmt.Errorf("audit file %q: path must be absolute", path)
	}
	s := &FileSink{path: filepath.Clean(path)}
	f, c, err := s.open()
	if err != nil {
		return nil, err
	}
	s.f, s.chain = f, c
	return s, nil
}

// Path returns the file's path.
func (s *FileSink) Path() string { return s.path }

// open opens the path for appending and returns the chain state the
// next record continues. A file whose last line lacks its newline (a
// crash mid-write) gets one, so that broken line stays alone and the next
// record starts on a line of its own. The chain then goes on from the
// file's last record line, and the bytes after it (torn lines) are
// accounted for by the next record's EXECGATE_TORN. An empty file goes on
// from the sink's own last record (Genesis for a new sink): a file that
// replaces a rotated one continues its chain.
func (s *FileSink) open() (*os.File, chain, error) {
	c := s.chain
	c.torn = nil
	dir := filepath.Dir(s.path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, c, fmt.Errorf("audit file: create directory: %w", err)
	}
	_, statErr := os.Stat(s.path)
	created := errors.Is(statErr, os.ErrNotExist)
	f, err := os.OpenFile(s.path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, c, fmt.Errorf("audit file: open: %w", err)
	}
	fail := func(err error) (*os.File, chain, error) {
		_ = f.Close() // the error that made it fail is the one to report
		return nil, c, err
	}
	st, err := f.Stat()
	if err != nil {
		return fail(fmt.Errorf("audit file: stat: %w", err))
	}
	if !st.Mode().IsRegular() {
		return fail(fmt.Errorf("audit file %s: not a regular file", s.path))
	}
	if size := st.Size(); size > 0 {
		if size, err = terminateLastLine(f, size); err != nil {
			return fail(err)
		}
		if err := c.resume(f, size); err != nil {
			return fail(fmt.Errorf("audit file %s: read its last record: %w", s.path, err))
		}
	}
	if created {
		// Make the new directory entry durable too.
		if d, err := os.Open(dir); err == nil {
			err = d.Sync()
			_ = d.Close() // read-only: only Sync's error matters
			if err != nil {
				return fail(fmt.Errorf("audit file: sync directory %s: %w", dir, err))
			}
		}
	}
	return f, c, nil
}

// terminateLastLine appends a newline to a file whose last byte is not
// one, and returns the new size.
func terminateLastLine(f *os.File, size int64) (int64, error) {
	var last [1]byte
	if _, err := f.ReadAt(last[:], size-1); err != nil {
		return size, fmt.Errorf("audit file: check last line: %w", err)
	}
	if last[0] == '\n' {
		return size, nil
	}
	if _, err := f.Write([]byte{'\n'}); err != nil {
		return size, fmt.Errorf("audit file: terminate partial last line: %w", err)
	}
	if err := f.Sync(); err != nil {
		return size, fmt.Errorf("audit file: fsync: %w", err)
	}
	return size + 1, nil
}

// Write appends r as one line and fsyncs it. A zero r.Time is set to now.
// The line starts with the chain fields (EXECGATE_PREV, EXECGATE_SEQ and,
// after a torn line, EXECGATE_TORN); the rest of the line is built before
// taking the sink's lock, so concurrent Writes only serialise on the
// prefix, one SHA-256 of the line, the write and the fsync.
func (s *FileSink) Write(r *Record) error {
	if err := r.Validate(); err != nil {
		return err
	}
	if r.Time.IsZero() {
		r.Time = time.Now()
	}
	buf := make([]byte, maxPrefix, maxPrefix+1024)
	buf = appendFields(buf, r)
	buf = append(buf, '}', '\n')
	if n := len(buf) - maxPrefix; n > DefaultMaxLine-maxPrefix {
		return fmt.Errorf("audit: %s record of %d bytes is larger than the audit file's %d-byte line limit", r.Event(), n, DefaultMaxLine)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if err := s.ensureOpen(); err != nil {
		return err
	}
	line := s.chain.link(buf, maxPrefix)
	if err := s.writeLine(line); err != nil {
		return fmt.Errorf("audit file: write %s record: %w", r.Event(), err)
	}
	// The line is in the file: the next record links to it, whatever
	// the fsync says.
	s.chain.advance(line[:len(line)-1])
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("audit file: fsync %s record: %w", r.Event(), err)
	}
	if s.afterSync != nil {
		s.afterSync()
	}
	var sys syscall.Stat_t
	if err := syscall.Fstat(int(s.f.Fd()), &sys); err != nil {
		return fmt.Errorf("audit file: stat after write: %w", err)
	}
	if sys.Nlink == 0 {
		return fmt.Errorf("audit file %s: removed while writing the %s record: %w", s.path, r.Event(), os.ErrNotExist)
	}
	return nil
}

// writeLine issues one write(2) of line. A partial write is cut back off
// the file; when even that fails, the file is closed so that the next
// Write reopens it, terminating the torn line and accounting for it.
func (s *FileSink) writeLine(line []byte) error {
	st, err := s.f.Stat()
	if err != nil {
		return fmt.Errorf("stat: %w", err)
	}
	before := st.Size()
	n, err := s.f.Write(line)
	if err == nil {
		return nil
	}
	if n > 0 {
		if terr := s.f.Truncate(before); terr != nil {
			err = fmt.Errorf("%w (and cutting the partial line failed: %v)", err, terr)
			_ = s.f.Close() // dropped: the next write reopens and terminates the line
			s.f = nil
		}
	}
	return err
}

// ensureOpen reopens the path when it no longer names the open file.
func (s *FileSink) ensureOpen() error {
	if s.f != nil {
		cur, err1 := s.f.Stat()
		now, err2 := os.Stat(s.path)
		if err1 == nil && err2 == nil && os.SameFile(cur, now) {
			return nil
		}
	}
	f, c, err := s.open()
	if err != nil {
		return err
	}
	if s.f != nil {
		_ = s.f.Close() // every line on it was fsync'd when written
	}
	s.f, s.chain = f, c
	return nil
}

// Close closes the file. Later Writes return ErrClosed.
func (s *FileSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	if err != nil {
		return fmt.Errorf("audit file: close: %w", err)
	}
	return nil
}

// AppendJSON appends r as one JSON object (no newline) in the file
// sink's format without the chain fields: __REALTIME_TIMESTAMP, PRIORITY,
// SYSLOG_IDENTIFIER and MESSAGE first, then the other fields sorted by
// name. Message, Priority and Identifier override any MESSAGE, PRIORITY,
// SYSLOG_IDENTIFIER or __REALTIME_TIMESTAMP in Fields, and the chain
// fields (EXECGATE_PREV, EXECGATE_SEQ, EXECGATE_TORN), which only the
// sink writes, are left out. A zero Time leaves out the timestamp.
func AppendJSON(b []byte, r *Record) []byte {
	b = append(b, '{')
	return append(appendFields(b, r), '}')
}

// appendFields appends AppendJSON's object without its braces.
func appendFields(b []byte, r *Record) []byte {
	first := true
	field := func(k, v string) {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = appendJSONString(b, k)
		b = append(b, ':')
		b = appendJSONValue(b, v)
	}
	if !r.Time.IsZero() {
		field(FieldRealtime, strconv.FormatInt(r.Time.UnixMicro(), 10))
	}
	field(FieldPriority, strconv.Itoa(r.Priority))
	field(FieldIdentifier, Identifier)
	field(FieldMessage, r.Message)
	keys := make([]string, 0, len(r.Fields))
	for k := range r.Fields {
		switch k {
		case FieldMessage, FieldPriority, FieldIdentifier, FieldRealtime, FieldPrev, FieldSeq, FieldTorn:
			continue
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		field(k, r.Fields[k])
	}
	return b
}

// appendJSONValue writes v as a JSON string, or as an array of byte
// numbers when v is not valid UTF-8 (journalctl's form for binary data).
func appendJSONValue(b []byte, v string) []byte {
	if utf8.ValidString(v) {
		return appendJSONString(b, v)
	}
	b = append(b, '[')
	for i := 0; i < len(v); i++ {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendUint(b, uint64(v[i]), 10)
	}
	return append(b, ']')
}

const hexDigits = "0123456789abcdef"

// appendJSONString writes a valid UTF-8 string as a JSON string, escaping
// only what JSON requires plus U+2028/U+2029 (no HTML escaping).
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
