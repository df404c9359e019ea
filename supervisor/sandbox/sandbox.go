package sandbox

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/execgate/execgate/pathglob"
	"github.com/execgate/execgate/supervisor/execwatch"
	"github.com/execgate/execgate/supervisor/sandbox/netcapture"
)

// Limits are the resource limits of one run. Zero means unlimited.
type Limits struct {
	Timeout time.Duration // wall clock; the whole cgroup is killed when it expires
	Memory  int64         // bytes (memory.max / memory.limit_in_bytes)
	Pids    int64         // processes and threads (pids.max, plus a few for the init's threads)
	CPU     float64       // cores (cpu.max / cfs quota over a 100ms period)
	Output  int64         // bytes per stream; the rest is counted and dropped
}

// Spec is one run, with every setting already resolved by the caller.
type Spec struct {
	ID    string // run id; the cgroup is <root>/<Agent>/<ID>
	Agent string // agent name

	Shell  string   // absolute path; default "/bin/sh"
	Script string   // run as SHELL -c SCRIPT ARGS...
	Args   []string // $0, $1, ... of the script
	Dir    string   // working directory; must exist and lie outside /tmp

	UID, GID   uint32 // agent identity; never 0; no supplementary groups
	Home, User string // informational; the environment is Env

	// Env is the final environment, normally built with FilterEnv. Run
	// still drops the variables FilterEnv never passes.
	Env []string

	// DenyRead masks what it matches; nil masks nothing. Anchored patterns
	// are searched under their roots, floating ones under WalkRoots.
	DenyRead  *pathglob.Set
	WalkRoots []string // the profile's workdirs, the cwd and the home
	ReadOnly  []string // absolute paths, bind-remounted read-only (recursive)

	// DenyReadPatterns are DenyRead's patterns as written; only for naming
	// them when a run is refused because the walk for them was cut.
	DenyReadPatterns []string

	Network bool // false: an empty network namespace (no interface is up)

	// Overlays put a copy-on-write layer over directories (the workdirs of
	// a [changes] mode = "review" run): the run sees its own writes and
	// none reach the real tree. Mounted before read_only and the masks,
	// which sit on top.
	Overlays []Overlay

	// Egress, when set, gives the run a network namespace of its own in
	// which execgate is all there is (network.mode = "proxy"): every TCP
	// connection out is redirected to execgate's endpoints, UDP goes only
	// to its DNS, and the run's resolv.conf and hosts name nothing else.
	// Network must be false.
	Egress Egress

	Limits Limits

	Stdin          io.Reader // nil: /dev/null
	Stdout, Stderr io.Writer // nil: counted and dropped

	// ExecCheck, when set, is asked about every execve and execveat in the
	// run, the shell's own included, before the kernel performs it (seccomp
	// user notification, package execwatch). An error fails the exec with
	// EACCES. Nil runs without the exec check.
	ExecCheck execwatch.Checker

	// OnStart, when set, is called once the init is in the run's cgroup
	// and before any of the agent's code runs. An error aborts the run
	// (the daemon cannot write its start record, so nothing may run).
	OnStart func(pid int, cgroup string) error

	// StartInfo, when set, is filled in before OnStart is called, so the
	// start record can say what the sandbox set up.
	StartInfo *StartInfo
}

// Overlay is overlayfs over Lower, a directory whose device and inode
// (Dev, Ino) the caller recorded, with Upper and Work in root-owned
// directories of the caller's, on Lower's file system.
type Overlay struct {
	Lower, Upper, Work string
	Dev, Ino           uint64
}

// Egress serves a run's captured network (Spec.Egress).
type Egress interface {
	// Serve takes the endpoints opened in the run's namespace before the
	// run starts and serves them until the caller, once Run has returned,
	// stops it; from this call on, closing them is the Egress's job. An
	// error refuses the run.
	Serve(ep *netcapture.Endpoints) error
}

// StartInfo is what the sandbox set up for a run before any of its code ran.
type StartInfo struct {
	Masked  int  // paths masked (files and directories)
	MaskCut bool // the deny_read walk was cut; Run refuses such a run, so false once it starts
}

