//go:build linux

package changes

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// stage makes copy mode's copies beside their real paths, synced with
// their directories, and returns their inode numbers (0 for ops that
// copy nothing).
func (a *applier) stage(ops []op) ([]uint64, error) {
	inos := make([]uint64, len(ops))
	for i := range ops {
		o := &ops[i]
		if o.Src == "" {
			continue
		}
		t := a.trees[o.Layer]
		pfd, _, err := t.parent(o.Rel)
		if err != nil {
			return nil, err
		}
		if err := copyEntry(o.Src, pfd, o.New); err != nil {
			return nil, fmt.Errorf("copy %s to %s: %w", o.Src, besidePath(t, o, o.New), err)
		}
		st, err := statAt(pfd, o.New)
		if err != nil {
			return nil, err
		}
		inos[i] = st.ino
		if err := unix.Fsync(pfd); err != nil {
			return nil, fmt.Errorf("sync %s: %w", filepath.Dir(besidePath(t, o, o.New)), err)
		}
	}
	return inos, nil
}

// copyEntry copies src (not following symlinks) to name in dfd with its
// mode, owner and times; directories with what they hold. Extended
// attributes and hard links are not kept.
func copyEntry(src string, dfd int, name string) error {
	st, err := lstat(src)
	if err != nil {
		return err
	}
	switch st.typ() {
	case File:
		err = copyFile(src, dfd, name, st)
	case Dir:
		err = copyDir(src, dfd, name, st)
	case Symlink:
		var target string
		if target, err = os.Readlink(src); err == nil {
			err = unix.Symlinkat(target, dfd, name)
		}
	default:
		err = unix.Mknodat(dfd, name, st.mode&unix.S_IFMT|0o600, int(st.rdev))
	}
	if err != nil {
		return err
	}
	if st.typ() != File && st.typ() != Dir {
		if err := setAttr(dfd, name, src, st.uid, st.gid, st.perm(), st.typ() == Symlink); err != nil {
			return err
		}
	}
	ts := []unix.Timespec{unix.NsecToTimespec(tsTime(st.atime).UnixNano()), unix.NsecToTimespec(tsTime(st.mtime).UnixNano())}
	return unix.UtimesNanoAt(dfd, name, ts, unix.AT_SYMLINK_NOFOLLOW)
}

func copyFile(src string, dfd int, name string, st stat) error {
	in, err := os.OpenFile(src, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer closeRead(in)
	fd, err := unix.Openat(dfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	out := os.NewFile(uintptr(fd), name)
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Chown(int(st.uid), int(st.gid))
	}
	if err == nil {
		err = unix.Fchmod(fd, st.perm())
	}
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

func copyDir(src string, dfd int, name string, st stat) error {
	if err := unix.Mkdirat(dfd, name, 0o700); err != nil {
		return err
	}
	fd, err := unix.Openat(dfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer closeFD(fd)
	names, err := readNames(src)
	if err != nil {
		return err
	}
	for _, n := range names {
		if err := copyEntry(filepath.Join(src, n), fd, n); err != nil {
			return err
		}
	}
	if err := unix.Fchown(fd, int(st.uid), int(st.gid)); err != nil {
		return err
	}
	if err := unix.Fchmod(fd, st.perm()); err != nil {
		return fmt.Errorf("chmod %s: %w", strconv.Quote(name), err)
	}
	return unix.Fsync(fd)
}
