package sandbox

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/execgate/execgate/pathglob"
	"golang.org/x/sys/unix"
)

// privatePaths are replaced by fresh mounts in every run, so nothing under
// them needs masking or binding (and mounting there would fail).
var privatePaths = []string{"/tmp", "/proc", "/dev/shm"}

// notWalked are never searched: kernel interfaces, not files.
var notWalked = []string{"/proc", "/sys", "/dev"}

func under(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, dir+"/")
}

func underAny(p string, dirs []string) bool {
	for _, d := range dirs {
		if under(p, d) {
			return true
		}
	}
	return false
}

// mountTarget is a path the init mounts over (a mask or a read_only bind),
// with the device and inode the daemon found there when it planned the run.
// The init opens the path again without following any symlink and mounts
// through that descriptor only if it is still the same inode (openTarget),
// so a process of the agent that swaps a path component in between (a
// directory for a symlink, or a rename) cannot make the mount land
// elsewhere.
type mountTarget struct {
	Path     string // absolute, clean, free of symlinks
	Dev, Ino uint64
}

// maskPlan is what the init masks: resolved absolute paths.
type maskPlan struct {
	files, dirs []mountTarget
	cut         bool     // the walk did not finish: the run must not start
	why         string   // the first reason it did not
	roots       []string // the walk root it was cut under, if any
}

func (m maskPlan) all() []string {
	var out []string
	for _, t := range append(append([]mountTarget(nil), m.dirs...), m.files...) {
		out = append(out, t.Path)
	}
	sort.Strings(out)
	return out
}

// refusal is the error that refuses a run whose walk was cut, naming the
// deny_read patterns it was for (patterns as written, home for "~") and
// why it stopped.
//
// No bound fails open. When the walk is cut, the run is refused rather
// than masked more coarsely (an empty directory over each subtree not
// searched): a coarse mask silently empties directories of the agent's
// own files, so the script fails in ways that look like its own bugs; the
// subtree not searched can contain the working directory or another walk
// root; and after the entry bound the part not searched is the rest of
// the queue, possibly whole roots, with no useful bound on what a coarse
// mask would hide. A refusal says which pattern and which bound, so the
// profile can be fixed (an anchored pattern, a narrower workdir) instead.
func (m maskPlan) refusal(patterns []string, home string) error {
	if !m.cut {
		return nil
	}
	var names []string
	for _, src := range patterns {
		one, err := pathglob.NewSet([]string{src}, home)
		if err == nil && !one.Floating() {
			// Anchored: named only if its root is what was being walked.
			near := false
			for _, r := range one.Roots() {
				for _, w := range m.roots {
					near = near || under(r, w) || under(w, r)
				}
			}
			if !near && len(m.roots) > 0 {
				continue
			}
		}
		names = append(names, fmt.Sprintf("%q", src))
	}
	what := "deny_read"
	if len(names) > 0 {
		what += " " + strings.Join(names, ", ")
	}
	return fmt.Errorf("%s: %s; refusing to run rather than leave a match unmasked", what, m.why)
}

// walker expands deny_read patterns into existing paths. It walks breadth
// first, so the shallow files that usually hold secrets (a project's .env)
// are found before a bound cuts a deep tree. It never follows a symlink
// while walking; a symlink whose target matches gets the target masked.
type walker struct {
	set        *pathglob.Set
	maxEntries int
	maxDepth   int
	skip       map[string]bool

	root int // O_PATH descriptor of "/", for openNoSymlinks

	entries int
	cut     bool
	why     string   // the first reason the walk was cut
	whyRoot []string // the walk root it was cut under
	visited map[[2]uint64]bool
	masks   map[string]maskEntry // resolved path -> what it was
}

type maskEntry struct {
	dir      bool
	dev, ino uint64
}

type walkItem struct {
	path  string
	root  string // the walk root it was reached from
	depth int
	dev   uint64
}

// stop cuts the walk; the run will be refused with the first reason.
func (w *walker) stop(root, why string) {
	if !w.cut {
		w.why = why
		if root != "" {
			w.whyRoot = []string{root}
		}
	}
	w.cut = true
}

// gone reports an error that means the path is simply not there (any
// more): nothing to read, nothing to mask.
func gone(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENOTDIR)
}

