// Package execwatch checks every execve and execveat of a sandboxed run
// before the kernel performs it (seccomp user notification), and confirms
// each allowed exec on what the kernel actually executed.
//
// The pieces, in the order a run uses them: the daemon compiles [Filter]
// once; the run's init loads it with [Install] on the thread it forks the
// shell from and hands the listener over with [SendFD]; the daemon takes
// it with [RecvFD] and serves it with [Watch] until the run ends.
// [Supported] says whether the kernel can do all of this.
//
// What a [Checker] can rely on:
//
//   - Decide sees every exec of the run, one at a time, with the path and
//     argv read from the caller's memory and the path resolved in the
//     caller's own mount namespace. An exec that cannot be read or
//     resolved, or whose argv is over [MaxArgs] arguments or [MaxArgBytes]
//     bytes, comes with Exec.Err and is denied whatever Decide returns. A
//     missing file fails with ENOENT without asking.
//   - An allowed exec is not simply let go: what the caller's memory said
//     can change before the kernel reads it. The caller is held (ptrace)
//     until its new image is loaded (a caller that cannot be held is
//     refused); if the file or argv then differ from what was decided (a
//     "#!" script's interpreter, a race) or the file changed moments
//     before, Confirm decides on what is really there, and a refusal kills
//     the process before its first instruction.
//   - A decision still pending when the run ends is cut short: its ctx
//     ends with the run.
package execwatch
