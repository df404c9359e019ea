// Package execwatch checks every execve and execveat inside the sandbox as
// it happens, with seccomp user notification, and confirms each allowed
// exec on what the kernel actually executed.
//
// The sandbox's init stage loads Filter with Install (a listener fd comes
// back) and hands that fd to the daemon, which serves it with Watch: for
// each trapped exec it reads the path and argv from the target's memory,
// resolves the path inside the target's own mount namespace and asks the
// Checker. Anything it cannot read or resolve is denied.
//
// What the supervisor reads can change before the kernel reads it: another
// thread, or another process sharing the memory, can flip the path or argv
// after the check (seccomp_unotify(2)). So an allowed exec is not simply
// continued. The watching thread first seizes the caller with ptrace
// (PTRACE_O_TRACEEXEC, PTRACE_O_EXITKILL) and interrupts it, then lets the
// call continue. The caller stops again either at the exec event, after
// the new image is loaded and before it runs its first instruction, or on
// its way back to user space when the exec failed. At the exec event the
// binary the kernel opened (/proc/PID/exe: device, inode, ctime) and the
// argv it copied (/proc/PID/cmdline) are compared with what was decided;
// on any difference the Checker decides again on what is really there, and
// a refusal kills the process before it runs.
package execwatch
