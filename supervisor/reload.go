package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/execgate/execgate/audit"
)

// Fields of the record written after each reload the daemon triggers.
const (
	FieldReloadTrigger = "EXECGATE_RELOAD_TRIGGER" // sighup, profiles changed, ...
	FieldAgentsAdded   = "EXECGATE_AGENTS_ADDED"   // comma-separated agent names
	FieldAgentsRemoved = "EXECGATE_AGENTS_REMOVED"
)

// Reload triggers.
const (
	TriggerSignal = "sighup"
	TriggerFiles  = "profiles changed"
)

// ReloadAndReport reloads the profiles (Reload) and journals what changed
// in a reload record of its own: the trigger and the agents added and
// removed. An agent whose profile is removed is refused from then on; its
// runs already going continue to their own limits, under the profile they
// started with.
//
// The hooks WatchProfiles was given (sd_notify RELOADING=1 and READY=1)
// run around it, so a reload over the admin socket (`systemctl reload`
// runs `execgate reload`) tells systemd as a SIGHUP does.
func (s *Server) ReloadAndReport(trigger string) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	if h := s.reloadHooks.before; h != nil {
		h(trigger)
	}
	err := s.reloadAndReport(trigger)
	if h := s.reloadHooks.after; h != nil {
		h(trigger, err)
	}
	return err
}

type reloadHooks struct {
	before func(trigger string)
	after  func(trigger string, err error)
}

func (s *Server) reloadAndReport(trigger string) error {
	prev := s.reg.Load()
	err := s.Reload()
	cur := s.reg.Load()
	var added, removed []string
	for n := range cur.byName {
		if prev == nil || prev.byName[n] == nil {
			added = append(added, n)
		}
	}
	if prev != nil {
		for n := range prev.byName {
			if cur.byName[n] == nil {
				removed = append(removed, n)
			}
		}
	}
	sort.Strings(added)
	sort.Strings(removed)
	msg := fmt.Sprintf("reload (%s): %d agents", trigger, len(cur.byName))
	if len(added) > 0 {
		msg += ", added " + strings.Join(added, " ")
	}
	if len(removed) > 0 {
		msg += ", removed " + strings.Join(removed, " ") + " (new requests refused; runs going continue)"
	}
	if len(cur.errs) > 0 {
		msg += fmt.Sprintf(", %d errors", len(cur.errs))
	}
	rec := audit.New(audit.EventReload, audit.PriInfo, msg).Set(FieldReloadTrigger, trigger).
		Set(FieldAgentsAdded, strings.Join(added, ",")).Set(FieldAgentsRemoved, strings.Join(removed, ","))
	if werr := s.record(rec); werr != nil && err == nil {
		err = fmt.Errorf("audit: %w", werr)
	}
	return err
}

// ReloadOptions configures WatchProfiles.
type ReloadOptions struct {
	// Signals reload at once (SIGHUP).
	Signals <-chan os.Signal
	// Debounce is how long the agents dir must be quiet after a change
	// before the profiles are re-read (default 200ms): an editor's save
	// is several events (write a temporary, rename it over, chmod).
	Debounce time.Duration
	// MaxDelay bounds how long a stream of changes postpones a reload
	// (default 2s).
	MaxDelay time.Duration
	// Retry is how often a missing agents dir is looked for (default 1s).
	Retry time.Duration
	// Before and After run around each reload from then on, whatever
	// its trigger: signal, files, the admin socket, a remembered approval
	// (sd_notify RELOADING=1 and READY=1); After gets Reload's error.
	Before func(trigger string)
	After  func(trigger string, err error)
}

// ProfileWatcher reloads the profiles when the agents dir changes or a
// signal comes. Stop it by cancelling the context given to WatchProfiles.
type ProfileWatcher struct {
	s    *Server
	dir  string
	o    ReloadOptions
	w    *fsnotify.Watcher
	done chan struct{}

	mu       sync.Mutex
	watching bool
}

// WatchProfiles starts watching the agents dir (the directory, not the
// files: editors replace a file by renaming another over it, which a
// watch on the file would lose) and returns once the watch is in place,
// so a change made after it returns is seen. Changes to NAME.toml (any
// file the loader reads) and to the directory itself trigger a reload
// after Debounce of quiet; a signal on Signals triggers one at once. When
// the directory is missing or replaced, the watch is re-established every
// Retry and the profiles are reloaded when it is back.
func (s *Server) WatchProfiles(ctx context.Context, o ReloadOptions) (*ProfileWatcher, error) {
	if o.Debounce <= 0 {
		o.Debounce = 200 * time.Millisecond
	}
	if o.MaxDelay < o.Debounce {
		o.MaxDelay = 2 * time.Second
	}
	if o.Retry <= 0 {
		o.Retry = time.Second
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch profiles: %w", err)
	}
	s.reloadMu.Lock()
	s.reloadHooks = reloadHooks{before: o.Before, after: o.After}
	s.reloadMu.Unlock()
	pw := &ProfileWatcher{s: s, dir: filepath.Clean(s.cfg.AgentsDir), o: o, w: w, done: make(chan struct{})}
	if err := pw.add(); err != nil {
		s.note(audit.New(audit.EventError, audit.PriWarning, "profile watch: "+err.Error()+" (retrying)").
			Set(audit.FieldReason, err.Error()))
	}
	go pw.loop(ctx)
	return pw, nil
}

