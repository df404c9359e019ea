//go:build linux

package changes

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

const (
	xOverlay  = "trusted.overlay."
	xOpaque   = xOverlay + "opaque"
	xWhiteout = xOverlay + "whiteout"
	xRedirect = xOverlay + "redirect"
	xMetacopy = xOverlay + "metacopy"
)

// Compute reads the upper layers into a change set. Times are not part
// of it: a copy-up whose content, mode, owner and extended attributes
// equal the lower's (an open for writing without a write, a touch) is
// left out.
func (r *Run) Compute() (*Set, error) {
	s := &Set{Layers: r.Layers, run: r}
	for i, l := range r.Layers {
		if err := s.computeLayer(i, l); err != nil {
			return nil, fmt.Errorf("changes: %s: %w", l.Lower, err)
		}
	}
	sortChanges(s.Changes)
	s.Totals = totals(s.Changes)
	return s, nil
}

// walker reads one layer.
type walker struct {
	s     *Set
	layer int
	l     Layer
	t     *tree
	bufU  []byte
	bufL  []byte
}

// ent is one upper entry and the lower entry it covers.
type ent struct {
	rel, up, name string
	u             stat
	ox            []string // overlayfs's own xattrs on the upper entry
	lfd           int      // the lower parent directory; -1 below a created or replaced one
	l             stat
	lower         bool // a lower entry exists
}

func (s *Set) computeLayer(i int, l Layer) error {
	t, err := openTree(l)
	if err != nil {
		return err
	}
	defer t.close()
	w := &walker{s: s, layer: i, l: l, t: t, bufU: make([]byte, 64<<10), bufL: make([]byte, 64<<10)}
	u, err := lstat(l.Upper)
	if err != nil {
		return err
	}
	lr, err := statAt(t.fd, "")
	if err != nil {
		return err
	}
	root := &ent{rel: ".", up: l.Upper, u: u, lfd: t.fd, l: lr, lower: true}
	if c, ok := w.metaChange(root); ok {
		w.add(c)
	}
	return w.dir(".", l.Upper, t.fd)
}

// dir reads an upper directory; lfd is its lower counterpart or -1.
func (w *walker) dir(rel, up string, lfd int) error {
	names, err := readNames(up)
	if err != nil {
		return err
	}
	for _, name := range names {
		e := &ent{rel: join(rel, name), up: filepath.Join(up, name), name: name, lfd: lfd}
		if e.u, err = lstat(e.up); err != nil {
			return err
		}
		if e.ox, err = overlayXattrs(e.up); err != nil {
			return err
		}
		if lfd >= 0 {
			e.l, err = statAt(lfd, name)
			if err != nil && err != unix.ENOENT {
				return fmt.Errorf("stat %s: %w", filepath.Join(w.l.Lower, e.rel), err)
			}
			e.lower = err == nil
		}
		if err := w.entry(e); err != nil {
			return err
		}
	}
	return nil
}

func join(rel, name string) string {
	if rel == "." {
		return name
	}
	return rel + "/" + name
}

// overlayXattrs lists the trusted.overlay.* attributes of an upper entry
// and refuses the ones this package cannot read.
func overlayXattrs(path string) ([]string, error) {
	names, err := xattrNames(path)
	if err != nil {
		return nil, fmt.Errorf("xattrs of %s: %w", path, err)
	}
	var out []string
	for _, n := range names {
		if !strings.HasPrefix(n, xOverlay) {
			continue
		}
		if n == xRedirect || n == xMetacopy {
			return nil, fmt.Errorf("%s has %s: the overlay was not mounted with redirect_dir=off,metacopy=off", path, n)
		}
		out = append(out, n)
	}
	return out, nil
}

func has(names []string, n string) bool {
	for _, x := range names {
		if x == n {
			return true
		}
	}
	return false
}

