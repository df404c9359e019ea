//go:build linux

package changes

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// ErrNotCleaned wraps the error of an apply that landed but whose
// backups or layers could not all be removed; Recover finishes it.
var ErrNotCleaned = errors.New("changes: applied, but not cleaned up")

// applyHook, set by tests, runs after each step ("intent"; "aside" with
// the op's index, between its two renames; "op" with the number done;
// "committed"); errCrash from it stops Apply on the spot, as a crash
// would.
var (
	applyHook func(step string, n int) error
	errCrash  = errors.New("changes: simulated crash")
)

// Apply lands the set, which Compute made from this run, in the real
// tree: all of it or, on a conflict or an error, none of it. See the
// package documentation for the conflict rule and the crash protocol.
func (r *Run) Apply(s *Set) error {
	if s == nil || s.run != r {
		return errors.New("changes: apply: the set was not computed from this run")
	}
	if r.aborted {
		return errors.New("changes: apply: an earlier apply of this run was rolled back (which moved the real entries): discard it")
	}
	if _, _, err := r.settle(); err != nil { // an earlier apply cut short
		return fmt.Errorf("changes: apply: %w", err)
	}
	a, err := r.openApplier()
	if err != nil {
		return fmt.Errorf("changes: apply: %w", err)
	}
	defer a.close()
	if err := a.conflicts(s); err != nil {
		return err
	}
	ops, err := r.ops(s)
	if err == nil {
		err = s.tidy()
	}
	if err != nil {
		return fmt.Errorf("changes: apply: %w", err)
	}
	lg, err := r.startLog(ops)
	if err != nil {
		return fmt.Errorf("changes: apply: %w", err)
	}
	defer lg.close()
	if err := a.run(lg, ops); err != nil {
		if errors.Is(err, errCrash) {
			return err
		}
		return a.abort(ops, err)
	}
	if _, err := a.finish(ops); err != nil {
		return fmt.Errorf("%w: %w", ErrNotCleaned, err)
	}
	if err := r.remove(); err != nil {
		return fmt.Errorf("%w: %w", ErrNotCleaned, err)
	}
	return nil
}

// applier works in the real trees of a run.
type applier struct {
	r      *Run
	trees  []*tree
	staged bool
}

func (r *Run) openApplier() (*applier, error) {
	a := &applier{r: r}
	for _, l := range r.Layers {
		t, err := openTree(l)
		if err != nil {
			a.close()
			return nil, err
		}
		a.trees = append(a.trees, t)
	}
	return a, nil
}

func (a *applier) close() {
	for _, t := range a.trees {
		t.close()
	}
}

func (a *applier) tree(o *op) (*tree, error) {
	if o.Layer >= len(a.trees) {
		return nil, fmt.Errorf("op on layer %d of %d", o.Layer, len(a.trees))
	}
	return a.trees[o.Layer], nil
}

// ops turns the set into steps: implied paths move with their directory.
func (r *Run) ops(s *Set) ([]op, error) {
	var ops []op
	for i := range s.Changes {
		c := &s.Changes[i]
		if c.Implied {
			continue
		}
		l := r.Layers[c.Layer]
		o := op{Layer: c.Layer, Rel: c.Path, OldType: c.OldType, Beside: l.Copy}
		n := len(ops)
		switch {
		case c.Kind == Deleted:
			o.Op, o.Backup = opDelete, r.aside(l, n, "old")
		case c.Kind == Metadata && !c.Xattrs:
			o.Op, o.Mode, o.UID, o.GID = opAttr, c.Mode, c.UID, c.GID
			o.OldMode, o.OldUID, o.OldGID = c.OldMode, c.OldUID, c.OldGID
		default:
			o.Op, o.New = opSwap, filepath.Join(l.Upper, c.Path)
			if l.Copy {
				o.Src, o.New = o.New, r.aside(l, n, "new")
			} else {
				st, err := lstat(o.New)
				if err != nil {
					return nil, err
				}
				o.NewIno = st.ino
			}
			if c.OldType != "" {
				o.Backup = r.aside(l, n, "old")
			}
		}
		ops = append(ops, o)
	}
	for _, l := range r.Layers {
		if !l.Copy {
			if err := os.MkdirAll(l.backupDir(), 0o700); err != nil {
				return nil, err
			}
		}
	}
	return ops, nil
}

// aside names where an entry waits during an apply: in the layer's
// backup directory, or in copy mode beside the real path.
func (r *Run) aside(l Layer, n int, what string) string {
	if l.Copy {
		return besidePrefix + r.ID + "-" + strconv.Itoa(n) + "." + what
	}
	return filepath.Join(l.backupDir(), strconv.Itoa(n))
}

// tidy removes, in the upper layers, what must not reach the real tree.
func (s *Set) tidy() error {
	for _, c := range s.cleanup {
		if c.remove {
			if err := os.Remove(c.path); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
			continue
		}
		for _, x := range c.xattrs {
			if err := unix.Lremovexattr(c.path, x); err != nil && err != unix.ENODATA && err != unix.ENOENT {
				return fmt.Errorf("remove %s from %s: %w", x, c.path, err)
			}
		}
	}
	return nil
}

