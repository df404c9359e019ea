// Package integration holds execgate's end-to-end tests: they build the real
// binaries, start execgated on temporary directories, and drive it as
// unprivileged agent uids through egsh, raw HTTP and the execgate CLI, in
// the real kernel. They need root and fail (never skip) without it.
package integration
