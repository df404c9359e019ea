//go:build linux

package changes

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// stat is what the package needs of statx.
type stat struct {
	mode     uint32 // st_mode: type and permissions
	uid, gid uint32
	size     int64
	ino      uint64
	dev      uint64
	rdev     uint64
	mnt      uint64
	hasMnt   bool
	ctime    unix.StatxTimestamp
	btime    unix.StatxTimestamp
	mtime    unix.StatxTimestamp
	atime    unix.StatxTimestamp
	hasBtime bool
}

const statxMask = unix.STATX_BASIC_STATS | unix.STATX_BTIME | unix.STATX_MNT_ID

// statAt stats name in dirfd without following a final symlink; an empty
// name stats dirfd itself.
func statAt(dirfd int, name string) (stat, error) {
	var x unix.Statx_t
	flags := unix.AT_SYMLINK_NOFOLLOW
	if name == "" {
		flags |= unix.AT_EMPTY_PATH
	}
	if err := unix.Statx(dirfd, name, flags, statxMask, &x); err != nil {
		return stat{}, err
	}
	return stat{
		mode: uint32(x.Mode), uid: x.Uid, gid: x.Gid, size: int64(x.Size), ino: x.Ino,
		dev:  unix.Mkdev(x.Dev_major, x.Dev_minor),
		rdev: unix.Mkdev(x.Rdev_major, x.Rdev_minor),
		mnt:  x.Mnt_id, hasMnt: x.Mask&unix.STATX_MNT_ID != 0,
		ctime: x.Ctime, btime: x.Btime, hasBtime: x.Mask&unix.STATX_BTIME != 0,
		mtime: x.Mtime, atime: x.Atime,
	}, nil
}

// lstat stats a path without following a final symlink.
func lstat(path string) (stat, error) {
	st, err := statAt(unix.AT_FDCWD, path)
	if err != nil {
		return st, &fs.PathError{Op: "stat", Path: path, Err: err}
	}
	return st, nil
}

func (s stat) perm() uint32 { return s.mode & 0o7777 }

func (s stat) typ() Type {
	switch s.mode & unix.S_IFMT {
	case unix.S_IFREG:
		return File
	case unix.S_IFDIR:
		return Dir
	case unix.S_IFLNK:
		return Symlink
	case unix.S_IFIFO:
		return Fifo
	case unix.S_IFSOCK:
		return Socket
	}
	return Device
}

// sameMount says whether a rename between a and b can work.
func sameMount(a, b stat) bool {
	if a.hasMnt && b.hasMnt {
		return a.mnt == b.mnt
	}
	return a.dev == b.dev
}

func tsTime(ts unix.StatxTimestamp) time.Time { return time.Unix(ts.Sec, int64(ts.Nsec)) }

// atOrAfter says whether ts is not before t.
func atOrAfter(ts unix.StatxTimestamp, t time.Time) bool { return !tsTime(ts).Before(t) }

// The real tree is written by others while the daemon (root) works in
// it: resolve every path beneath the workdir, never through a symlink
// and never into another mount, so nobody can redirect root elsewhere.
const beneath = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV

func openBeneath(dirfd int, rel string, flags int) (int, error) {
	how := unix.OpenHow{Flags: uint64(flags | unix.O_CLOEXEC | unix.O_NOFOLLOW), Resolve: beneath}
	for {
		fd, err := unix.Openat2(dirfd, rel, &how)
		if err != unix.EINTR && err != unix.EAGAIN {
			return fd, err
		}
	}
}

// tree is a workdir opened for safe lookups.
type tree struct {
	fd   int
	path string
	// the last parent directory opened, since operations come in order
	lastRel string
	lastFD  int
}

func openTree(l Layer) (*tree, error) {
	fd, err := unix.Open(l.Lower, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: l.Lower, Err: err}
	}
	t := &tree{fd: fd, path: l.Lower, lastFD: -1}
	st, err := statAt(fd, "")
	if err == nil && (st.dev != l.LowerDev || st.ino != l.LowerIno) {
		err = fmt.Errorf("the workdir %s was replaced since the run started", l.Lower)
	}
	if err != nil {
		t.close()
		return nil, err
	}
	return t, nil
}

func (t *tree) close() {
	if t.lastFD >= 0 {
		closeFD(t.lastFD)
	}
	closeFD(t.fd)
}

// parent returns a directory fd for rel's parent (owned by t) and rel's
// base name; rel "." gives the workdir and ".".
func (t *tree) parent(rel string) (int, string, error) {
	if rel == "." {
		return t.fd, ".", nil
	}
	dir, name := filepath.Split(rel)
	dir = strings.TrimSuffix(dir, "/")
	if dir == "" {
		return t.fd, name, nil
	}
	if t.lastFD >= 0 && t.lastRel == dir {
		return t.lastFD, name, nil
	}
	fd, err := openBeneath(t.fd, dir, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return -1, "", &fs.PathError{Op: "open", Path: filepath.Join(t.path, dir), Err: err}
	}
	if t.lastFD >= 0 {
		closeFD(t.lastFD)
	}
	t.lastRel, t.lastFD = dir, fd
	return fd, name, nil
}

// stat stats rel; a parent that is missing, not a directory or a symlink
// reads as missing (ENOENT).
func (t *tree) stat(rel string) (stat, error) {
	pfd, name, err := t.parent(rel)
	if err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) || errors.Is(err, unix.EXDEV) {
			return stat{}, unix.ENOENT
		}
		return stat{}, err
	}
	if name == "." {
		return statAt(pfd, "")
	}
	return statAt(pfd, name)
}

