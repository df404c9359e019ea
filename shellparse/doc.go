// Package shellparse turns a shell script into every simple command it would
// run, using mvdan.cc/sh/v3/syntax.
//
// Parse walks pipelines, lists, subshells, brace groups, command and process
// substitution, functions, loops, conditionals and here-documents. It
// recurses into scripts handed to a shell (sh -c, bash -lc, eval, trap, git
// aliases, watch, su -c, flock -c, script -c), unwraps wrappers (env, nice,
// timeout, xargs, sudo, find -exec, ...) so that both the wrapper and the
// wrapped command are reported, resolves each program through PATH to its
// real path, and normalises tool-specific global options (git -C, npm
// --prefix) so rules match the subcommand.
//
// A word whose value is not knowable before the script runs ($X, $(cmd),
// globs, brace expansion) is marked Dynamic or Multi rather than guessed:
// the runtime exec check decides those. The package never runs anything and
// knows nothing of profiles or the daemon.
//
// Program lookup is Options.LookPath: LookPath asks the file system each
// time, and a Resolver (held by its user, with its own TTL and clock)
// keeps answers for a short while; without one, Parse caches for that one
// call. The package keeps no state of its own between calls.
package shellparse
