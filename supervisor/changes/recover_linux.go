//go:build linux

package changes

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Recover settles, at daemon start, every run a previous daemon left in
// stateDir: an apply that was committed is finished (its backups go), one
// that was cut short is rolled back (the old entries return, what moved
// in goes back to its layer); then the run's directories are removed. It
// also removes runs of this state dir that only a mount root's
// .execgate-changes still holds. A run that cannot be settled keeps its
// directories (the next start tries again) and its Recovered carries
// the error, which the returned error joins.
func Recover(stateDir string) ([]Recovered, error) {
	stateDir, err := filepath.Abs(stateDir)
	if err != nil {
		return nil, fmt.Errorf("changes: recover: %w", err)
	}
	base := filepath.Join(stateDir, changesDir)
	ents, err := os.ReadDir(base)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("changes: recover: %w", err)
	}
	var out []Recovered
	roots := map[string]bool{}
	for _, e := range ents {
		if e.IsDir() {
			out = append(out, recoverRun(stateDir, e.Name(), roots))
		}
	}
	out = append(out, sweepRoots(stateDir, roots)...)
	var errs []error
	for _, rec := range out {
		if rec.Err != nil {
			errs = append(errs, fmt.Errorf("run %s: %w", rec.RunID, rec.Err))
		}
	}
	if len(errs) > 0 {
		return out, fmt.Errorf("changes: recover: %w", errors.Join(errs...))
	}
	return out, nil
}

func recoverRun(stateDir, id string, roots map[string]bool) Recovered {
	dir := filepath.Join(stateDir, changesDir, id)
	b, err := os.ReadFile(filepath.Join(dir, manifestName))
	var m *manifest
	if err == nil {
		m, err = parseManifest(b)
	}
	if err != nil || m.Run != id {
		// Prepare writes the manifest before it makes any layer.
		return Recovered{RunID: id, Action: "removed", Err: removeTree(dir)}
	}
	r := &Run{ID: id, Dir: dir, Layers: m.Layers, stateDir: stateDir}
	for _, l := range r.Layers {
		if l.Dir != dir {
			roots[filepath.Dir(l.Dir)] = true
		}
	}
	action, n, err := r.settle()
	if err != nil {
		return Recovered{RunID: id, Action: action, Ops: n, Err: err}
	}
	return Recovered{RunID: id, Action: action, Ops: n, Err: r.remove()}
}

// sweepRoots removes run directories in the roots that name this state
// dir as their owner and that it no longer lists.
func sweepRoots(stateDir string, roots map[string]bool) []Recovered {
	var out []Recovered
	for root := range roots {
		ents, _ := os.ReadDir(root) // a root that is gone holds nothing
		for _, e := range ents {
			id := e.Name()
			if _, err := os.Lstat(filepath.Join(stateDir, changesDir, id)); err == nil || !e.IsDir() {
				continue
			}
			b, err := os.ReadFile(filepath.Join(root, id, manifestName))
			if err != nil {
				continue
			}
			if m, err := parseManifest(b); err == nil && m.Run == id && m.StateDir == stateDir {
				out = append(out, Recovered{RunID: id, Action: "removed", Err: removeTree(filepath.Join(root, id))})
			}
		}
	}
	return out
}

// Discard removes the run's layers and directories, rolling back first
// an apply that was cut short. Discarding an applied run does nothing.
func (r *Run) Discard() error {
	if _, _, err := r.settle(); err != nil {
		return fmt.Errorf("changes: discard %s: %w", r.ID, err)
	}
	if err := r.remove(); err != nil {
		return fmt.Errorf("changes: discard %s: %w", r.ID, err)
	}
	return nil
}

