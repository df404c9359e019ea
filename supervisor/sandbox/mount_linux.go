package sandbox

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// maskStage holds the empty file and directory bind-mounted over denied
// paths. It lives on the run's fresh /tmp only while the masks are made.
const maskStage = "/tmp/.execgate-mask"

// setupMounts runs in the init, in its new mount namespace, as root.
//
// Mask and read_only targets were resolved by the daemon, which recorded
// each one's device and inode. Between that and now, another process of
// the agent (same uid, outside this run) may have swapped a component of
// such a path, so each target is opened again without following symlinks,
// checked against what the daemon recorded, and mounted over through that
// descriptor (open_tree and move_mount), never by path.
func setupMounts(cfg *initConfig) error {
	// First: nothing done below may propagate back to the host.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make / private: %w", err)
	}
	// A /proc for the new pid namespace: only the run's processes. Read-only,
	// so no process of the run can write another's /proc/PID/mem, which
	// would let it rewrite an allowed program's argv or code after the exec
	// check (writes through /proc/self/fd/N reach the file's own mount and
	// are not affected).
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC|unix.MS_RDONLY, ""); err != nil {
		return fmt.Errorf("mount /proc: %w", err)
	}
	if err := unix.Mount("tmpfs", "/tmp", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=1777"); err != nil {
		return fmt.Errorf("mount /tmp: %w", err)
	}
	// POSIX shared memory lives in files here; the ipc namespace does not
	// cover it.
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		if err := unix.Mount("tmpfs", "/dev/shm", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=1777"); err != nil {
			return fmt.Errorf("mount /dev/shm: %w", err)
		}
	}
	if len(cfg.ReadOnly)+len(cfg.MaskFiles)+len(cfg.MaskDirs)+len(cfg.NetFiles)+len(cfg.Overlays) == 0 {
		return nil
	}
	root, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open /: %w", err)
	}
	defer unix.Close(root)
	// First the overlays: read_only and the masks under a workdir must
	// sit on top of its overlay, or the overlay's view of the real tree
	// would show what they hide.
	for i, t := range cfg.Overlays {
		if err := mountOverlay(root, t, cfg.Uppers[i], cfg.Works[i]); err != nil {
			return err
		}
	}
	// In order, each target opened only once the mounts before it are made:
	// a mask under a read_only path lands on the read-only bind, not under
	// it (paths are sorted, so a read_only path comes before those below it).
	for _, t := range cfg.ReadOnly {
		if err := bindReadOnly(root, t); err != nil {
			return err
		}
	}
	// Before the masks: a deny_read pattern that covers one of these
	// files still hides it.
	if len(cfg.NetFiles) > 0 {
		if err := bindNetFiles(root, cfg.NetFiles, cfg.NetData); err != nil {
			return err
		}
	}
	if len(cfg.MaskFiles)+len(cfg.MaskDirs) > 0 {
		if err := applyMasks(root, cfg.MaskFiles, cfg.MaskDirs); err != nil {
			return err
		}
	}
	return nil
}

// openTarget opens t as an O_PATH descriptor without following any symlink
// (openNoSymlinks) and checks that it is the inode the daemon planned for.
// what names the rule ("read_only", "deny_read") in errors, which refuse
// the run.
func openTarget(root int, what string, t mountTarget) (int, error) {
	fd, err := openNoSymlinks(root, t.Path)
	if err != nil {
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.EXDEV) {
			return -1, fmt.Errorf("%s %s: a component of the path became a symlink after the daemon checked it; refusing to run", what, t.Path)
		}
		return -1, fmt.Errorf("%s %s: changed after the daemon checked it (%v); refusing to run", what, t.Path, errors.Unwrap(err))
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("%s %s: fstat: %w", what, t.Path, err)
	}
	if st.Ino != t.Ino || st.Dev != t.Dev && !overlaidAs(t.Path, st.Dev) {
		unix.Close(fd)
		return -1, fmt.Errorf("%s %s: not the file the daemon checked (device:inode %d:%d:%d, checked %d:%d:%d): the path changed while the run was starting; refusing to run",
			what, t.Path, unix.Major(st.Dev), unix.Minor(st.Dev), st.Ino, unix.Major(t.Dev), unix.Minor(t.Dev), t.Ino)
	}
	return fd, nil
}

// overlays are the overlay mounts made by mountOverlay: a path under one
// shows the overlay's device with the real file's inode (all layers on one
// file system, xino=off), so openTarget checks the inode alone there.
var overlays []struct {
	path string
	dev  uint64
}

func overlaidAs(path string, dev uint64) bool {
	for _, o := range overlays {
		if path != o.path && under(path, o.path) && dev == o.dev {
			return true
		}
	}
	return false
}

// mountOverlay mounts overlayfs over t, the workdir the daemon checked,
// through its descriptor (both as the mount point and as the lower layer,
// so no path the agent could swap is followed). upper and work are in the
// daemon's root-owned directories.
func mountOverlay(root int, t mountTarget, upper, work string) error {
	fd, err := openTarget(root, "changes", t)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	self := "/proc/self/fd/" + strconv.Itoa(fd)
	opts := "lowerdir=" + self + ",upperdir=" + upper + ",workdir=" + work + ",redirect_dir=off,index=off,metacopy=off,xino=off"
	if err := unix.Mount("overlay", self, "overlay", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		return fmt.Errorf("changes: overlay on %s: %w", t.Path, err)
	}
	var st unix.Stat_t
	if err := unix.Stat(t.Path, &st); err != nil {
		return fmt.Errorf("changes: overlay on %s: %w", t.Path, err)
	}
	overlays = append(overlays, struct {
		path string
		dev  uint64
	}{t.Path, st.Dev})
	return nil
}

