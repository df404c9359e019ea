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
// Each Write issues one write(2) of the whole line on an O_APPEND
// descriptor and then fsync(2)s it; Writes are serialised, so lines never
// interleave. A failed write is cut back off the file, so a record is
// either whole or absent. Write returns nil only when the line is fsync'd
// into a file that is still linked: a full disk, an immutable or
// read-only file, or a file removed during the write all give an error.
//
// When the path no longer names the open file (log rotation moved it, or
// someone removed it) the next Write reopens the path, creating it again.
// The sink assumes it is the only writer of the file.
type FileSink struct {
	path string
	// afterSync, when set, runs between fsync and the removal check
	// (tests: it removes the file at exactly that moment).
	afterSync func()

	mu     sync.Mutex
	f      *os.File
	closed bool
}

var _ Sink = (*FileSink)(nil)

// NewFileSink opens (creating it 0640, and its directory 0750, when
// missing) the audit file at path for appending.
func NewFileSink(path string) (*FileSink, error) {
	if !filepath.IsAbs(path) {
		return nil, fmt.Errorf("audit file %q: path must be absolute", path)
	}
	s := &FileSink{path: filepath.Clean(path)}
	f, err := s.open()
	if err != nil {
		return nil, err
	}
	s.f = f
	return s, nil
}

// Path returns the file's path.
func (s *FileSink) Path() string { return s.path }

// open opens the path for appending. A file whose last line lacks its
// newline (a crash mid-write by an older writer) gets one, so that
// broken line stays alone and the next record starts on a line of its own.
func (s *FileSink) open() (*os.File, error) {
	dir := filepath.Dir(s.path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("audit file: create directory: %w", err)
	}
	_, statErr := os.Stat(s.path)
	created := errors.Is(statErr, os.ErrNotExist)
	f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("audit file: open: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("audit file: stat: %w", err)
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("audit file %s: not a regular file", s.path)
	}
	if st.Size() > 0 {
		if err := terminateLastLine(f, s.path, st.Size()); err != nil {
			f.Close()
			return nil, err
		}
	}
	if created {
		// Make the new directory entry durable too.
		if d, err := os.Open(dir); err == nil {
			err = d.Sync()
			d.Close()
			if err != nil {
				f.Close()
				return nil, fmt.Errorf("audit file: sync directory %s: %w", dir, err)
			}
		}
	}
	return f, nil
}

func terminateLastLine(f *os.File, path string, size int64) error {
	r, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("audit file: check last line: %w", err)
	}
	defer r.Close()
	var last [1]byte
	if _, err := r.ReadAt(last[:], size-1); err != nil {
		return fmt.Errorf("audit file: check last line: %w", err)
	}
	if last[0] == '\n' {
		return nil
	}
	if _, err := f.Write([]byte{'\n'}); err != nil {
		return fmt.Errorf("audit file: terminate partial last line: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("audit file: fsync: %w", err)
	}
	return nil
}

// Write appends r as one line and fsyncs it. A zero r.Time is set to now.
func (s *FileSink) Write(r *Record) error {
	if err := r.Validate(); err != nil {
		return err
	}
	if r.Time.IsZero() {
		r.Time = time.Now()
	}
	line := AppendJSON(nil, r)
	line = append(line, '\n')

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if err := s.ensureOpen(); err != nil {
		return err
	}
	f := s.f
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("audit file: stat: %w", err)
	}
	before := st.Size()
	if n, err := f.Write(line); err != nil {
		if n > 0 {
			// Cut the partial line back off so no torn record remains.
			if terr := f.Truncate(before); terr != nil {
				err = fmt.Errorf("%w (and cutting the partial line failed: %v)", err, terr)
			}
		}
		return fmt.Errorf("audit file: write %s record: %w", r.Event(), err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("audit file: fsync %s record: %w", r.Event(), err)
	}
	if s.afterSync != nil {
		s.afterSync()
	}
	var sys syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &sys); err != nil {
		return fmt.Errorf("audit file: stat after write: %w", err)
	}
	if sys.Nlink == 0 {
		return fmt.Errorf("audit file %s: removed while writing the %s record: %w", s.path, r.Event(), os.ErrNotExist)
	}
	return nil
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
	f, err := s.open()
	if err != nil {
		return err
	}
	if s.f != nil {
		s.f.Close()
	}
	s.f = f
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
// sink's format: __REALTIME_TIMESTAMP, PRIORITY, SYSLOG_IDENTIFIER and
// MESSAGE first, then the other fields sorted by name. Message, Priority
// and Identifier override any MESSAGE, PRIORITY, SYSLOG_IDENTIFIER or
// __REALTIME_TIMESTAMP in Fields. A zero Time leaves out the timestamp.
func AppendJSON(b []byte, r *Record) []byte {
	b = append(b, '{')
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
		case FieldMessage, FieldPriority, FieldIdentifier, FieldRealtime:
			continue
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		field(k, r.Fields[k])
	}
	return append(b, '}')
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
