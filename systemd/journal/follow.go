package journal

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"sync"
	"time"

	"github.com/execgate/execgate/audit"
)

const (
	// fieldMachineID is journald's field for the machine a record was
	// logged on, which Read follows one by one.
	fieldMachineID = "_MACHINE_ID"
	// defaultPoll is how often a follow looks for new machines.
	defaultPoll = time.Second
	// maxStartQueries bounds the journalctl runs at once while a follow
	// starts.
	maxStartQueries = 8
)

// An item is what a journalctl run of a follow passes on: an entry, or
// an error.
type item struct {
	e   *audit.Entry
	err error
}

// A follow is Read with Follow: the records stored so far, then one
// journalctl --follow per machine, merged into one stream.
type follow struct {
	opts   ReadOptions
	bin    string
	poll   time.Duration
	ctx    context.Context // done when the follow ends
	cancel context.CancelFunc
	items  chan item
	wg     sync.WaitGroup // the goroutines, each waiting for its journalctl

	mu sync.Mutex
	// after is, by machine, the cursor of the last record of that
	// machine read before its follower starts, which the follower
	// starts after. A machine without one is followed from its first
	// record (since opts.Filter.Since).
	after   map[string]string
	started map[string]bool
}

func newFollow(ctx context.Context, opts ReadOptions) *follow {
	f := &follow{
		opts:    opts,
		bin:     journalctlBin(opts),
		poll:    opts.Poll,
		items:   make(chan item),
		after:   map[string]string{},
		started: map[string]bool{},
	}
	if f.poll <= 0 {
		f.poll = defaultPoll
	}
	f.ctx, f.cancel = context.WithCancel(ctx)
	return f
}

// run yields what the follow reads until ctx is done, yield returns
// false, or an error, which it yields unless ctx is done. Every
// journalctl it started has exited when it returns.
//
// The order makes the hand-over from the stored records to the
// followers exact: no record is yielded twice or lost. With Lines, the
// stored records are the last Lines of all machines, and a machine may
// have none among them. So first, for each machine, the cursor of its
// last matching record (tails); then the stored records, whose last
// record of a machine, when there is one, replaces that cursor. Each
// follower yields what comes after its cursor, which the stored records
// did not. (A machine's records stored between its tail and the stored
// records' read, and too old to be among the last Lines, are thus
// yielded by its follower, after the last Lines: journalctl has no
// snapshot, and they cannot be told from a lagging host's.) Without
// Lines every stored record is read (since Since): a machine not among
// them had none, and its follower starts from its first record (since
// Since).
func (f *follow) run(yield func(*audit.Entry, error) bool) {
	defer f.stop()
	machines, err := f.machines()
	if err == nil && f.opts.Lines > 0 {
		err = f.tails(machines)
	}
	if err != nil {
		f.fail(yield, err)
		return
	}
	if !f.stored(yield) {
		return
	}
	for _, m := range machines {
		f.start(m)
	}
	f.mu.Lock()
	seen := make([]string, 0, len(f.after))
	for m := range f.after {
		seen = append(seen, m)
	}
	f.mu.Unlock()
	for _, m := range seen {
		f.start(m)
	}
	f.wg.Add(1)
	go f.watch()
	f.merge(yield)
}

// stop ends every journalctl of the follow and waits for them.
func (f *follow) stop() {
	f.cancel()
	f.wg.Wait()
}

// fail yields err unless the follow was cancelled (which ends it
// without error).
func (f *follow) fail(yield func(*audit.Entry, error) bool, err error) {
	if f.ctx.Err() == nil {
		yield(nil, err)
	}
}

// stored yields the records already stored (Args, without --follow), and
// notes each machine's last one. It reports whether to go on.
func (f *follow) stored(yield func(*audit.Entry, error) bool) bool {
	c := command{bin: f.bin, args: Args(f.opts)}
	stopped, err := c.run(f.ctx, false, func(e *audit.Entry, err error) bool {
		if err != nil {
			return yield(nil, err)
		}
		f.note(e)
		return !f.opts.Filter.Match(e.Record) || yield(e, nil)
	})
	if stopped || f.ctx.Err() != nil {
		return false
	}
	if err != nil {
		yield(nil, err)
		return false
	}
	return true
}

// note takes e's cursor as where its machine's follower starts after.
// Only a record that journalctl printed for the follow's matches will
// do: after a cursor journalctl skips one matching record, whatever
// record the cursor names.
func (f *follow) note(e *audit.Entry) {
	m, cur := e.Fields[fieldMachineID], e.Fields["__CURSOR"]
	if m == "" || cur == "" {
		return
	}
	f.mu.Lock()
	f.after[m] = cur
	f.mu.Unlock()
}

