// Package execwatch checks every execve and execveat inside the sandbox as
// it happens, with seccomp user notification.
//
// The sandbox's init stage loads Filter with Install (a listener fd comes
// back) and hands that fd to the daemon, which serves it with Watch: for
// each trapped exec it reads the path and argv from the target's memory,
// resolves the path inside the target's own mount namespace, asks the
// caller's decide function, and lets the call continue or fails it with
// EACCES. Anything it cannot read or resolve is denied.
//
// The kernel cannot re-check what the supervisor read: a thread of the
// caller could change the argv memory after the check and before the
// kernel copies it (see seccomp_unotify(2)). The other layers (mount masks,
// no_new_privs, the syscall denylist, read-only binds) stand behind it.
package execwatch
