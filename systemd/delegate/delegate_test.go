package delegate

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// The v2 path runs where the host is unified; here a directory stands in
// for the cgroup2 mount (the code only makes directories and writes
// cgroup.procs), with a real trusted.delegate attribute on it.
func TestRootV2Delegated(t *testing.T) {
	mnt := t.TempDir()
	svc := filepath.Join(mnt, "system.slice", "execgated.service")
	if err := os.MkdirAll(svc, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setxattr(svc, "trusted.delegate", []byte("1"), 0); err != nil {
		t.Fatalf("set trusted.delegate (tests run as root): %v", err)
	}
	os.WriteFile(filepath.Join(svc, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644)
	os.WriteFile(filepath.Join(svc, "cgroup.controllers"), []byte("cpuset cpu io memory pids\n"), 0o444)
	self := []byte("0::/system.slice/execgated.service\n")
	h := Host{V2Mount: mnt, SelfCgrp: self, Delegated: Delegated, Move: movePid}
	root, moved, err := Root(h)
	if err != nil || !moved || root != "/system.slice/execgated.service/runs" {
		t.Fatalf("Root = %q, %v, %v", root, moved, err)
	}
	b, err := os.ReadFile(filepath.Join(svc, "daemon", "cgroup.procs"))
	if err != nil || string(b) != strconv.Itoa(os.Getpid()) {
		t.Errorf("daemon leaf cgroup.procs = %q, %v; want this pid", b, err)
	}
	// The runs subtree gets the run controllers the service has, written
	// in the service's own cgroup (the delegated one), never above it.
	if b, err := os.ReadFile(filepath.Join(svc, "cgroup.subtree_control")); err != nil || string(b) != "+cpu +memory +pids" {
		t.Errorf("service cgroup.subtree_control = %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(mnt, "system.slice", "cgroup.subtree_control")); err == nil {
		t.Error("a cgroup above the delegated one was written")
	}

	// Started again in the leaf (the daemon already moved): no second move.
	h.SelfCgrp = []byte("0::/system.slice/execgated.service/daemon\n")
	h.Move = func(string) error { t.Error("moved twice"); return nil }
	if root, moved, err := Root(h); err != nil || moved || root != "/system.slice/execgated.service/runs" {
		t.Errorf("in the leaf: Root = %q, %v, %v", root, moved, err)
	}

	// A failed move is an error, not a silent fallback: the runs would
	// otherwise land where systemd does not expect them.
	h.SelfCgrp = self
	h.Move = func(string) error { return unix.EBUSY }
	if _, _, err := Root(h); err == nil {
		t.Error("a failed move was not reported")
	}
}

func TestRootNotDelegated(t *testing.T) {
	mnt := t.TempDir()
	os.MkdirAll(filepath.Join(mnt, "user.slice", "session-1.scope"), 0o755)
	for _, h := range []Host{
		{V2Mount: "", SelfCgrp: []byte("0::/\n4:memory:/x\n")}, // v1 and hybrid hosts
		{V2Mount: mnt, SelfCgrp: []byte("0::/user.slice/session-1.scope\n"), Delegated: Delegated},
		{V2Mount: mnt, SelfCgrp: []byte("0::/\n"), Delegated: Delegated},
		{V2Mount: mnt, SelfCgrp: nil, Delegated: Delegated},
	} {
		h.Move = func(string) error { t.Error("moved out of a cgroup that was not delegated"); return nil }
		if root, moved, err := Root(h); err != nil || moved || root != DefaultRoot {
			t.Errorf("%q: Root = %q, %v, %v; want %s", h.SelfCgrp, root, moved, err, DefaultRoot)
		}
	}
	// A delegated cgroup that holds other processes (a test runner's
	// scope, say) is not the daemon's to split.
	svc := filepath.Join(mnt, "system.slice", "runner.service")
	os.MkdirAll(svc, 0o755)
	if err := unix.Setxattr(svc, "trusted.delegate", []byte("1"), 0); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(svc, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())+"\n1\n"), 0o644)
	h := Host{V2Mount: mnt, SelfCgrp: []byte("0::/system.slice/runner.service\n"), Delegated: Delegated,
		Move: func(string) error { t.Error("moved out of a shared cgroup"); return nil }}
	if root, moved, err := Root(h); err != nil || moved || root != DefaultRoot {
		t.Errorf("shared delegated cgroup: Root = %q, %v, %v", root, moved, err)
	}
}

func TestOwnV2(t *testing.T) {
	for in, want := range map[string]string{
		"0::/system.slice/execgated.service\n":    "/system.slice/execgated.service",
		"12:pids:/x\n1:name=systemd:/y\n0::/z/\n": "/z",
		"12:pids:/x\n": "",
		"":             "",
	} {
		if got := OwnV2([]byte(in)); got != want {
			t.Errorf("OwnV2(%q) = %q, want %q", in, got, want)
		}
	}
}
