package sandbox

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// maskStage holds the empty file and directory bind-mounted over denied
// paths. It lives on the run's fresh /tmp only while the masks are made.
const maskStage = "/tmp/.execgate-mask"

// setupMounts runs in the init, in its new mount namespace, as root.
func setupMounts(cfg *initConfig) error {
	// First: nothing done below may propagate back to the host.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make / private: %w", err)
	}
	// A /proc for the new pid namespace: only the run's processes.
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
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
	for _, p := range cfg.ReadOnly {
		if err := bindReadOnly(p); err != nil {
			return err
		}
	}
	if len(cfg.MaskFiles)+len(cfg.MaskDirs) > 0 {
		if err := applyMasks(cfg.MaskFiles, cfg.MaskDirs); err != nil {
			return err
		}
	}
	return nil
}

// bindReadOnly makes p and every mount below it read-only.
func bindReadOnly(p string) error {
	if err := unix.Mount(p, p, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("read-only %s: bind: %w", p, err)
	}
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}
	err := unix.MountSetattr(unix.AT_FDCWD, p, unix.AT_RECURSIVE, &attr)
	if errors.Is(err, unix.ENOSYS) {
		// Before Linux 5.12: the top mount only.
		err = unix.Mount("", p, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, "")
	}
	if err != nil {
		return fmt.Errorf("read-only %s: remount: %w", p, err)
	}
	return nil
}

// applyMasks bind-mounts an empty 0444 root-owned file over each denied
// file and an empty 0555 root-owned directory over each denied directory,
// both read-only. Masked paths are mount points, so the agent can neither
// rename nor hard-link the secret behind them.
func applyMasks(files, dirs []string) error {
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
	mask := func(src, target string) error {
		if err := unix.Mount(src, target, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("mask %s: %w", target, err)
		}
		flags := uintptr(unix.MS_REMOUNT | unix.MS_BIND | unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC)
		if err := unix.Mount("", target, "", flags, ""); err != nil {
			return fmt.Errorf("mask %s: remount read-only: %w", target, err)
		}
		return nil
	}
	for _, d := range dirs {
		if err := mask(emptyDir, d); err != nil {
			return err
		}
	}
	for _, f := range files {
		if err := mask(emptyFile, f); err != nil {
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
