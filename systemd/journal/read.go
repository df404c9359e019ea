package journal

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/execgate/execgate/audit"
)

// ReadOptions select what Read gets from the journal.
type ReadOptions struct {
	// Filter, Follow and Lines as for the file reader. With Follow, Poll
	// is how often Read looks for machines new in the journal (default
	// 1s; see Read).
	audit.ReadOptions

	// Directory reads the journal files in this directory
	// (journalctl --directory) instead of the system journal.
	Directory string
	// Files reads these journal files (journalctl --file).
	Files []string
	// Journalctl is the journalctl binary; default "journalctl" from PATH.
	Journalctl string
}

// baseArgs are the arguments of every journalctl run that prints records.
var baseArgs = []string{"-o", "json", "--all", "-q", "--no-pager"}

// sourceArgs name the journal to read: the directory, the files, or
// (none) the system journal.
func sourceArgs(opts ReadOptions) []string {
	var args []string
	if opts.Directory != "" {
		args = append(args, "--directory="+opts.Directory)
	}
	for _, f := range opts.Files {
		args = append(args, "--file="+f)
	}
	return args
}

// sinceArg is --since for opts.Filter.Since, in whole seconds rounded
// down: a superset; the Go filter is exact.
func sinceArg(opts ReadOptions) string {
	return "--since=@" + strconv.FormatInt(opts.Filter.Since.Unix(), 10)
}

// matchArgs are the field matches: execgated's records, and the filter's
// fields. Each is on a field of its own, so journalctl ANDs them all.
func matchArgs(opts ReadOptions) []string {
	return append([]string{audit.FieldIdentifier + "=" + audit.Identifier}, opts.Filter.Matches()...)
}

// Args returns the arguments of the one journalctl call Read makes
// without Follow. With Follow, Read starts with that same call (no
// --follow) for the records already stored, then follows each machine
// with calls of its own (see Read).
func Args(opts ReadOptions) []string {
	args := append(append([]string(nil), baseArgs...), sourceArgs(opts)...)
	if !opts.Filter.Since.IsZero() {
		args = append(args, sinceArg(opts))
	}
	if opts.Lines > 0 {
		args = append(args, "--lines="+strconv.Itoa(opts.Lines))
	}
	return append(args, matchArgs(opts)...)
}

// Read runs journalctl -o json for execgated's records and yields the
// entries that match opts.Filter (applied both as journalctl field
// matches and in Go). A *audit.LineError is yielded for a line that does
// not parse, and reading goes on; any other error (journalctl missing or
// failing, with its stderr) ends the sequence. Without Follow a cancelled
// ctx ends it with ctx.Err(). Breaking out of the loop stops journalctl.
//
// Without Follow, Read is one journalctl call (Args), which reads all
// the journal's files in one time order.
//
// With Follow, Read yields the records already stored (the last
// opts.Lines, or those since opts.Filter.Since, in time order) with that
// same call, and then follows each machine of the journal on its own:
// one `journalctl --follow _MACHINE_ID=ID` per machine, their records
// yielded as they come. journalctl --follow over several files (a
// collector's, one per host, from systemd-journal-remote) would print
// them in one time order and never show a record that lands behind one
// already printed: a lagging host's records. Read looks for new machines
// every opts.Poll and follows a new one from its first record. Each
// follower starts after the last record of its machine that Read has
// already seen (journalctl --after-cursor), so no record is yielded
// twice or lost between the two. It reads until ctx is done and then ends
// without error; an error of any journalctl ends the sequence. Records
// without _MACHINE_ID (journald always adds it) are not followed.
func Read(ctx context.Context, opts ReadOptions) iter.Seq2[*audit.Entry, error] {
	return func(yield func(*audit.Entry, error) bool) {
		if opts.Follow {
			newFollow(ctx, opts).run(yield)
			return
		}
		c := command{bin: journalctlBin(opts), args: Args(opts)}
		stopped, err := c.run(ctx, false, func(e *audit.Entry, err error) bool {
			if err == nil && !opts.Filter.Match(e.Record) {
				return true
			}
			return yield(e, err)
		})
		switch {
		case stopped:
		case ctx.Err() != nil:
			yield(nil, ctx.Err())
		case err != nil:
			yield(nil, err)
		}
	}
}

func journalctlBin(opts ReadOptions) string {
	if opts.Journalctl == "" {
		return "journalctl"
	}
	return opts.Journalctl
}

// A command is one journalctl run that prints records.
type command struct {
	bin  string
	args []string
}

// run runs the command and calls each with every entry it prints, or
// with a *audit.LineError for a line that does not parse; each returns
// false to stop it. run returns once journalctl has exited: stopped when
// each stopped it, else the error journalctl ended with (with its
// stderr), nil when it exited 0. With follow, exiting at all is an error
// (journalctl gives up following, for one, when it runs out of inotify
// watches). A cancelled ctx kills journalctl: callers check ctx first.
func (c command) run(ctx context.Context, follow bool, each func(*audit.Entry, error) bool) (stopped bool, err error) {
	cmd := exec.CommandContext(ctx, c.bin, c.args...)
	cmd.WaitDelay = 2 * time.Second
	stderr := &tailBuffer{max: 4096}
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return false, fmt.Errorf("journalctl: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return false, fmt.Errorf("journalctl: start: %w", err)
	}
	stopped, rerr := decode(stdout, each)
	if stopped || rerr != nil {
		_ = cmd.Process.Kill() // it may have exited already; Wait reports how it ended
	}
	werr := cmd.Wait()
	switch {
	case stopped:
		return true, nil
	case rerr != nil:
		return false, fmt.Errorf("journalctl: read output: %w", rerr)
	case werr == nil && !follow:
		return false, nil
	case werr == nil:
		werr = errors.New("exited while following")
	}
	return false, commandError(c.args, werr, stderr)
}

// commandError is err of journalctl run with args, with its stderr.
func commandError(args []string, err error, stderr *tailBuffer) error {
	if msg := strings.TrimSpace(stderr.String()); msg != "" {
		err = fmt.Errorf("%w: %s", err, msg)
	}
	return fmt.Errorf("journalctl %s: %w", strings.Join(args, " "), err)
}

// decode passes what r holds to each, as command.run says; err is an
// error reading r.
func decode(r io.Reader, each func(*audit.Entry, error) bool) (stopped bool, err error) {
	dec := audit.NewDecoder(r, "journalctl")
	for {
		e, err := dec.Next()
		var le *audit.LineError
		switch {
		case err == nil:
			if !each(e, nil) {
				return true, nil
			}
		case errors.As(err, &le):
			if !each(nil, err) {
				return true, nil
			}
		case errors.Is(err, io.EOF):
			return false, nil
		default:
			return false, err
		}
	}
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
