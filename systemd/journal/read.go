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
	audit.ReadOptions // Filter, Follow, Lines (Poll is not used)

	// Directory reads the journal files in this directory
	// (journalctl --directory) instead of the system journal.
	Directory string
	// Files reads these journal files (journalctl --file).
	Files []string
	// Journalctl is the journalctl binary; default "journalctl" from PATH.
	Journalctl string
}

// Args returns the journalctl arguments Read runs with.
func Args(opts ReadOptions) []string {
	args := []string{"-o", "json", "--all", "-q", "--no-pager"}
	if opts.Directory != "" {
		args = append(args, "--directory="+opts.Directory)
	}
	for _, f := range opts.Files {
		args = append(args, "--file="+f)
	}
	if !opts.Filter.Since.IsZero() {
		// Whole seconds, rounded down: a superset; the Go filter is exact.
		args = append(args, "--since=@"+strconv.FormatInt(opts.Filter.Since.Unix(), 10))
	}
	switch {
	case opts.Lines > 0:
		args = append(args, "--lines="+strconv.Itoa(opts.Lines))
	case opts.Follow:
		args = append(args, "--lines=all") // -f alone would start with the last 10
	}
	if opts.Follow {
		args = append(args, "--follow")
	}
	args = append(args, audit.FieldIdentifier+"="+audit.Identifier)
	return append(args, opts.Filter.Matches()...)
}

// Read runs journalctl -o json for execgated's records and yields the
// entries that match opts.Filter (applied both as journalctl field
// matches and in Go). A *audit.LineError is yielded for a line that does
// not parse, and reading goes on; any other error (journalctl missing or
// failing, with its stderr) ends the sequence. With Follow it reads until
// ctx is done and then ends without error; without Follow a cancelled ctx
// ends it with ctx.Err(). Breaking out of the loop stops journalctl.
func Read(ctx context.Context, opts ReadOptions) iter.Seq2[*audit.Entry, error] {
	return func(yield func(*audit.Entry, error) bool) {
		bin := opts.Journalctl
		if bin == "" {
			bin = "journalctl"
		}
		cmd := exec.CommandContext(ctx, bin, Args(opts)...)
		cmd.WaitDelay = 2 * time.Second
		stderr := &tailBuffer{max: 4096}
		cmd.Stderr = stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			yield(nil, fmt.Errorf("journalctl: %w", err))
			return
		}
		if err := cmd.Start(); err != nil {
			yield(nil, fmt.Errorf("journalctl: start: %w", err))
			return
		}
		stopped := false
		defer func() {
			if stopped {
				cmd.Process.Kill()
				cmd.Wait()
			}
		}()
		dec := audit.NewDecoder(stdout, "journalctl")
		for {
			e, err := dec.Next()
			if err != nil {
				var le *audit.LineError
				if errors.As(err, &le) {
					if !yield(nil, err) {
						stopped = true
						return
					}
					continue
				}
				if !errors.Is(err, io.EOF) {
					stopped = true
					yield(nil, fmt.Errorf("journalctl: read output: %w", err))
					return
				}
				break
			}
			if !opts.Filter.Match(e.Record) {
				continue
			}
			if !yield(e, nil) {
				stopped = true
				return
			}
		}
		err = cmd.Wait()
		if ctx.Err() != nil {
			if !opts.Follow {
				yield(nil, ctx.Err())
			}
			return
		}
		if err != nil {
			msg := strings.TrimSpace(stderr.String())
			if msg != "" {
				err = fmt.Errorf("%w: %s", err, msg)
			}
			yield(nil, fmt.Errorf("journalctl %s: %w", strings.Join(Args(opts), " "), err))
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