// planMasks expands spec's DenyRead over the anchored roots and, when some
// pattern floats, over WalkRoots.
func planMasks(set *pathglob.Set, walkRoots []string, c *config) maskPlan {
	if set.Empty() {
		return maskPlan{}
	}
	w := &walker{
		set: set, maxEntries: c.walkEntries, maxDepth: c.walkDepth, skip: c.walkSkip,
		visited: map[[2]uint64]bool{}, masks: map[string]maskEntry{},
	}
	root, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return maskPlan{cut: true, why: fmt.Sprintf("open /: %v", err)}
	}
	defer unix.Close(root)
	w.root = root
	roots := set.Roots()
	if set.Floating() {
		roots = append(roots, walkRoots...)
	}
	var queue []walkItem
	for _, r := range roots {
		if !filepath.IsAbs(r) {
			continue
		}
		r = filepath.Clean(r)
		if _, ok := set.Match(r); ok {
			w.mask(r, r)
			continue
		}
		var st unix.Stat_t
		if err := unix.Stat(r, &st); err != nil {
			if !gone(err) {
				w.stop(r, fmt.Sprintf("walk of %s: %v", r, err))
			}
			continue
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR || underAny(r, notWalked) {
			continue
		}
		queue = append(queue, walkItem{path: r, root: r, dev: st.Dev})
	}
	// BFS over all roots together.
	for len(queue) > 0 && !w.cut {
		it := queue[0]
		queue = queue[1:]
		queue = w.dir(it, queue)
	}
	return w.plan()
}

// dir reads one directory and queues its subdirectories.
func (w *walker) dir(it walkItem, queue []walkItem) []walkItem {
	f := w.open(it)
	if f == nil {
		return queue
	}
	defer f.Close()
	for {
		ents, err := f.ReadDir(256)
		for _, e := range ents {
			w.entries++
			if w.entries > w.maxEntries {
				w.stop(it.root, fmt.Sprintf("walk of %s stopped after %d entries (bound) in %s", it.root, w.maxEntries, it.path))
				return queue
			}
			queue = w.entry(it, e, queue)
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				// An unreadable directory is not searched; say so.
				w.stop(it.root, fmt.Sprintf("walk of %s could not read %s: %v", it.root, it.path, err))
			}
			return queue
		}
	}
}

// open opens the directory to read, or returns nil: it is gone, was seen
// already (a bind mount or a loop), or cannot be read (which cuts the
// walk).
func (w *walker) open(it walkItem) *os.File {
	var st unix.Stat_t
	if err := unix.Stat(it.path, &st); err != nil {
		if !gone(err) {
			w.stop(it.root, fmt.Sprintf("walk of %s could not read %s: %v", it.root, it.path, err))
		}
		return nil
	}
	key := [2]uint64{st.Dev, st.Ino}
	if w.visited[key] {
		return nil
	}
	w.visited[key] = true
	f, err := os.Open(it.path)
	if err != nil {
		if !gone(err) {
			w.stop(it.root, fmt.Sprintf("walk of %s could not read %s: %v", it.root, it.path, err))
		}
		return nil
	}
	return f
}

// entry masks one entry of a directory it.path when it matches (for a
// symlink, when its target does) and queues it when it is a directory to
// search.
func (w *walker) entry(it walkItem, e os.DirEntry, queue []walkItem) []walkItem {
	p := it.path + "/" + e.Name()
	if it.path == "/" {
		p = "/" + e.Name()
	}
	if _, ok := w.set.Match(p); ok {
		w.mask(it.root, p)
		return queue
	}
	switch {
	case e.Type()&os.ModeSymlink != 0:
		if t, err := filepath.EvalSymlinks(p); err == nil {
			if _, ok := w.set.Match(t); ok {
				w.mask(it.root, t)
			}
		}
	case e.IsDir():
		if w.skip[e.Name()] || underAny(p, notWalked) {
			return queue
		}
		if it.depth+1 > w.maxDepth {
			w.stop(it.root, fmt.Sprintf("walk of %s stopped at depth %d (bound): %s not searched", it.root, w.maxDepth, p))
			return queue
		}
		var cst unix.Stat_t
		if unix.Lstat(p, &cst) != nil {
			return queue
		}
		if cst.Dev != it.dev && pseudoFS(p) {
			return queue
		}
		queue = append(queue, walkItem{path: p, root: it.root, depth: it.depth + 1, dev: cst.Dev})
	}
	return queue
}

// mask records the resolved form of p, the path the init mounts over, with
// the inode found there without following symlinks.
func (w *walker) mask(root, p string) {
	r, err := filepath.EvalSymlinks(p)
	if err != nil {
		return // gone or dangling: nothing to read
	}
	if underAny(r, privatePaths) {
		return
	}
	t, isDir, err := statTarget(w.root, r)
	if err != nil {
		if !gone(err) {
			// Resolved a moment ago: a component was swapped since.
			w.stop(root, fmt.Sprintf("cannot open %s to mask it: %v", r, err))
		}
		return
	}
	w.masks[r] = maskEntry{dir: isDir, dev: t.Dev, ino: t.Ino}
}