// Result describes how a run ended.
type Result struct {
	Exit   int // the shell's exit status; 128+Signal when killed by a signal
	Signal int // the signal that killed the shell, or 0

	Duration time.Duration // wall clock, from start to the end of the run
	CPU      time.Duration // user+system time of the whole cgroup
	MemPeak  int64         // peak memory of the cgroup, bytes (0 if unknown)

	StdoutBytes, StderrBytes int64 // everything produced, including dropped bytes
	Truncated                bool  // a stream went past Limits.Output

	TimedOut    bool // ended by Limits.Timeout
	Killed      bool // ended by ctx cancellation, Kill, KillAgent or Close
	OOMKilled   bool // the memory limit made the kernel kill a process
	PidsLimited bool // the pids limit refused at least one fork

	Masked  []string // paths masked (files and directories), resolved
	MaskCut bool     // the deny_read walk hit a bound or could not read a directory; the run was refused

	Cgroup string // the run's cgroup, relative to the hierarchy root
	Pid    int    // host pid of the run's init
}

// Leftover is a run cgroup that no live Runner owns, such as one left behind
// by a daemon that died.
type Leftover struct {
	Agent, ID string
	Cgroup    string // relative to the hierarchy root
}

// ErrUnsupported is returned where the sandbox cannot run (not Linux).
var ErrUnsupported = errors.New("sandbox: not supported on this platform")

// Option configures a Runner.
type Option func(*config) error

type config struct {
	cgroupRoot  string
	initPath    string
	v1Mount     string // force cgroup v1 with this mount root
	v2Mount     string // force cgroup v2 at this mount point
	walkEntries int
	walkDepth   int
	walkSkip    map[string]bool
}

func defaultConfig() config {
	return config{
		cgroupRoot:  "/execgate",
		initPath:    "/proc/self/exe",
		walkEntries: 20000,
		walkDepth:   16,
		walkSkip:    map[string]bool{"node_modules": true, ".git": true},
	}
}

// WithCgroupRoot sets the cgroup under which agent and run cgroups are made,
// relative to the hierarchy root. Default "/execgate". Under systemd with
// Delegate=yes it should be a child of the service's own cgroup.
func WithCgroupRoot(root string) Option {
	return func(c *config) error {
		root = filepath.Clean("/" + root)
		if root == "/" {
			return fmt.Errorf("sandbox: cgroup root must not be the hierarchy root")
		}
		c.cgroupRoot = root
		return nil
	}
}

// WithInitPath sets the binary re-executed as the init stage. It must call
// MaybeInit. Default "/proc/self/exe", which stays right across upgrades of
// the binary on disk.
func WithInitPath(path string) Option {
	return func(c *config) error {
		if !filepath.IsAbs(path) {
			return fmt.Errorf("sandbox: init path %q is not absolute", path)
		}
		c.initPath = path
		return nil
	}
}

// WithCgroupV2 forces cgroup v2 at mountpoint instead of asking
// cgroups.Mode(). Tests use it to drive the v2 code on a hybrid host.
func WithCgroupV2(mountpoint string) Option {
	return func(c *config) error {
		c.v2Mount, c.v1Mount = filepath.Clean(mountpoint), ""
		return nil
	}
}

// WithCgroupV1 forces cgroup v1 with the controllers mounted under mountRoot
// (normally /sys/fs/cgroup).
func WithCgroupV1(mountRoot string) Option {
	return func(c *config) error {
		c.v1Mount, c.v2Mount = filepath.Clean(mountRoot), ""
		return nil
	}
}

// WithWalkLimits bounds the deny_read walk per run: entries visited and
// directory depth below each root. Defaults 20000 and 16.
func WithWalkLimits(entries, depth int) Option {
	return func(c *config) error {
		if entries <= 0 || depth <= 0 {
			return fmt.Errorf("sandbox: walk limits must be positive")
		}
		c.walkEntries, c.walkDepth = entries, depth
		return nil
	}
}

// WithWalkSkip replaces the directory names the deny_read walk does not
// descend into (default node_modules and .git). A skipped directory that
// itself matches a pattern is still masked.
func WithWalkSkip(names ...string) Option {
	return func(c *config) error {
		c.walkSkip = map[string]bool{}
		for _, n := range names {
			c.walkSkip[n] = true
		}
		return nil
	}
}

// validName keeps run ids and agent names usable as one cgroup path element.
func validName(kind, s string) error {
	if s == "" || s == "." || s == ".." || len(s) > 128 {
		return fmt.Errorf("sandbox: invalid %s %q", kind, s)
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._-@", r)) {
			return fmt.Errorf("sandbox: invalid %s %q: only letters, digits and ._-@ are allowed", kind, s)
		}
	}
	return nil
}