// openFile opens the regular file rel for reading.
func (t *tree) openFile(rel string) (*os.File, error) {
	fd, err := openBeneath(t.fd, rel, unix.O_RDONLY|unix.O_NONBLOCK)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: filepath.Join(t.path, rel), Err: err}
	}
	return os.NewFile(uintptr(fd), filepath.Join(t.path, rel)), nil
}

// readlink reads the symlink rel.
func (t *tree) readlink(rel string) (string, error) {
	pfd, name, err := t.parent(rel)
	if err != nil {
		return "", err
	}
	return readlinkAt(pfd, name)
}

func readlinkAt(dirfd int, name string) (string, error) {
	buf := make([]byte, 256)
	for {
		n, err := unix.Readlinkat(dirfd, name, buf)
		if err != nil {
			return "", &fs.PathError{Op: "readlink", Path: name, Err: err}
		}
		if n < len(buf) {
			return string(buf[:n]), nil
		}
		buf = make([]byte, 2*len(buf))
	}
}

// xattrNames lists a path's extended attributes (not following symlinks).
func xattrNames(path string) ([]string, error) {
	return listXattr(func(b []byte) (int, error) { return unix.Llistxattr(path, b) })
}

func fdXattrNames(fd int) ([]string, error) {
	return listXattr(func(b []byte) (int, error) { return unix.Flistxattr(fd, b) })
}

func listXattr(list func([]byte) (int, error)) ([]string, error) {
	buf := make([]byte, 256)
	for {
		n, err := list(buf)
		switch {
		case err == unix.ERANGE:
			buf = make([]byte, 2*len(buf))
			continue
		case err == unix.ENOTSUP:
			return nil, nil
		case err != nil:
			return nil, err
		}
		var names []string
		for _, s := range strings.Split(string(buf[:n]), "\x00") {
			if s != "" {
				names = append(names, s)
			}
		}
		return names, nil
	}
}

// getXattr reads one attribute; a missing one is nil.
func getXattr(path, name string) ([]byte, error) {
	return readXattr(func(b []byte) (int, error) { return unix.Lgetxattr(path, name, b) })
}

func fdGetXattr(fd int, name string) ([]byte, error) {
	return readXattr(func(b []byte) (int, error) { return unix.Fgetxattr(fd, name, b) })
}

func readXattr(get func([]byte) (int, error)) ([]byte, error) {
	buf := make([]byte, 256)
	for {
		n, err := get(buf)
		switch {
		case err == unix.ERANGE:
			buf = make([]byte, 2*len(buf))
			continue
		case err == unix.ENODATA || err == unix.ENOTSUP:
			return nil, nil
		case err != nil:
			return nil, err
		}
		return buf[:n], nil
	}
}

// renameNoReplace renames without replacing what may have appeared at
// the target meanwhile (another writer's file is never lost).
func renameNoReplace(ofd int, oname string, nfd int, nname string) error {
	err := unix.Renameat2(ofd, oname, nfd, nname, unix.RENAME_NOREPLACE)
	if err == unix.EINVAL { // a file system without RENAME_NOREPLACE
		var st unix.Stat_t
		if unix.Fstatat(nfd, nname, &st, unix.AT_SYMLINK_NOFOLLOW) == nil {
			return unix.EEXIST
		}
		err = unix.Renameat(ofd, oname, nfd, nname)
	}
	return err
}

// removeTree removes path and what it holds, whatever the modes. A file
// with chattr +i or +a cannot be removed even by root: say so.
func removeTree(path string) error {
	err := os.RemoveAll(path)
	if err == nil {
		return nil
	}
	var pe *fs.PathError
	if errors.As(err, &pe) && errors.Is(err, unix.EPERM) {
		for _, p := range []string{pe.Path, filepath.Dir(pe.Path)} {
			if flag := fileFlags(p); flag != "" {
				return fmt.Errorf("remove %s: %s is %s (chattr %s): clear it with chattr -ia %s, then retry: %w",
					path, p, map[string]string{"+i": "immutable", "+a": "append-only"}[flag], flag, p, err)
			}
		}
	}
	return fmt.Errorf("remove %s: %w", path, err)
}

// From linux/fs.h (x/sys does not name them).
const (
	fsImmutableFL = 0x00000010
	fsAppendFL    = 0x00000020
)

// fileFlags says "+i" or "+a" when path is immutable or append-only.
func fileFlags(path string) string {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return ""
	}
	defer closeFD(fd)
	flags, err := unix.IoctlGetUint32(fd, unix.FS_IOC_GETFLAGS)
	switch {
	case err != nil:
		return ""
	case flags&fsImmutableFL != 0:
		return "+i"
	case flags&fsAppendFL != 0:
		return "+a"
	}
	return ""
}

// closeFD closes a descriptor only read from or used to look up names:
// a failed close loses nothing.
func closeFD(fd int) { _ = unix.Close(fd) }

func closeRead(f *os.File) { _ = f.Close() }

// syncDir makes the names in dir durable.
func syncDir(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &fs.PathError{Op: "open", Path: dir, Err: err}
	}
	defer closeFD(fd)
	if err := unix.Fsync(fd); err != nil {
		return &fs.PathError{Op: "fsync", Path: dir, Err: err}
	}
	return nil
}

// readNames lists a directory, sorted.
func readNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer closeRead(f)
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	return names, nil
}

// readNamesFD lists the directory fd (consumed), sorted.
func readNamesFD(fd int, name string) ([]string, error) {
	f := os.NewFile(uintptr(fd), name)
	defer closeRead(f)
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	return names, nil
}