// machines lists the machine ids in the journal (journalctl
// --field=_MACHINE_ID).
func (f *follow) machines() ([]string, error) {
	args := append(append([]string{"-q", "--no-pager"}, sourceArgs(f.opts)...), "--field="+fieldMachineID)
	cmd := exec.CommandContext(f.ctx, f.bin, args...)
	cmd.WaitDelay = 2 * time.Second
	stderr := &tailBuffer{max: 4096}
	cmd.Stderr = stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, commandError(args, err, stderr)
	}
	var ids []string
	for _, l := range bytes.Split(out, []byte("\n")) {
		if len(l) > 0 {
			ids = append(ids, string(l))
		}
	}
	return ids, nil
}

// tails notes, for each machine, the cursor of its last record that
// matches (journalctl --lines=1), a few machines at a time.
func (f *follow) tails(machines []string) error {
	var (
		wg    sync.WaitGroup
		sem   = make(chan struct{}, maxStartQueries)
		errMu sync.Mutex
		first error
	)
	for _, m := range machines {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			args := append(append([]string(nil), baseArgs...), sourceArgs(f.opts)...)
			args = append(append(args, "--lines=1", "--output-fields="+fieldMachineID), matchArgs(f.opts)...)
			c := command{bin: f.bin, args: append(args, fieldMachineID+"="+m)}
			_, err := c.run(f.ctx, false, func(e *audit.Entry, err error) bool {
				if err == nil {
					f.note(e)
				}
				return true
			})
			errMu.Lock()
			if err != nil && first == nil {
				first = err
			}
			errMu.Unlock()
		}()
	}
	wg.Wait()
	return first
}

// followArgs are the arguments of the follower of machine m: after the
// cursor after, or else from the first record (since Since). --merge,
// because journalctl --follow alone shows only the boot of the newest
// record of the whole journal (an implied --boot): on a collector that
// is one host's boot, and it would also miss m's records after m
// reboots.
func (f *follow) followArgs(m, after string) []string {
	args := append(append([]string(nil), baseArgs...), sourceArgs(f.opts)...)
	args = append(args, "--merge", "--follow", "--lines=all")
	switch {
	case after != "":
		args = append(args, "--after-cursor="+after)
	case !f.opts.Filter.Since.IsZero():
		args = append(args, sinceArg(f.opts))
	}
	return append(append(args, matchArgs(f.opts)...), fieldMachineID+"="+m)
}

// start starts the follower of machine m, unless it runs already.
func (f *follow) start(m string) {
	f.mu.Lock()
	if f.started[m] {
		f.mu.Unlock()
		return
	}
	f.started[m] = true
	c := command{bin: f.bin, args: f.followArgs(m, f.after[m])}
	f.mu.Unlock()
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		_, err := c.run(f.ctx, true, f.send)
		if f.ctx.Err() == nil {
			f.send(nil, err)
		}
	}()
}

// send passes an entry or an error on to merge; false once the follow
// has ended.
func (f *follow) send(e *audit.Entry, err error) bool {
	select {
	case f.items <- item{e, err}:
		return true
	case <-f.ctx.Done():
		return false
	}
}

// watch starts a follower for each machine new in the journal, every
// poll.
func (f *follow) watch() {
	defer f.wg.Done()
	t := time.NewTicker(f.poll)
	defer t.Stop()
	for {
		select {
		case <-f.ctx.Done():
			return
		case <-t.C:
		}
		machines, err := f.machines()
		if err != nil {
			if f.ctx.Err() == nil {
				f.send(nil, err)
			}
			return
		}
		for _, m := range machines {
			f.start(m)
		}
	}
}

// merge yields what the followers pass on, as it comes, until ctx is
// done, yield returns false or an error (yielded).
func (f *follow) merge(yield func(*audit.Entry, error) bool) {
	for {
		var it item
		select {
		case <-f.ctx.Done():
			return
		case it = <-f.items:
		}
		var le *audit.LineError
		switch {
		case it.err == nil:
			if f.opts.Filter.Match(it.e.Record) && !yield(it.e, nil) {
				return
			}
		case errors.As(it.err, &le):
			if !yield(nil, it.err) {
				return
			}
		default:
			yield(nil, it.err)
			return
		}
	}
}
