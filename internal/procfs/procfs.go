// Package procfs reads the few fields execgate needs from /proc/PID/stat
// and /proc/PID/status. Each read is one open and one read into a buffer
// on the stack: the exec check calls these for every exec it sees.
package procfs

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"

	"golang.org/x/sys/unix"
)

// Proc is what /proc/PID/stat says of a process.
type Proc struct {
	Comm  string
	PPid  int
	Start uint64 // start time in clock ticks since boot: tells a reused pid apart
}

// statSize holds any /proc/PID/stat: 52 fields of at most 20 digits and a
// command name of at most 64 bytes.
const statSize = 2048

// Stat reads /proc/PID/stat.
func Stat(pid int) (Proc, error) {
	var buf [statSize]byte
	b, err := read(pid, "/stat", buf[:])
	if err != nil {
		return Proc{}, err
	}
	p, ok := parseStat(b)
	if !ok {
		return Proc{}, fmt.Errorf("bad /proc/%d/stat", pid)
	}
	return p, nil
}

// parseStat reads "pid (comm) state ppid ... starttime ...". The command
// name may hold spaces and parentheses: it runs from the first '(' to the
// last ')'.
func parseStat(b []byte) (Proc, bool) {
	i, j := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if i < 0 || j < i {
		return Proc{}, false
	}
	p := Proc{Comm: string(b[i+1 : j])}
	rest := b[j+1:]
	// Fields after the name, from 1: state (1), ppid (2), starttime (20).
	for n := 1; n <= 20; n++ {
		var f []byte
		if f, rest = field(rest); f == nil {
			return Proc{}, false
		}
		switch n {
		case 2:
			p.PPid = int(atou(f))
		case 20:
			p.Start = atou(f)
		}
	}
	return p, true
}

// field splits the next space-separated field off b; nil when none is left.
func field(b []byte) (f, rest []byte) {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\n') {
		b = b[1:]
	}
	if len(b) == 0 {
		return nil, nil
	}
	end := bytes.IndexAny(b, " \n")
	if end < 0 {
		end = len(b)
	}
	return b[:end], b[end:]
}

// Status reads a thread's process id and parent from the head of
// /proc/PID/status (Name, Umask, State, Tgid, Ngid, Pid, PPid come first).
func Status(pid int) (tgid, ppid int, err error) {
	var buf [512]byte // the head is enough
	b, err := read(pid, "/status", buf[:])
	if err != nil {
		return 0, 0, err
	}
	tgid, ppid, ok := parseStatus(b)
	if !ok {
		return 0, 0, fmt.Errorf("bad /proc/%d/status", pid)
	}
	return tgid, ppid, nil
}

func parseStatus(b []byte) (tgid, ppid int, ok bool) {
	gotTgid := false
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		k, v, found := bytes.Cut(line, []byte(":\t"))
		switch {
		case !found:
		case string(k) == "Tgid":
			tgid, gotTgid = int(atou(v)), true
		case string(k) == "PPid":
			return tgid, int(atou(v)), gotTgid
		}
	}
	return 0, 0, false
}

// read reads the head of /proc/PID<file>: as much as buf holds.
func read(pid int, file string, buf []byte) ([]byte, error) {
	return readInto(pid, file, buf, len(buf), true)
}

// ErrTooLong is Read's answer for a file longer than its limit.
var ErrTooLong = errors.New("procfs: file longer than allowed")

// Read reads /proc/PID<file> into buf with the fewest system calls (the
// per-exec path), growing buf up to limit bytes. A longer file is
// ErrTooLong.
func Read(pid int, file string, buf []byte, limit int) ([]byte, error) {
	return readInto(pid, file, buf, limit, false)
}

// readInto is Read; with cut, a file longer than limit is cut there.
func readInto(pid int, file string, buf []byte, limit int, cut bool) ([]byte, error) {
	fd, err := unix.Open("/proc/"+strconv.Itoa(pid)+file, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	n := 0
	for {
		if n == len(buf) {
			if n >= limit {
				if cut {
					return buf, nil
				}
				var one [1]byte
				if m, _ := unix.Read(fd, one[:]); m > 0 {
					return nil, fmt.Errorf("/proc/%d%s: %w (%d bytes)", pid, file, ErrTooLong, limit)
				}
				return buf, nil
			}
			buf = append(buf, make([]byte, min(limit-n, max(n, 512)))...)
		}
		m, err := unix.Read(fd, buf[n:])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if m == 0 {
			return buf[:n], nil
		}
		n += m
	}
}

// atou parses a decimal number; anything else is 0.
func atou(b []byte) uint64 {
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0
		}
		n = n*10 + uint64(c-'0')
	}
	return n
}
