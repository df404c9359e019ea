// Package pathglob matches absolute paths against the file patterns of a
// profile's [files] section (deny_read, read_only).
//
// A pattern is one of:
//   - "/abs/path/glob": anchored at the root;
//   - "~" or "~/rest": anchored at the agent's home;
//   - anything else, such as ".env" or "**/.env.*": floating, matched at any
//     depth anywhere (a leading "**/" is implied).
//
// Within a path segment "*", "?" and "[...]" work as in path.Match; "**" is
// zero or more whole segments; "{a,b}" gives alternatives. A path matches when
// it, or any of its ancestors, matches: denying a directory denies what is in
// it.
//
// The static policy layer and the sandbox's mount masks both use this one
// implementation, so the two layers can never disagree about what a pattern
// covers.
package pathglob
