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