// Done is closed when the watcher has stopped.
func (pw *ProfileWatcher) Done() <-chan struct{} { return pw.done }

// Watching reports whether the agents dir is watched right now.
func (pw *ProfileWatcher) Watching() bool {
	pw.mu.Lock()
	defer pw.mu.Unlock()
	return pw.watching
}

func (pw *ProfileWatcher) add() error {
	err := pw.w.Add(pw.dir)
	pw.mu.Lock()
	pw.watching = err == nil
	pw.mu.Unlock()
	return err
}

// relevant reports whether an event can change what the loader reads:
// NAME.toml files (not hidden ones, which the loader skips, nor editors'
// swap and backup files), Kubernetes-style "..data" symlink swaps, and
// the directory itself.
func (pw *ProfileWatcher) relevant(ev fsnotify.Event) bool {
	if filepath.Clean(ev.Name) == pw.dir {
		return true
	}
	n := filepath.Base(ev.Name)
	return strings.HasPrefix(n, "..") || strings.HasSuffix(n, ".toml") && !strings.HasPrefix(n, ".")
}

func (pw *ProfileWatcher) reload(trigger string) {
	if err := pw.s.ReloadAndReport(trigger); err != nil {
		pw.s.logf("reload: %v", err)
	}
}

// debounce fires once the changes have been quiet for quiet, and at the
// latest maxDelay after the first of them.
type debounce struct {
	timer           *time.Timer
	quiet, maxDelay time.Duration
	first           time.Time // the first change not reloaded yet
	pending         bool
}

func newDebounce(quiet, maxDelay time.Duration) *debounce {
	d := &debounce{timer: time.NewTimer(time.Hour), quiet: quiet, maxDelay: maxDelay}
	d.timer.Stop()
	return d
}

// arm notes a change.
func (d *debounce) arm() {
	now := time.Now()
	if !d.pending {
		d.pending, d.first = true, now
	}
	wait := d.quiet
	if left := d.first.Add(d.maxDelay).Sub(now); left < wait {
		wait = max(left, 0)
	}
	d.timer.Reset(wait)
}

// reset forgets the changes noted: a reload is under way.
func (d *debounce) reset() {
	d.timer.Stop()
	d.pending = false
}

func (pw *ProfileWatcher) loop(ctx context.Context) {
	defer close(pw.done)
	defer func() { _ = pw.w.Close() }() // the watch ends with the loop; nothing is left to tell
	d := newDebounce(pw.o.Debounce, pw.o.MaxDelay)
	retry := time.NewTicker(pw.o.Retry)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			d.reset()
			return
		case _, ok := <-pw.o.Signals:
			if !ok {
				pw.o.Signals = nil
				continue
			}
			d.reset()
			pw.reload(TriggerSignal)
		case ev, ok := <-pw.w.Events:
			if !ok {
				return
			}
			if pw.changed(ev) {
				d.arm()
			}
		case err, ok := <-pw.w.Errors:
			if !ok {
				return
			}
			// An overflow lost events: reload to be sure.
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				d.arm()
			} else {
				pw.s.logf("profile watch: %v", err)
			}
		case <-retry.C:
			if !pw.Watching() && pw.add() == nil {
				d.arm() // the directory is back: read what it holds now
			}
		case <-d.timer.C:
			d.pending = false
			pw.reload(TriggerFiles)
		}
	}
}

// changed reports whether an event calls for a reload, and watches the
// directory anew when it went.
func (pw *ProfileWatcher) changed(ev fsnotify.Event) bool {
	if !pw.relevant(ev) {
		return false
	}
	if filepath.Clean(ev.Name) == pw.dir && ev.Has(fsnotify.Remove|fsnotify.Rename) {
		// The directory went (or was moved away): its watch is gone; look
		// for the new one at once and then every Retry.
		_ = pw.w.Remove(pw.dir) // the watch went with the directory: this only forgets it
		_ = pw.add()            // if it fails, Retry looks again
	}
	return true
}