// openNoSymlinks opens path (absolute and clean) as an O_PATH descriptor,
// resolved beneath root (a descriptor of "/") without following any
// symlink or magic link: a path the daemon resolved must still resolve the
// same way, component by component. openat2 is Linux 5.6; the init needs
// 5.11 already (close_range's CLOEXEC).
func openNoSymlinks(root int, path string) (int, error) {
	rel := strings.TrimLeft(path, "/")
	if rel == "" {
		rel = "."
	}
	how := unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	}
	for i := 0; ; i++ {
		fd, err := unix.Openat2(root, rel, &how)
		if (errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN)) && i < 16 {
			continue
		}
		if err != nil {
			return -1, &os.PathError{Op: "openat2", Path: path, Err: err}
		}
		return fd, nil
	}
}

// statTarget returns path's device and inode, opened as openNoSymlinks
// does, and whether it is a directory.
func statTarget(root int, path string) (mountTarget, bool, error) {
	fd, err := openNoSymlinks(root, path)
	if err != nil {
		return mountTarget{}, false, err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return mountTarget{}, false, &os.PathError{Op: "fstat", Path: path, Err: err}
	}
	return mountTarget{Path: path, Dev: st.Dev, Ino: st.Ino}, st.Mode&unix.S_IFMT == unix.S_IFDIR, nil
}

// plan drops masks under a masked directory (the empty directory hides
// them, and mounting inside it would fail) and sorts the rest.
func (w *walker) plan() maskPlan {
	p := maskPlan{cut: w.cut, why: w.why, roots: w.whyRoot}
	var dirs []string
	for path, m := range w.masks {
		if m.dir {
			dirs = append(dirs, path)
		}
	}
	sort.Strings(dirs)
	covered := func(path string) bool {
		for _, d := range dirs {
			if path != d && under(path, d) {
				return true
			}
		}
		return false
	}
	for path, m := range w.masks {
		if covered(path) {
			continue
		}
		t := mountTarget{Path: path, Dev: m.dev, Ino: m.ino}
		if m.dir {
			p.dirs = append(p.dirs, t)
		} else {
			p.files = append(p.files, t)
		}
	}
	byPath := func(ts []mountTarget) {
		sort.Slice(ts, func(i, j int) bool { return ts[i].Path < ts[j].Path })
	}
	byPath(p.dirs)
	byPath(p.files)
	return p
}

// Magic numbers x/sys/unix does not name (linux/magic.h).
const (
	mqueueMagic   = 0x19800202
	fuseCtlMagic  = 0x65735543
	configfsMagic = 0x62656570
)

// pseudoFS reports kernel file systems that hold no user files.
func pseudoFS(p string) bool {
	var fs unix.Statfs_t
	if unix.Statfs(p, &fs) != nil {
		return true
	}
	switch int64(fs.Type) {
	case unix.PROC_SUPER_MAGIC, unix.SYSFS_MAGIC, unix.DEVPTS_SUPER_MAGIC, unix.CGROUP_SUPER_MAGIC,
		unix.CGROUP2_SUPER_MAGIC, unix.DEBUGFS_MAGIC, unix.TRACEFS_MAGIC, unix.SECURITYFS_MAGIC,
		unix.BPF_FS_MAGIC, unix.PSTOREFS_MAGIC, mqueueMagic, unix.HUGETLBFS_MAGIC,
		unix.BINFMTFS_MAGIC, unix.NSFS_MAGIC, fuseCtlMagic, configfsMagic:
		return true
	}
	return false
}

// resolveReadOnly returns the existing read_only paths, resolved, with
// their inodes. A path that does not exist has nothing to protect yet; one
// that cannot be resolved otherwise refuses the run.
func resolveReadOnly(paths []string) ([]mountTarget, error) {
	var out []mountTarget
	seen := map[string]bool{}
	root := -1
	defer func() {
		if root >= 0 {
			unix.Close(root)
		}
	}()
	for _, p := range paths {
		if !filepath.IsAbs(p) {
			continue
		}
		r, err := filepath.EvalSymlinks(filepath.Clean(p))
		if err != nil {
			if gone(err) {
				continue
			}
			return nil, fmt.Errorf("read_only %s: %w", p, err)
		}
		if seen[r] || underAny(r, privatePaths) {
			continue
		}
		if root < 0 {
			if root, err = unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err != nil {
				return nil, fmt.Errorf("read_only: open /: %w", err)
			}
		}
		t, _, err := statTarget(root, r)
		if err != nil {
			if gone(err) {
				continue
			}
			return nil, fmt.Errorf("read_only %s: %w", p, err)
		}
		seen[r] = true
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}