// entry classifies one upper entry.
func (w *walker) entry(e *ent) error {
	switch {
	case w.whiteout(e):
		if !e.lower {
			w.s.cleanup = append(w.s.cleanup, cleanup{path: e.up, remove: true})
			return nil
		}
		w.add(w.change(e, Deleted))
		return w.deletedTree(e)
	case !e.lower:
		c := w.change(e, Created)
		c.Implied = e.lfd < 0
		w.add(c)
		w.tidy(e)
		if e.u.typ() == Dir {
			return w.dir(e.rel, e.up, -1)
		}
		return nil
	case e.u.typ() == Dir && e.l.typ() == Dir && !w.opaque(e):
		return w.merged(e)
	case e.u.typ() == Dir || e.l.typ() == Dir:
		w.add(w.change(e, Replaced))
		w.tidy(e)
		if err := w.deletedTree(e); err != nil {
			return err
		}
		if e.u.typ() == Dir {
			return w.dir(e.rel, e.up, -1)
		}
		return nil
	}
	return w.nonDir(e)
}

func (w *walker) whiteout(e *ent) bool {
	if e.u.mode&unix.S_IFMT == unix.S_IFCHR && e.u.rdev == 0 {
		return true
	}
	return e.u.typ() == File && e.u.size == 0 && has(e.ox, xWhiteout)
}

func (w *walker) opaque(e *ent) bool {
	if !has(e.ox, xOpaque) {
		return false
	}
	v, err := getXattr(e.up, xOpaque)
	return err == nil && string(v) == "y"
}

// tidy notes the overlayfs xattrs of an entry that moves in.
func (w *walker) tidy(e *ent) {
	if len(e.ox) > 0 {
		w.s.cleanup = append(w.s.cleanup, cleanup{path: e.up, xattrs: e.ox})
	}
}

// merged is a lower directory the run kept: compare, then descend.
func (w *walker) merged(e *ent) error {
	if c, ok := w.metaChange(e); ok {
		w.add(c)
	}
	fd, err := openBeneath(e.lfd, e.name, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return fmt.Errorf("open %s: %w", filepath.Join(w.l.Lower, e.rel), err)
	}
	defer closeFD(fd)
	return w.dir(e.rel, e.up, fd)
}

// nonDir compares an upper non-directory with the lower one it covers.
func (w *walker) nonDir(e *ent) error {
	if e.u.typ() != e.l.typ() || (e.u.typ() == Device && e.u.rdev != e.l.rdev) {
		w.add(w.change(e, Modified))
		w.tidy(e)
		return nil
	}
	same := true
	var err error
	switch e.u.typ() {
	case File:
		same, err = w.sameContent(e)
	case Symlink:
		c := w.change(e, Modified)
		same = c.Target == c.OldTgt
	}
	if err != nil {
		return err
	}
	if !same {
		w.add(w.change(e, Modified))
		w.tidy(e)
		return nil
	}
	c, ok := w.metaChange(e)
	if ok {
		w.add(c)
		if c.Xattrs {
			w.tidy(e) // moves in whole
		}
	}
	return nil
}

// metaChange compares mode, owner and (regular files) extended attributes.
func (w *walker) metaChange(e *ent) (Change, bool) {
	c := w.change(e, Metadata)
	if e.u.typ() == File {
		c.Xattrs = !w.sameXattrs(e)
	}
	return c, c.Xattrs || e.u.perm() != e.l.perm() || e.u.uid != e.l.uid || e.u.gid != e.l.gid
}

// change describes e as a change of kind k.
func (w *walker) change(e *ent, k Kind) Change {
	c := Change{Layer: w.layer, Path: e.rel, Abs: filepath.Join(w.l.Lower, e.rel), Kind: k}
	if k != Deleted {
		c.Type, c.Size, c.Mode, c.UID, c.GID = e.u.typ(), e.u.size, e.u.perm(), e.u.uid, e.u.gid
		if c.Type == Symlink {
			c.Target, _ = os.Readlink(e.up) // an unreadable target reads as empty
		}
	}
	if e.lower {
		c.OldType, c.OldSize, c.OldMode, c.OldUID, c.OldGID = e.l.typ(), e.l.size, e.l.perm(), e.l.uid, e.l.gid
		if c.OldType == Symlink && e.rel != "." {
			c.OldTgt, _ = readlinkAt(e.lfd, e.name)
		}
	}
	return c
}

