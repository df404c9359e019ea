package sandbox

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"golang.org/x/sys/unix"
)

// A run with a captured network (Spec.Egress) resolves through execgate's
// DNS in its own namespace and nothing else: its /etc/resolv.conf names
// that server alone, and its /etc/hosts holds only localhost, so no entry
// of the host's can send a name past the rules. Both are bound over the
// real files in the run's mount namespace; a missing file is left missing
// (the C library and Go then ask 127.0.0.1, which is execgate's DNS too).
var netFiles = []struct{ path, content string }{
	{"/etc/resolv.conf", "# execgate: names are answered by execgate's DNS in this run's network namespace\nnameserver 127.0.0.1\noptions edns0\n"},
	{"/etc/hosts", "# execgate: only localhost; other names go to execgate's DNS\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"},
}

// netHidden are the sockets of host daemons that resolve names for a
// client (systemd-resolved's varlink socket, which nss-resolve asks before
// DNS, and nscd's). A captured run must not reach them: they would answer
// with real addresses, bypassing the synthetic map, and would send any
// name to the host's resolvers. Their directories are masked with an
// empty one; the C library then falls back to DNS, which is execgate's.
var netHidden = []string{"/run/systemd/resolve", "/run/nscd", "/var/run/nscd"}

// planNetHidden adds the existing netHidden directories to the masked
// directories dirs, kept sorted; one already under a masked directory is
// hidden by it.
func planNetHidden(dirs []mountTarget) ([]mountTarget, error) {
	root, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("network: open /: %w", err)
	}
	defer unix.Close(root)
	for _, p := range netHidden {
		real, err := filepath.EvalSymlinks(p)
		if err != nil {
			continue // absent: nothing to hide
		}
		covered := false
		for _, d := range dirs {
			covered = covered || real == d.Path || under(real, d.Path)
		}
		if covered {
			continue
		}
		t, dir, err := statTarget(root, real)
		if err != nil || !dir {
			continue
		}
		dirs = append(dirs, t)
	}
	sort.Slice(dirs, func(i, j int) bool { return dirs[i].Path < dirs[j].Path })
	return dirs, nil
}

// netStage holds the files while the init binds them, like maskStage.
const netStage = "/tmp/.execgate-net"

// planNetFiles resolves the files netFiles replaces (through symlinks:
// resolv.conf is often one) and records each one's inode for the init.
func planNetFiles() (targets []mountTarget, contents []string, err error) {
	root, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("network files: open /: %w", err)
	}
	defer unix.Close(root)
	for _, f := range netFiles {
		real, err := filepath.EvalSymlinks(f.path)
		if gone(err) {
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("network files: %s: %w", f.path, err)
		}
		t, dir, err := statTarget(root, real)
		if err != nil {
			return nil, nil, fmt.Errorf("network files: %s: %w", f.path, err)
		}
		if dir || underAny(real, privatePaths) {
			return nil, nil, fmt.Errorf("network files: %s resolves to %s, which cannot be replaced by a file", f.path, real)
		}
		targets, contents = append(targets, t), append(contents, f.content)
	}
	return targets, contents, nil
}

// bindNetFiles runs in the init, after the read-only binds: it writes each
// file on the run's fresh /tmp, binds it read-only over its target (checked
// against the inode the daemon planned, as masks are) and removes the stage.
func bindNetFiles(root int, targets []mountTarget, contents []string) error {
	if len(targets) != len(contents) {
		return fmt.Errorf("network files: %d targets for %d files", len(targets), len(contents))
	}
	if err := os.Mkdir(netStage, 0o700); err != nil {
		return fmt.Errorf("network files: %w", err)
	}
	for i, t := range targets {
		src := filepath.Join(netStage, fmt.Sprint(i))
		if err := os.WriteFile(src, []byte(contents[i]), 0o444); err != nil {
			return fmt.Errorf("network files: %w", err)
		}
		if err := bindFileOver(root, src, "network file", t); err != nil {
			return err
		}
		if err := unix.Unlink(src); err != nil {
			return fmt.Errorf("network files: %w", err)
		}
	}
	if err := unix.Rmdir(netStage); err != nil {
		return fmt.Errorf("network files: %w", err)
	}
	return nil
}
