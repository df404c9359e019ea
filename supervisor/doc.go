// Package supervisor is execgated's request lifecycle: it identifies the
// caller from the kernel (SO_PEERCRED, once per connection), maps it to a
// profile, decides the script (package policy), writes the audit record
// before anything runs, runs what is allowed in the sandbox
// (supervisor/sandbox), streams the output and writes the end record.
//
// It serves two sockets. The agent socket answers /v1/exec, /v1/check and
// /v1/whoami, for the caller's own profile only. The admin socket serves
// root and the configured admin uids and groups. Every handler starts with
// its permission check.
package supervisor
