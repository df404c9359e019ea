//go:build linux

package changes

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// Run is one run's overlay layers, one per workdir.
type Run struct {
	ID     string
	Dir    string    // <stateDir>/changes/<ID>: the manifest and the apply log
	Start  time.Time // the earliest Layer.Start
	Layers []Layer

	stateDir string
	// aborted: an apply was rolled back, which moved the old entries
	// back and so changed their ctimes: only Discard is left.
	aborted bool
}

// Prepare makes the upper and work directories of a run, one layer per
// workdir (symlinks resolved, in sorted order; a workdir inside another
// collapses into the outer one), and records the run in a manifest for
// [Recover]. Each layer is on the workdir's own mount when it can be, so
// that Apply renames; see the package documentation for where. It refuses
// a workdir that holds a mount point. Call it before the run starts: the
// layers' start times are taken here.
func Prepare(stateDir, runID string, workdirs []string) (*Run, error) {
	if err := checkID(runID); err != nil {
		return nil, err
	}
	lowers, err := lowerDirs(workdirs)
	if err != nil {
		return nil, err
	}
	stateDir, err = filepath.Abs(stateDir)
	if err != nil {
		return nil, fmt.Errorf("changes: state dir: %w", err)
	}
	base := filepath.Join(stateDir, changesDir)
	if err := privateDir(base, true); err != nil {
		return nil, fmt.Errorf("changes: %w", err)
	}
	r := &Run{ID: runID, Dir: filepath.Join(base, runID), stateDir: stateDir}
	if err := os.Mkdir(r.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("changes: run directory: %w", err)
	}
	if err := r.prepare(base, lowers); err != nil {
		if derr := r.Discard(); derr != nil {
			err = errors.Join(err, derr)
		}
		return nil, fmt.Errorf("changes: %w", err)
	}
	return r, nil
}

