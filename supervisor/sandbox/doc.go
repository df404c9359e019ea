// Package sandbox runs one already-resolved [Spec] confined: `SHELL -c
// SCRIPT ARGS...` in new mount, pid, ipc, uts and cgroup namespaces, an
// empty network namespace unless Spec.Network, as the agent's uid and gid
// with no capabilities, no_new_privs, landlock scopes where the kernel has
// them and a seccomp denylist, with Spec.DenyRead masked, Spec.ReadOnly
// read-only, a private /tmp and the Spec.Limits of its own cgroup
// <root>/<agent>/<id>. It knows nothing of profiles or policy.
//
// What a caller must do:
//
//   - call [MaybeInit] first thing in main (and in TestMain): a [Runner]
//     re-executes the binary (/proc/self/exe by default) as each run's
//     init, and in that stage MaybeInit never returns;
//   - make the Runner as root. Runners that share a cgroup root see each
//     other's runs as leftovers: give each daemon its own.
//
// What [Runner.Run] guarantees:
//
//   - nothing of the agent's runs before the run is in its cgroup, its
//     timeout is armed and Spec.OnStart has returned nil (an error from
//     OnStart ends the run unstarted);
//   - with Spec.ExecCheck, every execve and execveat of the run, the
//     shell's own first, waits for the Checker (package execwatch), whose
//     decisions end with the run;
//   - it returns once every process of the run is dead and its cgroup is
//     removed; its error is for a sandbox that could not be set up or torn
//     down (a deny_read walk cut by a bound refuses the run: no bound fails
//     open). A timeout, [Runner.Kill], ctx, the OOM killer or a signal are
//     told by the [Result]; a shell killed by signal N has Exit 128+N.
//
// On cgroup v2 the Runner writes cgroup.subtree_control only in its root
// and the agent cgroups below it, never above the root; the controllers
// the root itself gets are its parent's to enable. [Runner.Leftovers] and
// [Runner.RemoveLeftovers] find and remove the run cgroups of a daemon
// that died, and [Runner.CgroupDir] says where their processes are listed.
//
// [FilterEnv] builds Spec.Env from an admin's list and never passes the
// variables [NeverPassed] names; Run drops those from Spec.Env as well.
// What the sandbox does not cover (masks decided at spawn, shared network
// namespaces per agent, ...) is listed in the README's "Known limits".
package sandbox
