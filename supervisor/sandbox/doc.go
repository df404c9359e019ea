// Package sandbox runs an allowed script confined: it is the kernel side of
// execgate's enforcement (DESIGN.md, "Enforcement", layer 3). It knows
// nothing of profiles or policy; it takes a plain, already-resolved Spec.
//
// A [Runner] runs `SHELL -c SCRIPT ARGS...` for each [Spec] passed to
// [Runner.Run]. Each run gets:
//
//   - new mount, pid, ipc, uts and cgroup namespaces, and an empty network
//     namespace unless Spec.Network is set (one per agent, created once and
//     kept open: creating one per run is slow);
//   - a cgroup <root>/<agent>/<id> with the memory, pids and cpu limits. The
//     run is inside it before any of its code runs (CLONE_INTO_CGROUP on
//     cgroup v2, a pipe handshake on v1). Killing a run kills the whole
//     cgroup; the cgroup is removed when the run ends;
//   - the agent's uid and gid with no supplementary groups; no capabilities
//     in any set, the bounding set included; no_new_privs; a landlock scope
//     (where the kernel has it) that keeps abstract unix sockets and signals
//     inside the run; and a seccomp denylist (mount, ptrace, bpf, kexec,
//     modules, keyrings, io_uring, namespaces, ...) compiled once per Runner;
//   - a fresh /proc, a private /tmp and /dev/shm, Spec.ReadOnly paths
//     bind-remounted read-only (recursively), and what Spec.DenyRead matches
//     masked: files by an empty 0444 root-owned file, directories by an
//     empty read-only directory. Floating patterns are expanded at spawn by a
//     bounded walk of Spec.WalkRoots (Result.MaskCut tells when it was cut).
//
// # Init stage
//
// Go cannot run code between fork and exec, so the Runner re-executes the
// current binary (/proc/self/exe) as a hidden init stage, as runc and nsjail
// do. Every program using this package must call [MaybeInit] first thing in
// main (and in TestMain); in the init stage it never returns.
//
// The init is PID 1 of the run's pid namespace and non-dumpable from its
// start. It reads its configuration from a pipe (on v1 the parent sends it
// only once the init is in the cgroup), mounts, joins the network namespace,
// and confines the thread it will fork from: empty bounding set,
// no_new_privs, landlock, seccomp. It forks the shell, which takes the
// agent's uid, gid and empty group list in the child before exec, so no
// agent code ever runs privileged; the init then drops to the same identity
// itself (off the shell's start-up path). It reaps orphans, and reports the
// shell's status on a second pipe. Signals sent to it from inside the run
// are dropped by the kernel (its dispositions are reset to the default). When the shell
// exits the init exits, the kernel kills everything left in the pid
// namespace, and the Runner kills whatever is left in the cgroup and
// removes it.
//
// # Results and errors
//
// Run returns an error only when the sandbox could not be set up (or torn
// down); a run that ended by timeout, cancellation, [Runner.Kill], the OOM
// killer or a signal is described by its [Result]. A shell killed by signal
// N has Result.Signal N and Result.Exit 128+N, as a shell reports it.
//
// # Environment
//
// [FilterEnv] passes only the variables an admin listed, and sets HOME,
// USER, LOGNAME and PWD. Variables that turn an allowed program into
// arbitrary code or change how the shell reads the approved script (LD_*,
// GLIBC_TUNABLES, BASH_ENV, BASH_FUNC_*, NODE_OPTIONS, PYTHONPATH, IFS, ...;
// see [NeverPassed]) are dropped even when listed, and Run drops them from
// Spec.Env as well.
//
// # Known limits
//
//   - Masks are decided at spawn: a file created during a run under a denied
//     name is not masked in that run. Copies and hard links of a secret
//     under another name are not masked.
//   - Floating patterns are only searched under the walk roots; a directory
//     reached through a symlink out of them is not searched (a symlink whose
//     own target matches is masked at the target). The walk is bounded in
//     entries and depth and skips node_modules and .git (WithWalkSkip),
//     /proc, /sys, /dev and other pseudo file systems: see Result.MaskCut.
//   - A read-only path that does not exist at spawn is not protected.
//   - Runs of one agent share its network namespace (loopback down). Where
//     landlock scopes are missing (before Linux 6.12), concurrent runs of
//     the same agent can reach each other's abstract unix sockets, and
//     Network=true runs can reach the host's.
//   - The cgroup v1 handshake moves the init into five hierarchies, which
//     costs an RCU grace period per run; cgroup v2 avoids it.
package sandbox