// remove deletes the layers, then the run's directory with its manifest.
func (r *Run) remove() error {
	var errs []error
	for _, l := range r.Layers {
		errs = append(errs, removeTree(l.Upper), removeTree(l.Work), removeTree(l.backupDir()))
	}
	for _, l := range r.Layers {
		if l.Dir != r.Dir && errors.Join(errs...) == nil {
			errs = append(errs, removeTree(l.Dir))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return removeTree(r.Dir)
}

// settle finishes or rolls back the apply the run's log describes, and
// removes the log.
func (r *Run) settle() (action string, n int, err error) {
	b, err := os.ReadFile(r.logPath())
	if errors.Is(err, os.ErrNotExist) {
		return "removed", 0, nil
	}
	if err != nil {
		return "", 0, err
	}
	lg, err := parseLog(b)
	if err != nil {
		return "", 0, err
	}
	if lg.Complete {
		action, n, err = r.settleLog(lg)
		if err != nil {
			return action, n, err
		}
	} else {
		action = "removed" // the intent never reached the disk: nothing moved
	}
	if err := os.Remove(r.logPath()); err != nil {
		return action, n, err
	}
	return action, n, nil
}

func (r *Run) settleLog(lg *applyLog) (string, int, error) {
	if lg.Run != r.ID {
		return "", 0, fmt.Errorf("apply log of run %s in run %s", lg.Run, r.ID)
	}
	a, err := r.openApplier()
	if err != nil {
		return "", 0, err
	}
	defer a.close()
	for i := range lg.Ops {
		if _, err := a.tree(&lg.Ops[i]); err != nil {
			return "", 0, err
		}
	}
	if lg.Committed {
		n, err := a.finish(lg.Ops)
		return "finished", n, err
	}
	a.staged = lg.Staged
	n, err := a.undoAll(lg.Ops)
	return "rolled back", n, err
}

// finish removes a committed apply's backups; n counts the ops.
func (a *applier) finish(ops []op) (int, error) {
	var errs []error
	for i := range ops {
		o := &ops[i]
		if !o.Beside {
			continue // the backups are in the layer's directory, which goes next
		}
		for _, p := range []string{o.Backup, o.New} {
			if p != "" {
				errs = append(errs, removeTree(besidePath(a.trees[o.Layer], o, p)))
			}
		}
	}
	return len(ops), errors.Join(errs...)
}

// undoAll rolls back, last op first; n counts the ops that had run.
func (a *applier) undoAll(ops []op) (int, error) {
	n := 0
	for i := len(ops) - 1; i >= 0; i-- {
		did, err := a.undo(&ops[i])
		if err != nil {
			return n, fmt.Errorf("roll back %s: %w", filepath.Join(a.trees[ops[i].Layer].path, ops[i].Rel), err)
		}
		if did {
			n++
		}
	}
	return n, nil
}

// undo puts one op's path back as it was, from what the tree shows: the
// new entry is in when the path has its inode, the old one is aside
// while its backup exists.
func (a *applier) undo(o *op) (bool, error) {
	t := a.trees[o.Layer]
	if o.Op == opAttr {
		return a.undoAttr(t, o)
	}
	pfd, name, err := t.parent(o.Rel)
	if err != nil {
		return false, err
	}
	did := false
	if o.Op == opSwap && (a.staged || !o.Beside) && o.NewIno != 0 {
		st, err := statAt(pfd, name)
		if err == nil && st.ino == o.NewIno {
			n := o.at(pfd, o.New)
			if err := renameNoReplace(pfd, name, n.fd, n.name); err != nil {
				return false, fmt.Errorf("move the new entry back to %s: %w", o.New, err)
			}
			did = true
		}
	}
	if o.Backup != "" {
		b := o.at(pfd, o.Backup)
		var st unix.Stat_t
		if unix.Fstatat(b.fd, b.name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil {
			err := renameNoReplace(b.fd, b.name, pfd, name)
			switch {
			case err == unix.EEXIST || err == unix.ENOTEMPTY:
				// Written by another since: the newest write stays, and
				// the old entry goes (with the layer, or here).
				if o.Beside {
					if err := removeTree(besidePath(t, o, o.Backup)); err != nil {
						return did, err
					}
				}
			case err != nil:
				return did, fmt.Errorf("move the old entry back from %s: %w", o.Backup, err)
			}
			did = true
		}
	}
	if o.Op == opSwap && o.Beside { // copy mode's copy
		if err := removeTree(besidePath(t, o, o.New)); err != nil {
			return did, err
		}
	}
	return did, nil
}

// undoAttr sets the old mode and owner back, when the entry is still
// the one the op changed (same type).
func (a *applier) undoAttr(t *tree, o *op) (bool, error) {
	st, err := t.stat(o.Rel)
	if err == unix.ENOENT || (err == nil && st.typ() != o.OldType) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if st.perm() == o.OldMode && st.uid == o.OldUID && st.gid == o.OldGID {
		return false, nil
	}
	pfd, name, err := t.parent(o.Rel)
	if err != nil {
		return false, err
	}
	return true, setAttr(pfd, name, filepath.Join(t.path, o.Rel), o.OldUID, o.OldGID, o.OldMode, o.OldType == Symlink)
}