// logFile is the open intent log.
type logFile struct{ *os.File }

func (r *Run) logPath() string { return filepath.Join(r.Dir, logName) }

// startLog writes and syncs the intent before anything moves.
func (r *Run) startLog(ops []op) (*logFile, error) {
	f, err := os.OpenFile(r.logPath(), os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	lg := &logFile{f}
	if err := lg.append(encodeIntent(r.ID, ops), true); err != nil {
		lg.close()
		return nil, err
	}
	if err := syncDir(r.Dir); err != nil {
		lg.close()
		return nil, err
	}
	return lg, nil
}

// close: what must be durable was synced when appended.
func (lg *logFile) close() { _ = lg.Close() }

func (lg *logFile) append(b []byte, sync bool) error {
	if _, err := lg.Write(b); err != nil {
		return fmt.Errorf("apply log: %w", err)
	}
	if sync {
		if err := lg.Sync(); err != nil {
			return fmt.Errorf("apply log: %w", err)
		}
	}
	return nil
}

// run stages copy mode's copies, does every op, makes them durable and
// commits.
func (a *applier) run(lg *logFile, ops []op) error {
	if err := hook("intent", 0); err != nil {
		return err
	}
	if a.r.hasCopy() {
		inos, err := a.stage(ops)
		if err != nil {
			return err
		}
		if err := lg.append(encodeRecord(logRecord{Staged: true, Inos: inos}), true); err != nil {
			return err
		}
		a.staged = true
	}
	for i := range ops {
		if err := a.do(&ops[i], i); err != nil {
			return err
		}
		// Progress, every 256 ops and unsynced: recovery reads the tree.
		if i%256 == 255 || i == len(ops)-1 {
			if err := lg.append(encodeRecord(logRecord{Done: &i}), false); err != nil {
				return err
			}
		}
		if err := hook("op", i+1); err != nil {
			return err
		}
	}
	if err := a.syncAll(ops); err != nil {
		return err
	}
	if err := lg.append(encodeRecord(logRecord{Committed: true}), true); err != nil {
		return err
	}
	return hook("committed", len(ops))
}

func hook(step string, n int) error {
	if applyHook == nil {
		return nil
	}
	return applyHook(step, n)
}

func (r *Run) hasCopy() bool {
	for _, l := range r.Layers {
		if l.Copy {
			return true
		}
	}
	return false
}

// abort rolls back what was done; the run stays, for Discard.
func (a *applier) abort(ops []op, cause error) error {
	a.r.aborted = true
	if _, err := a.undoAll(ops); err != nil {
		return fmt.Errorf("changes: apply: %w; rolling back: %w (Recover retries)", cause, err)
	}
	if err := os.Remove(a.r.logPath()); err != nil {
		return fmt.Errorf("changes: apply: %w; rolled back, but: %w", cause, err)
	}
	var ce *ConflictError
	if errors.As(cause, &ce) {
		return cause
	}
	return fmt.Errorf("changes: apply: %w (rolled back)", cause)
}

// do performs one op, after checking its path once more.
func (a *applier) do(o *op, i int) error {
	t, err := a.tree(o)
	if err != nil {
		return err
	}
	if err := a.check(o.Layer, o.Rel, o.OldType, o.attrs()); err != nil {
		return err
	}
	pfd, name, err := t.parent(o.Rel)
	if err != nil {
		return err
	}
	abs := filepath.Join(t.path, o.Rel)
	switch o.Op {
	case opAttr:
		return setAttr(pfd, name, abs, o.UID, o.GID, o.Mode, o.OldType == Symlink)
	case opDelete:
		return move(pfd, name, o.at(pfd, o.Backup), abs)
	}
	if o.OldType != "" {
		if err := move(pfd, name, o.at(pfd, o.Backup), abs); err != nil {
			return err
		}
		if err := hook("aside", i); err != nil {
			return err
		}
	}
	n := o.at(pfd, o.New)
	err = renameNoReplace(n.fd, n.name, pfd, name)
	if err == unix.EEXIST || err == unix.ENOTEMPTY {
		return &ConflictError{Paths: []string{abs}}
	}
	if err != nil {
		return fmt.Errorf("move %s in to %s: %w", o.New, abs, err)
	}
	return nil
}

// at resolves one of an op's own paths.
type dirName struct {
	fd   int
	name string
}

func (o *op) at(pfd int, p string) dirName {
	if o.Beside {
		return dirName{pfd, p}
	}
	return dirName{unix.AT_FDCWD, p}
}

func move(pfd int, name string, to dirName, abs string) error {
	if err := renameNoReplace(pfd, name, to.fd, to.name); err != nil {
		return fmt.Errorf("move %s aside to %s: %w", abs, to.name, err)
	}
	return nil
}

// setAttr sets owner then mode (chown clears set-id bits).
func setAttr(pfd int, name, abs string, uid, gid, mode uint32, symlink bool) error {
	if err := unix.Fchownat(pfd, name, int(uid), int(gid), unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("chown %s: %w", abs, err)
	}
	if symlink {
		return nil
	}
	if err := unix.Fchmodat(pfd, name, mode, 0); err != nil {
		return fmt.Errorf("chmod %s: %w", abs, err)
	}
	return nil
}

// attrs is what an attr op on a directory expects to find.
func (o *op) attrs() *[3]uint32 {
	if o.Op != opAttr || o.OldType != Dir {
		return nil
	}
	return &[3]uint32{o.OldMode, o.OldUID, o.OldGID}
}

// syncAll makes the ops' names and attributes durable before the commit.
func (a *applier) syncAll(ops []op) error {
	seen := map[string]bool{}
	for i := range ops {
		o := &ops[i]
		t := a.trees[o.Layer]
		dir := filepath.Dir(o.Rel)
		if o.Op == opAttr {
			dir = o.Rel
		}
		key := strconv.Itoa(o.Layer) + "\x00" + dir
		if seen[key] || (o.Op == opAttr && o.OldType != Dir) {
			continue
		}
		seen[key] = true
		fd, err := openBeneath(t.fd, dir, unix.O_RDONLY|unix.O_DIRECTORY)
		if err == nil {
			err = unix.Fsync(fd)
			closeFD(fd)
		}
		if err != nil {
			return fmt.Errorf("sync %s: %w", filepath.Join(t.path, dir), err)
		}
	}
	for _, l := range a.r.Layers {
		if !l.Copy {
			if err := syncDir(l.backupDir()); err != nil {
				return err
			}
		}
	}
	return nil
}

// conflicts checks every path of the set against the real tree.
func (a *applier) conflicts(s *Set) error {
	var bad []string
	parents := map[string]bool{}
	for i := range s.Changes {
		c := &s.Changes[i]
		if c.Kind == Created && c.Implied {
			continue // its created parent is checked
		}
		var attrs *[3]uint32
		if c.Kind == Metadata && c.Type == Dir {
			attrs = &[3]uint32{c.OldMode, c.OldUID, c.OldGID}
		}
		err := a.check(c.Layer, c.Path, c.OldType, attrs)
		if c.Kind == Created && err == nil {
			err = a.checkParent(c.Layer, filepath.Dir(c.Path), parents)
		}
		var ce *ConflictError
		switch {
		case errors.As(err, &ce):
			bad = append(bad, ce.Paths...)
		case err != nil:
			return fmt.Errorf("changes: apply: %w", err)
		}
	}
	if len(bad) > 0 {
		return &ConflictError{Paths: bad}
	}
	return nil
}

// check says whether rel is as the run found it: absent for a created
// path; else there, of the same type and with a ctime before the start.
// A directory whose mode and owner change is compared by those instead
// (its ctime moves whenever an entry in it does).
func (a *applier) check(layer int, rel string, oldType Type, attrs *[3]uint32) error {
	t, l := a.trees[layer], a.r.Layers[layer]
	conflict := &ConflictError{Paths: []string{filepath.Join(t.path, rel)}}
	st, err := t.stat(rel)
	switch {
	case err == unix.ENOENT:
		if oldType == "" {
			return nil
		}
		return conflict
	case err != nil:
		return fmt.Errorf("stat %s: %w", filepath.Join(t.path, rel), err)
	case oldType == "" || st.typ() != oldType:
		return conflict
	case attrs != nil:
		if *attrs != [3]uint32{st.perm(), st.uid, st.gid} || (st.hasBtime && atOrAfter(st.btime, l.Start)) {
			return conflict
		}
		return nil
	case atOrAfter(st.ctime, l.Start):
		return conflict
	}
	return nil
}

// checkParent: a created path's parent must still be the directory the
// run saw. Its ctime moves whenever anything is added beside, so where
// the file system records birth times that is what says it is the same.
func (a *applier) checkParent(layer int, dir string, seen map[string]bool) error {
	key := strconv.Itoa(layer) + "\x00" + dir
	if dir == "." || seen[key] {
		return nil
	}
	seen[key] = true
	t, l := a.trees[layer], a.r.Layers[layer]
	conflict := &ConflictError{Paths: []string{filepath.Join(t.path, dir)}}
	st, err := t.stat(dir)
	switch {
	case err == unix.ENOENT:
		return conflict
	case err != nil:
		return fmt.Errorf("stat %s: %w", filepath.Join(t.path, dir), err)
	case st.typ() != Dir:
		return conflict
	case st.hasBtime && atOrAfter(st.btime, l.Start), !st.hasBtime && atOrAfter(st.ctime, l.Start):
		return conflict
	}
	return nil
}

// besidePath is where a beside name is.
func besidePath(t *tree, o *op, name string) string {
	return filepath.Join(t.path, filepath.Dir(o.Rel), name)
}