// attachTree sets attr on the detached mount tree (recursively with
// AT_RECURSIVE in flags) and moves it onto the target descriptor. Before
// Linux 5.12 (no mount_setattr) it attaches first and remounts the top
// mount through the tree's own descriptor, with flags the MS_ equivalents.
func attachTree(tree, target int, attr uint64, recursive bool, msFlags uintptr) error {
	setFlags := uint(unix.AT_EMPTY_PATH)
	if recursive {
		setFlags |= unix.AT_RECURSIVE
	}
	ma := unix.MountAttr{Attr_set: attr}
	err := unix.MountSetattr(tree, "", setFlags, &ma)
	if err != nil && !errors.Is(err, unix.ENOSYS) {
		return fmt.Errorf("mount_setattr: %w", err)
	}
	if merr := unix.MoveMount(tree, "", target, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH); merr != nil {
		return fmt.Errorf("move_mount: %w", merr)
	}
	if err != nil { // ENOSYS: the top mount only; the tree is attached now
		// /proc is the init's own, and the tree's descriptor is the root of
		// the mount just attached.
		p := "/proc/self/fd/" + strconv.Itoa(tree)
		if err := unix.Mount("", p, "", unix.MS_REMOUNT|unix.MS_BIND|msFlags, ""); err != nil {
			return fmt.Errorf("remount: %w", err)
		}
	}
	return nil
}

// bindReadOnly makes t and every mount below it read-only: a recursive
// clone of the tree at t, made read-only while detached, moved onto t.
func bindReadOnly(root int, t mountTarget) error {
	fd, err := openTarget(root, "read_only", t)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	tree, err := unix.OpenTree(fd, "", unix.OPEN_TREE_CLONE|unix.O_CLOEXEC|unix.AT_RECURSIVE|unix.AT_EMPTY_PATH)
	if err != nil {
		return fmt.Errorf("read-only %s: open_tree: %w", t.Path, err)
	}
	defer unix.Close(tree)
	if err := attachTree(tree, fd, unix.MOUNT_ATTR_RDONLY, true, unix.MS_RDONLY); err != nil {
		return fmt.Errorf("read-only %s: %w", t.Path, err)
	}
	return nil
}

// applyMasks mounts an empty 0444 root-owned file over each denied file and
// an empty 0555 root-owned directory over each denied directory, both
// read-only. Masked paths are mount points, so the agent can neither
// rename nor hard-link the secret behind them.
func applyMasks(root int, files, dirs []mountTarget) error {
	emptyFile, emptyDir := maskStage+"/f", maskStage+"/d"
	if err := os.Mkdir(maskStage, 0o700); err != nil {
		return fmt.Errorf("masks: %w", err)
	}
	fd, err := unix.Open(emptyFile, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC, 0o444)
	if err != nil {
		return fmt.Errorf("masks: %w", err)
	}
	unix.Close(fd)
	if err := os.Mkdir(emptyDir, 0o555); err != nil {
		return fmt.Errorf("masks: %w", err)
	}
	for _, d := range dirs {
		if err := maskWith(root, emptyDir, d); err != nil {
			return err
		}
	}
	for _, f := range files {
		if err := maskWith(root, emptyFile, f); err != nil {
			return err
		}
	}
	// The mounts keep the inodes; clear the agent's /tmp.
	if err := unix.Unlink(emptyFile); err != nil {
		return fmt.Errorf("masks: %w", err)
	}
	if err := unix.Rmdir(emptyDir); err != nil {
		return fmt.Errorf("masks: %w", err)
	}
	if err := unix.Rmdir(maskStage); err != nil {
		return fmt.Errorf("masks: %w", err)
	}
	return nil
}

// maskWith mounts a read-only clone of src over the target t.
func maskWith(root int, src string, t mountTarget) error {
	return bindFileOver(root, src, "deny_read", t)
}

// bindFileOver mounts a read-only clone of src over the target t, which
// must still be the inode the daemon planned for; what names the setting
// in errors.
func bindFileOver(root int, src, what string, t mountTarget) error {
	const attr = unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV | unix.MOUNT_ATTR_NOEXEC
	const msFlags = unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
	target, err := openTarget(root, what, t)
	if err != nil {
		return err
	}
	defer unix.Close(target)
	// src is on the init's own /tmp, which nothing else can reach yet.
	tree, err := unix.OpenTree(unix.AT_FDCWD, src, unix.OPEN_TREE_CLONE|unix.O_CLOEXEC)
	if err != nil {
		return fmt.Errorf("%s %s: open_tree: %w", what, t.Path, err)
	}
	defer unix.Close(tree)
	if err := attachTree(tree, target, attr, false, msFlags); err != nil {
		return fmt.Errorf("%s %s: %w", what, t.Path, err)
	}
	return nil
}