// prepare plans the layers, writes the manifest, then makes them: a
// crash in between leaves directories the manifest names. The manifest
// is for clean-up only (it has no start times) and is not synced: a
// power cut before the run can only leave empty layers behind.
func (r *Run) prepare(base string, lowers []string) error {
	baseSt, err := lstat(base)
	if err != nil {
		return err
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	mounts := parseMountinfo(mi)
	for i, lower := range lowers {
		l, err := r.plan(i, lower, base, baseSt, mounts)
		if err != nil {
			return err
		}
		r.Layers = append(r.Layers, l)
	}
	if err := os.WriteFile(filepath.Join(r.Dir, manifestName), r.manifest(), 0o600); err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	for i := range r.Layers {
		if err := r.makeLayer(&r.Layers[i]); err != nil {
			return err
		}
		if i == 0 || r.Layers[i].Start.Before(r.Start) {
			r.Start = r.Layers[i].Start
		}
	}
	return nil
}

// lowerDirs resolves the workdirs and drops those inside another one.
func lowerDirs(workdirs []string) ([]string, error) {
	if len(workdirs) == 0 {
		return nil, errors.New("changes: no workdirs")
	}
	var all []string
	for _, w := range workdirs {
		if !filepath.IsAbs(w) {
			return nil, fmt.Errorf("changes: workdir %q is not absolute", w)
		}
		p, err := filepath.EvalSymlinks(w)
		if err != nil {
			return nil, fmt.Errorf("changes: workdir: %w", err)
		}
		all = append(all, p)
	}
	sort.Strings(all) // an outer directory sorts before what it holds
	var out []string
next:
	for _, p := range all {
		for _, o := range out {
			if within(p, o) {
				continue next // the outer overlay covers it (a mount there is refused below)
			}
		}
		out = append(out, p)
	}
	return out, nil
}

// plan decides where a workdir's layer lives.
func (r *Run) plan(n int, lower, base string, baseSt stat, mounts []mountEntry) (Layer, error) {
	lst, err := lstat(lower)
	if err != nil {
		return Layer{}, fmt.Errorf("workdir: %w", err)
	}
	if lst.typ() != Dir {
		return Layer{}, fmt.Errorf("workdir %s is not a directory", lower)
	}
	for _, m := range mounts {
		if m.Point != lower && within(m.Point, lower) {
			return Layer{}, fmt.Errorf("workdir %s holds the mount point %s (%s): an overlay does not show mounts under it", lower, m.Point, m.FSType)
		}
	}
	l := Layer{Lower: lower, LowerDev: lst.dev, LowerIno: lst.ino, Dir: r.Dir}
	inside := within(base, lower)
	if !sameMount(baseSt, lst) || inside {
		if root, ok := mountRootDir(lower, lst, mounts); ok {
			l.Dir = filepath.Join(root, r.ID)
		} else if inside {
			return Layer{}, fmt.Errorf("the state dir %s lies inside the workdir %s, and no other place on its mount can hold the layer", base, lower)
		} else {
			l.Copy = true
		}
	}
	l.Upper = filepath.Join(l.Dir, strconv.Itoa(n)+"-"+upperName)
	l.Work = filepath.Join(l.Dir, strconv.Itoa(n)+"-"+workName)
	return l, nil
}

// mountRootDir returns .execgate-changes at the root of lower's mount,
// made if missing, when it can safely hold a layer.
func mountRootDir(lower string, lst stat, mounts []mountEntry) (string, bool) {
	var point string
	for _, m := range mounts {
		if lst.hasMnt && m.ID == lst.mnt {
			point = m.Point
		}
	}
	if point == "" || point == lower { // a layer inside the lower layer: overlayfs refuses
		return "", false
	}
	pst, err := lstat(point)
	// Others who can write the root could move the directory away.
	if err != nil || pst.uid != 0 || (pst.mode&0o022 != 0 && pst.mode&unix.S_ISVTX == 0) || !sameMount(pst, lst) {
		return "", false
	}
	dir := filepath.Join(point, rootDirName)
	if err := privateDir(dir, false); err != nil {
		return "", false
	}
	if st, err := lstat(dir); err != nil || !sameMount(st, lst) {
		return "", false
	}
	return dir, true
}

// privateDir makes dir (and with all, its parents) as a root-owned 0700
// directory, or checks and tightens the one there.
func privateDir(dir string, all bool) error {
	mk := os.Mkdir
	if all {
		mk = os.MkdirAll
	}
	if err := mk(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	st, err := lstat(dir)
	if err != nil {
		return err
	}
	if st.typ() != Dir || st.uid != uint32(os.Geteuid()) {
		return fmt.Errorf("%s: not a directory of uid %d", dir, os.Geteuid())
	}
	if st.perm() != 0o700 {
		return os.Chmod(dir, 0o700)
	}
	return nil
}

// makeLayer makes the layer's directories. Upper's root carries the
// workdir's mode and owner: overlayfs shows them for the merged root.
func (r *Run) makeLayer(l *Layer) error {
	if l.Dir != r.Dir {
		err := os.Mkdir(l.Dir, 0o700)
		if err == nil {
			// The owner's mark, for Recover's sweep of the mount's root.
			err = os.WriteFile(filepath.Join(l.Dir, manifestName), r.manifest(), 0o600)
		}
		if err != nil && !errors.Is(err, os.ErrExist) { // another layer on the same mount made it
			return fmt.Errorf("layer: %w", err)
		}
	}
	for _, d := range []string{l.Upper, l.Work} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return fmt.Errorf("layer: %w", err)
		}
	}
	lst, err := lstat(l.Lower)
	if err != nil {
		return fmt.Errorf("layer: %w", err)
	}
	if err := os.Lchown(l.Upper, int(lst.uid), int(lst.gid)); err != nil {
		return fmt.Errorf("layer: %w", err)
	}
	if err := unix.Chmod(l.Upper, lst.perm()); err != nil {
		return fmt.Errorf("layer: chmod %s: %w", l.Upper, err)
	}
	l.Start, err = startStamp(l)
	return err
}

// startStamp is the time from which a change of a lower entry counts as
// a conflict. On the workdir's own file system, upper's ctime: the same
// clock and granularity as the lower's. Elsewhere, the coarse clock the
// kernel stamps with; down to 2 s when the workdir's own times have no
// nanoseconds (a file system with coarse timestamps, such as FAT, would
// otherwise date a change made just after the start before it).
func startStamp(l *Layer) (time.Time, error) {
	if !l.Copy {
		st, err := lstat(l.Upper)
		if err != nil {
			return time.Time{}, err
		}
		return tsTime(st.ctime), nil
	}
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_REALTIME_COARSE, &ts); err != nil {
		return time.Time{}, fmt.Errorf("clock: %w", err)
	}
	lst, err := lstat(l.Lower)
	if err != nil {
		return time.Time{}, err
	}
	if lst.ctime.Nsec == 0 && lst.mtime.Nsec == 0 {
		return time.Unix(ts.Sec&^1, 0), nil
	}
	return time.Unix(ts.Sec, ts.Nsec), nil
}

func (r *Run) manifest() []byte {
	b, _ := json.MarshalIndent(manifest{Version: manifestV, Run: r.ID, StateDir: r.stateDir,
		Created: time.Now(), Layers: r.Layers}, "", "  ") // plain struct: cannot fail
	return append(b, '\n')
}
