package sandbox

import (
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// newEmptyNetns creates a network namespace holding only a loopback that is
// down, and returns an fd that keeps it alive. Runs setns into it from the
// init stage, which is much cheaper than creating (and, asynchronously,
// destroying) a namespace per run.
func newEmptyNetns() (*os.File, error) {
	type result struct {
		f   *os.File
		err error
	}
	ch := make(chan result, 1)
	go func() {
		// Namespaces belong to threads: do the work on one locked thread
		// and put it back, so that no thread the runtime reuses (and no
		// Pdeathsig tied to a thread) is affected.
		runtime.LockOSThread()
		orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{nil, fmt.Errorf("netns: open current: %w", err)}
			return
		}
		defer orig.Close()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			ch <- result{nil, fmt.Errorf("netns: unshare: %w", err)}
			return
		}
		f, ferr := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			// Stay locked: the runtime ends this thread when we return.
			if f != nil {
				f.Close()
			}
			ch <- result{nil, fmt.Errorf("netns: restore: %w", err)}
			return
		}
		runtime.UnlockOSThread()
		if ferr != nil {
			ch <- result{nil, fmt.Errorf("netns: open new: %w", ferr)}
			return
		}
		ch <- result{f, nil}
	}()
	r := <-ch
	return r.f, r.err
}
