package sandbox

import (
	"errors"
	"io"
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

// maskPlan is what the init masks: resolved absolute paths.
type maskPlan struct {
	files, dirs []string
	cut         bool
}

func (m maskPlan) all() []string {
	out := append(append([]string(nil), m.dirs...), m.files...)
	sort.Strings(out)
	return out
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

	entries int
	cut     bool
	visited map[[2]uint64]bool
	masks   map[string]bool // resolved path -> is a directory
}

type walkItem struct {
	path  string
	depth int
	dev   uint64
}

// planMasks expands spec's DenyRead over the anchored roots and, when some
// pattern floats, over WalkRoots.
func planMasks(set *pathglob.Set, walkRoots []string, c *config) maskPlan {
	if set.Empty() {
		return maskPlan{}
	}
	w := &walker{
		set: set, maxEntries: c.walkEntries, maxDepth: c.walkDepth, skip: c.walkSkip,
		visited: map[[2]uint64]bool{}, masks: map[string]bool{},
	}
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
			w.mask(r)
			continue
		}
		var st unix.Stat_t
		if unix.Stat(r, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR || underAny(r, notWalked) {
			continue
		}
		queue = append(queue, walkItem{path: r, dev: st.Dev})
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
	var st unix.Stat_t
	if unix.Stat(it.path, &st) != nil {
		return queue
	}
	key := [2]uint64{st.Dev, st.Ino}
	if w.visited[key] {
		return queue
	}
	w.visited[key] = true
	f, err := os.Open(it.path)
	if err != nil {
		return queue
	}
	defer f.Close()
	for {
		ents, err := f.ReadDir(256)
		for _, e := range ents {
			w.entries++
			if w.entries > w.maxEntries {
				w.cut = true
				return queue
			}
			p := it.path + "/" + e.Name()
			if it.path == "/" {
				p = "/" + e.Name()
			}
			if _, ok := w.set.Match(p); ok {
				w.mask(p)
				continue
			}
			switch {
			case e.Type()&os.ModeSymlink != 0:
				if t, err := filepath.EvalSymlinks(p); err == nil {
					if _, ok := w.set.Match(t); ok {
						w.mask(t)
					}
				}
			case e.IsDir():
				if w.skip[e.Name()] || underAny(p, notWalked) {
					continue
				}
				if it.depth+1 > w.maxDepth {
					w.cut = true
					continue
				}
				var cst unix.Stat_t
				if unix.Lstat(p, &cst) != nil {
					continue
				}
				if cst.Dev != it.dev && pseudoFS(p) {
					continue
				}
				queue = append(queue, walkItem{path: p, depth: it.depth + 1, dev: cst.Dev})
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				// An unreadable directory is not searched; say so.
				w.cut = true
			}
			return queue
		}
	}
}

// mask records the resolved form of p, the path the init mounts over.
func (w *walker) mask(p string) {
	r, err := filepath.EvalSymlinks(p)
	if err != nil {
		return // gone or dangling: nothing to read
	}
	if underAny(r, privatePaths) {
		return
	}
	var st unix.Stat_t
	if unix.Lstat(r, &st) != nil {
		return
	}
	w.masks[r] = st.Mode&unix.S_IFMT == unix.S_IFDIR
}

// plan drops masks under a masked directory (the empty directory hides
// them, and mounting inside it would fail) and sorts the rest.
func (w *walker) plan() maskPlan {
	p := maskPlan{cut: w.cut}
	var dirs []string
	for path, isDir := range w.masks {
		if isDir {
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
	for path, isDir := range w.masks {
		if covered(path) {
			continue
		}
		if isDir {
			p.dirs = append(p.dirs, path)
		} else {
			p.files = append(p.files, path)
		}
	}
	sort.Strings(p.dirs)
	sort.Strings(p.files)
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

// resolveReadOnly returns the existing read_only paths, resolved. A path
// that does not exist has nothing to protect yet.
func resolveReadOnly(paths []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, p := range paths {
		if !filepath.IsAbs(p) {
			continue
		}
		r, err := filepath.EvalSymlinks(filepath.Clean(p))
		if err != nil || seen[r] || underAny(r, privatePaths) {
			continue
		}
		seen[r] = true
		out = append(out, r)
	}
	sort.Strings(out)
	return out
}
