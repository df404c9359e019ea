// Package delegate decides where execgated makes its run cgroups.
//
// On cgroup v1 (and hybrid hosts) runs live under /execgate in each
// controller hierarchy, outside systemd's name=systemd tree, as before.
//
// On cgroup v2 with Delegate=yes, systemd hands the service its own cgroup
// (/system.slice/execgated.service) and everything below it. The kernel's
// "no internal processes" rule allows controllers to be enabled for child
// cgroups only when the cgroup itself holds no process, so the daemon
// first moves itself into a leaf, <own>/daemon, and the runs become
// siblings under <own>/runs/<agent>/<id>. Every run is then inside the
// unit: systemd accounts for it, KillMode= reaches it, and the daemon
// never writes outside the subtree it was given.
//
// The daemon takes its own cgroup over only when systemd marked it as
// delegated (the trusted.delegate or user.delegate extended attribute,
// which systemd sets on every cgroup it delegates) and the daemon is the
// only process in it. Anything else (the daemon started by hand in a login
// session, by a test runner inside a delegated scope) keeps /execgate:
// moving processes it does not own would break whoever owns them.
package delegate

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// DefaultRoot is the run cgroup root outside a delegated v2 subtree.
const DefaultRoot = "/execgate"

// Leaf names below the delegated cgroup.
const (
	DaemonLeaf = "daemon"
	RunsLeaf   = "runs"
)

// Host describes what Root looks at; the zero fields are filled from the
// running system by System.
type Host struct {
	V2Mount   string                   // the cgroup2 mount, "" when the host is not unified
	SelfCgrp  []byte                   // the contents of /proc/self/cgroup
	Delegated func(dir string) bool    // whether the cgroup directory was delegated to us
	Move      func(procs string) error // moves this process into a cgroup.procs file
}

// System returns the running host's view: v2 when /sys/fs/cgroup is a
// cgroup2 mount.
func System() Host {
	h := Host{Delegated: Delegated, Move: movePid}
	var st unix.Statfs_t
	if unix.Statfs("/sys/fs/cgroup", &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
		h.V2Mount = "/sys/fs/cgroup"
	}
	h.SelfCgrp, _ = os.ReadFile("/proc/self/cgroup")
	return h
}

// OwnV2 returns this process's cgroup v2 path from /proc/self/cgroup (the
// "0::" line), or "" when there is none.
func OwnV2(selfCgroup []byte) string {
	for _, l := range bytes.Split(selfCgroup, []byte("\n")) {
		if p, ok := bytes.CutPrefix(l, []byte("0::")); ok {
			return path.Clean(string(p))
		}
	}
	return ""
}

// Delegated reports whether systemd delegated the cgroup directory dir: it
// carries trusted.delegate=1 (or user.delegate=1, set for user managers).
func Delegated(dir string) bool {
	for _, attr := range []string{"trusted.delegate", "user.delegate"} {
		buf := make([]byte, 8)
		if n, err := unix.Getxattr(dir, attr, buf); err == nil && strings.TrimSpace(string(buf[:n])) == "1" {
			return true
		}
	}
	return false
}

// onlyUs reports whether the cgroup directory holds no process but this
// one (a missing cgroup.procs counts as empty).
func onlyUs(dir string) bool {
	b, err := os.ReadFile(path.Join(dir, "cgroup.procs"))
	if err != nil {
		return errors.Is(err, os.ErrNotExist)
	}
	self := strconv.Itoa(os.Getpid())
	for _, f := range strings.Fields(string(b)) {
		if f != self {
			return false
		}
	}
	return true
}

func movePid(procs string) error {
	return os.WriteFile(procs, []byte(strconv.Itoa(os.Getpid())), 0)
}

// Root decides the run cgroup root (relative to the hierarchy root, as
// sandbox.WithCgroupRoot takes it). On a delegated v2 cgroup it first moves
// the daemon into <own>/daemon; moved says it did.
func Root(h Host) (root string, moved bool, err error) {
	if h.V2Mount == "" {
		return DefaultRoot, false, nil
	}
	own := OwnV2(h.SelfCgrp)
	if own == "" || own == "/" {
		return DefaultRoot, false, nil
	}
	base := path.Base(own)
	parent := own
	if base == DaemonLeaf {
		// A daemon that already moved itself (re-executed in place).
		parent = path.Dir(own)
	}
	dir := path.Join(h.V2Mount, parent)
	if h.Delegated == nil || !h.Delegated(dir) || !onlyUs(dir) {
		return DefaultRoot, false, nil
	}
	if base != DaemonLeaf {
		leaf := path.Join(dir, DaemonLeaf)
		if err := os.Mkdir(leaf, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return "", false, fmt.Errorf("cgroup v2: make the daemon's leaf %s: %w", leaf, err)
		}
		if err := h.Move(path.Join(leaf, "cgroup.procs")); err != nil {
			return "", false, fmt.Errorf("cgroup v2: move the daemon into %s: %w", leaf, err)
		}
		moved = true
	}
	return path.Join(parent, RunsLeaf), moved, nil
}
