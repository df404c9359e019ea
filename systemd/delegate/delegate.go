package delegate

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path"
	"slices"
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
	// The delegated cgroup is ours to configure: its children (the runs
	// subtree) get the controllers it has. Nothing above it is touched.
	if err := enableForChildren(dir); err != nil {
		return "", moved, err
	}
	return path.Join(parent, RunsLeaf), moved, nil
}

// runControllers are the controllers a run's limits use.
var runControllers = []string{"cpu", "memory", "pids"}

// enableForChildren writes +C to dir's cgroup.subtree_control for each run
// controller that dir itself has (cgroup.controllers). Only a cgroup with
// no processes of its own may do so: the daemon has moved to its leaf.
func enableForChildren(dir string) error {
	have, err := os.ReadFile(path.Join(dir, "cgroup.controllers"))
	if err != nil {
		return fmt.Errorf("cgroup v2: %w", err)
	}
	var want []string
	for _, c := range runControllers {
		if slices.Contains(strings.Fields(string(have)), c) {
			want = append(want, "+"+c)
		}
	}
	if len(want) == 0 {
		return nil
	}
	ctl := path.Join(dir, "cgroup.subtree_control")
	if err := os.WriteFile(ctl, []byte(strings.Join(want, " ")), 0o644); err != nil {
		return fmt.Errorf("cgroup v2: enable %s in %s: %w", strings.Join(want, " "), ctl, err)
	}
	return nil
}