func (w *walker) add(c Change) { w.s.Changes = append(w.s.Changes, c) }

// deletedTree lists what a deleted or replaced lower directory held.
func (w *walker) deletedTree(e *ent) error {
	if e.l.typ() != Dir {
		return nil
	}
	return w.lowerTree(e.lfd, e.name, e.rel)
}

func (w *walker) lowerTree(pfd int, name, rel string) error {
	fd, err := openBeneath(pfd, name, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return fmt.Errorf("open %s: %w", filepath.Join(w.l.Lower, rel), err)
	}
	dfd, err := unix.Dup(fd)
	if err != nil {
		closeFD(fd)
		return err
	}
	defer closeFD(dfd)
	names, err := readNamesFD(fd, filepath.Join(w.l.Lower, rel))
	if err != nil {
		return err
	}
	for _, n := range names {
		st, err := statAt(dfd, n)
		if err != nil {
			return fmt.Errorf("stat %s: %w", filepath.Join(w.l.Lower, rel, n), err)
		}
		e := &ent{rel: join(rel, n), name: n, lfd: dfd, l: st, lower: true}
		c := w.change(e, Deleted)
		c.Implied = true
		w.add(c)
		if st.typ() == Dir {
			if err := w.lowerTree(dfd, n, e.rel); err != nil {
				return err
			}
		}
	}
	return nil
}

// sameContent compares sizes, then bytes.
func (w *walker) sameContent(e *ent) (bool, error) {
	if e.u.size != e.l.size {
		return false, nil
	}
	uf, err := os.OpenFile(e.up, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return false, err
	}
	defer closeRead(uf)
	lf, err := w.t.openFile(e.rel)
	if err != nil {
		return false, err
	}
	defer closeRead(lf)
	for {
		nu, eu := io.ReadFull(uf, w.bufU)
		nl, el := io.ReadFull(lf, w.bufL)
		if nu != nl || !bytes.Equal(w.bufU[:nu], w.bufL[:nl]) {
			return false, nil
		}
		if eu == io.EOF || eu == io.ErrUnexpectedEOF {
			return el == io.EOF || el == io.ErrUnexpectedEOF, nil
		}
		if eu != nil {
			return false, fmt.Errorf("read %s: %w", e.up, eu)
		}
		if el != nil {
			return false, fmt.Errorf("read %s: %w", lf.Name(), el)
		}
	}
}

// sameXattrs compares the extended attributes a run can set (all but
// trusted.*, which overlayfs uses and only root can set).
func (w *walker) sameXattrs(e *ent) bool {
	lf, err := w.t.openFile(e.rel)
	if err != nil {
		return false
	}
	defer closeRead(lf)
	un, err1 := xattrNames(e.up)
	ln, err2 := fdXattrNames(int(lf.Fd()))
	if err := errors.Join(err1, err2); err != nil {
		return false
	}
	un, ln = userXattrs(un), userXattrs(ln)
	if len(un) != len(ln) {
		return false
	}
	for _, n := range un {
		uv, err1 := getXattr(e.up, n)
		lv, err2 := fdGetXattr(int(lf.Fd()), n)
		if err1 != nil || err2 != nil || !bytes.Equal(uv, lv) || !has(ln, n) {
			return false
		}
	}
	return true
}

func userXattrs(names []string) []string {
	var out []string
	for _, n := range names {
		if !strings.HasPrefix(n, "trusted.") {
			out = append(out, n)
		}
	}
	return out
}
