package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// The chain fields the file sink puts at the start of every line. They
// are the sink's own: any a caller sets in Record.Fields are left out.
const (
	// FieldPrev is the lowercase hex SHA-256 of the previous record's
	// line, or Genesis.
	FieldPrev = "EXECGATE_PREV"
	// FieldSeq is the record's number in its chain, from 1.
	FieldSeq = "EXECGATE_SEQ"
	// FieldTorn, on the first record after a restart found a line torn
	// by a crash, is the SHA-256 of the bytes between the previous record
	// and this one (the torn lines, each with its newline).
	FieldTorn = "EXECGATE_TORN"
)

// Genesis is EXECGATE_PREV of the first record of a chain.
const Genesis = "0000000000000000000000000000000000000000000000000000000000000000"

// A record line starts with exactly these bytes:
//
//	{"EXECGATE_PREV":"<64 hex>","EXECGATE_SEQ":"<n>"[,"EXECGATE_TORN":"<64 hex>"],
//
// so the chain is read by position, not by decoding the object.
const (
	prefixPrev = `{"` + FieldPrev + `":"`
	prefixSeq  = `","` + FieldSeq + `":"`
	prefixTorn = `","` + FieldTorn + `":"`
)

// maxPrefix bounds the chain prefix (a 20-digit seq, TORN, the comma).
const maxPrefix = len(prefixPrev) + 64 + len(prefixSeq) + 20 + len(prefixTorn) + 64 + 2

// chain is the file sink's end of the chain: what the next record links to.
type chain struct {
	prev [32]byte  // SHA-256 of the last record line; zero is Genesis
	seq  uint64    // that record's EXECGATE_SEQ; 0 before the first
	torn *[32]byte // SHA-256 of the non-record bytes after it, if any
}

// link puts the chain prefix of the next record in front of body, which
// starts at buf[room:] (the record's fields without the opening brace),
// and returns the whole line. room must be at least maxPrefix.
func (c *chain) link(buf []byte, room int) []byte {
	var p [maxPrefix]byte
	pre := append(p[:0], prefixPrev...)
	pre = hex.AppendEncode(pre, c.prev[:])
	pre = append(pre, prefixSeq...)
	pre = strconv.AppendUint(pre, c.seq+1, 10)
	if c.torn != nil {
		pre = append(pre, prefixTorn...)
		pre = hex.AppendEncode(pre, c.torn[:])
	}
	pre = append(pre, '"', ',')
	start := room - len(pre)
	copy(buf[start:], pre)
	return buf[start:]
}

// advance makes line (without its newline), just written, the chain's end.
func (c *chain) advance(line []byte) {
	c.prev = sha256.Sum256(line)
	c.seq++
	c.torn = nil
}

// isRecordLine reports whether a complete line (without its newline) is
// a record: a JSON object of at most DefaultMaxLine bytes. Anything else
// (a line torn by a crash, a blank line, garbage) is not part of the
// chain; the sink and the verifier both decide with this function.
func isRecordLine(line []byte) bool {
	if len(line) > DefaultMaxLine {
		return false
	}
	t := bytes.TrimLeft(line, " \t\r\n")
	return len(t) > 0 && t[0] == '{' && json.Valid(line)
}

// chainLink is the chain prefix of a record line.
type chainLink struct {
	prev    [32]byte
	seq     uint64
	torn    [32]byte
	hasTorn bool
}

// parseLink reads the chain prefix of a record line.
func parseLink(line []byte) (chainLink, error) {
	var l chainLink
	rest, ok := bytes.CutPrefix(line, []byte(prefixPrev))
	if !ok {
		if bytes.Contains(line, []byte(`"`+FieldPrev+`"`)) {
			return l, errors.New(FieldPrev + " is not the record's first field")
		}
		return l, errors.New("no " + FieldPrev)
	}
	if rest, ok = cutHash(rest, &l.prev); !ok {
		return l, errors.New(FieldPrev + " is not 64 lowercase hex digits")
	}
	rest, ok = bytes.CutPrefix(rest, []byte(prefixSeq))
	if !ok {
		return l, errors.New("no " + FieldSeq + " after " + FieldPrev)
	}
	i := bytes.IndexByte(rest, '"')
	if i < 1 || i > 20 || rest[0] == '0' {
		return l, errors.New(FieldSeq + " is not a record number")
	}
	seq, err := strconv.ParseUint(string(rest[:i]), 10, 64)
	if err != nil {
		return l, errors.New(FieldSeq + " is not a record number")
	}
	l.seq = seq
	if rest, ok = bytes.CutPrefix(rest[i:], []byte(prefixTorn)); ok {
		if _, ok = cutHash(rest, &l.torn); !ok {
			return l, errors.New(FieldTorn + " is not 64 lowercase hex digits")
		}
		l.hasTorn = true
	}
	return l, nil
}

// cutHash decodes 64 lowercase hex digits and a closing quote.
func cutHash(b []byte, sum *[32]byte) ([]byte, bool) {
	if len(b) < 65 || b[64] != '"' {
		return b, false
	}
	for _, c := range b[:64] {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return b, false
		}
	}
	_, _ = hex.Decode(sum[:], b[:64]) // cannot fail: 64 hex digits checked above
	return b[64:], true
}

// tailState finds where a file's chain ends: the last record line (nil
// when there is none) and the offset just after it, where the bytes that
// are not records begin. The file's size bytes must end with a newline.
// It reads backwards from the end, so a file whose last line is a record
// costs one read of that line.
func tailState(r io.ReaderAt, size int64) (last []byte, after int64, err error) {
	end := size - 1 // the newline that ends the line being looked at
	for end >= 0 {
		start, err := lineStart(r, end)
		if err != nil {
			return nil, 0, err
		}
		if n := end - start; n <= DefaultMaxLine {
			line := make([]byte, n)
			if _, err := r.ReadAt(line, start); err != nil {
				return nil, 0, err
			}
			if isRecordLine(line) {
				return line, end + 1, nil
			}
		}
		end = start - 1
	}
	return nil, 0, nil
}

// lineStart returns the offset of the line that ends at the newline at end.
func lineStart(r io.ReaderAt, end int64) (int64, error) {
	var block [64 << 10]byte
	for pos := end; pos > 0; {
		n := min(int64(len(block)), pos)
		b := block[:n]
		if _, err := r.ReadAt(b, pos-n); err != nil {
			return 0, err
		}
		if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
			return pos - n + int64(i) + 1, nil
		}
		pos -= n
	}
	return 0, nil
}

// resume sets c to chain on after the file's existing content (size
// bytes, ending with a newline): to its last record, when it has one, and
// with the bytes after that record to account for as torn.
func (c *chain) resume(r io.ReaderAt, size int64) error {
	last, after, err := tailState(r, size)
	if err != nil {
		return err
	}
	if last != nil {
		c.prev = sha256.Sum256(last)
		c.seq = 0
		if l, err := parseLink(last); err == nil {
			c.seq = l.seq
		}
	}
	c.torn = nil
	if after < size {
		h := sha256.New()
		if _, err := io.Copy(h, io.NewSectionReader(r, after, size-after)); err != nil {
			return err
		}
		var sum [32]byte
		h.Sum(sum[:0])
		c.torn = &sum
	}
	return nil
}

// ParseHead parses a head hash as `execgate journal --verify` prints it:
// 64 hex digits.
func ParseHead(s string) ([32]byte, error) {
	var sum [32]byte
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 32 {
		return sum, fmt.Errorf("head %q: want 64 hex digits", s)
	}
	copy(sum[:], b)
	return sum, nil
}
