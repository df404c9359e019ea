package sandbox

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// The parent and the init speak a small length-prefixed encoding rather
// than JSON: decoding JSON costs the init about 100µs of reflection on
// every run.

const wireMagic = "egi4"

func (c *initConfig) marshal() []byte {
	w := wireWriter{b: make([]byte, 0, 1024)}
	w.b = append(w.b, wireMagic...)
	w.str(c.Shell)
	w.strs(c.Argv)
	w.strs(c.Env)
	w.str(c.Dir)
	w.int(int64(c.UID))
	w.int(int64(c.GID))
	w.targets(c.ReadOnly)
	w.targets(c.MaskFiles)
	w.targets(c.MaskDirs)
	w.targets(c.NetFiles)
	w.strs(c.NetData)
	w.targets(c.Overlays)
	w.strs(c.Uppers)
	w.strs(c.Works)
	w.int(int64(c.NetNSFD))
	w.int(int64(c.NotifyFD))
	w.str(string(c.Seccomp))
	w.str(string(c.NotifyProg))
	return w.b
}

func (c *initConfig) unmarshal(b []byte) error {
	if !strings.HasPrefix(string(b), wireMagic) {
		return errors.New("bad config header")
	}
	r := wireReader{b: b[len(wireMagic):]}
	c.Shell = r.str()
	c.Argv = r.strs()
	c.Env = r.strs()
	c.Dir = r.str()
	c.UID = uint32(r.int())
	c.GID = uint32(r.int())
	c.ReadOnly = r.targets()
	c.MaskFiles = r.targets()
	c.MaskDirs = r.targets()
	c.NetFiles = r.targets()
	c.NetData = r.strs()
	c.Overlays = r.targets()
	c.Uppers = r.strs()
	c.Works = r.strs()
	c.NetNSFD = int(r.int())
	c.NotifyFD = int(r.int())
	c.Seccomp = []byte(r.str())
	if p := r.str(); p != "" {
		c.NotifyProg = []byte(p)
	}
	if r.err == nil && len(r.b) != 0 {
		r.err = errors.New("trailing bytes")
	}
	return r.err
}

type wireWriter struct{ b []byte }

func (w *wireWriter) int(v int64) { w.b = binary.AppendVarint(w.b, v) }

func (w *wireWriter) str(s string) {
	w.b = binary.AppendUvarint(w.b, uint64(len(s)))
	w.b = append(w.b, s...)
}

func (w *wireWriter) strs(ss []string) {
	w.b = binary.AppendUvarint(w.b, uint64(len(ss)))
	for _, s := range ss {
		w.str(s)
	}
}

func (w *wireWriter) targets(ts []mountTarget) {
	w.b = binary.AppendUvarint(w.b, uint64(len(ts)))
	for _, t := range ts {
		w.str(t.Path)
		w.b = binary.AppendUvarint(w.b, t.Dev)
		w.b = binary.AppendUvarint(w.b, t.Ino)
	}
}

type wireReader struct {
	b   []byte
	err error
}

func (r *wireReader) fail() {
	if r.err == nil {
		r.err = errors.New("truncated config")
	}
	r.b = nil
}

func (r *wireReader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *wireReader) int() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *wireReader) str() string {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.fail()
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

func (r *wireReader) strs() []string {
	n := r.uvarint()
	if n > uint64(len(r.b)) { // each string takes at least one byte
		r.fail()
		return nil
	}
	var out []string
	for i := uint64(0); i < n && r.err == nil; i++ {
		out = append(out, r.str())
	}
	return out
}

func (r *wireReader) targets() []mountTarget {
	n := r.uvarint()
	if n > uint64(len(r.b))/3 { // each target takes at least three bytes
		r.fail()
		return nil
	}
	var out []mountTarget
	for i := uint64(0); i < n && r.err == nil; i++ {
		out = append(out, mountTarget{Path: r.str(), Dev: r.uvarint(), Ino: r.uvarint()})
	}
	return out
}

// initStatus is what the init reports on its status pipe, one line each:
// "error <message>" before the shell runs, "done <exit> <signal>" after.
type initStatus struct {
	Error  string
	Exit   int
	Signal int
	Done   bool
}

func (s initStatus) line() []byte {
	if s.Error != "" {
		return []byte("error " + strings.ReplaceAll(s.Error, "\n", " ") + "\n")
	}
	return []byte(fmt.Sprintf("done %d %d\n", s.Exit, s.Signal))
}

// parseStatus reads the init's lines; the last valid one counts.
func parseStatus(raw []byte) initStatus {
	var st initStatus
	for _, l := range strings.Split(string(raw), "\n") {
		kind, rest, _ := strings.Cut(l, " ")
		switch kind {
		case "error":
			st = initStatus{Error: rest}
		case "done":
			e, sig, ok := strings.Cut(rest, " ")
			exit, err1 := strconv.Atoi(e)
			signal, err2 := strconv.Atoi(sig)
			if ok && err1 == nil && err2 == nil {
				st = initStatus{Exit: exit, Signal: signal, Done: true}
			}
		}
	}
	return st
}
