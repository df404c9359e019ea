package policy

import (
	"fmt"
	"path"
	"strings"

	"github.com/execgate/execgate/profiles"
	"github.com/execgate/execgate/shellparse"
)

// Exec is one execve seen by the kernel-side check, after the watcher
// resolved it in the sandbox's own mount namespace.
type Exec struct {
	Path  string // real path of the program
	Alias string // trusted link name it was called by, if any
	Argv  []string
	Cwd   string
	// Identity is the program a rule names whose content this file has
	// (a renamed copy), if any.
	Identity string
	// UnderAny names the allow rule with nested = "any" that allowed an
	// ancestor of this process, if one did.
	UnderAny *profiles.Rule
	// Continues names the rule that allowed the script this exec is the
	// interpreter of: the same process, allowed to run /usr/bin/npm (a
	// "#!/usr/bin/env node" script), now runs node /usr/bin/npm with the
	// same arguments.
	Continues *profiles.Rule
}

// DecideExec decides one exec inside a running script with the same rules
// as the static layer. Everything is known by now, so a rule that could
// still only "maybe" match (an unknown git subcommand may be an alias)
// decides as if it matched. In allowlist mode a program that no allow rule
// names still runs when a nested_allow pattern names it, when an ancestor
// was allowed by a rule with nested = "any", or when it is a wrapper or a
// shell running a script (what they run is checked in turn). Deny and ask
// rules apply at every depth.
func DecideExec(p *profiles.Profile, e Exec) Verdict {
	args := make([]shellparse.Word, len(e.Argv))
	for i, a := range e.Argv {
		args[i] = shellparse.Word{Text: a}
	}
	if len(args) == 0 {
		// execve(path, NULL): the program sees no argv[0]; match it by path.
		args = []shellparse.Word{{Text: e.Path}}
	}
	inv := shellparse.Invocation{Args: args, Prog: e.Path, Alias: e.Alias, Dir: e.Cwd, Identity: e.Identity}
	name := shellparse.ToolName(args[0].Text, shellparse.Program{Path: e.Path, Alias: e.Alias})
	if e.Identity != "" {
		name = e.Identity // a copy of git is normalised as git
	}
	if norm, _ := shellparse.Normalize(name, args, ""); len(norm) > 0 {
		inv.Norm = norm
	}
	for _, in := range shellparse.Unwrap(name, inv.MatchArgs(), nil) {
		if in.Transparent {
			inv.Role = shellparse.Wrapper
		}
	}
	if isLoader(e.Path) {
		// ld.so loads the program named in its arguments without an exec:
		// that program would never pass through this check.
		return Verdict{Inv: inv, Decision: profiles.Deny, Rule: profiles.Loc{File: p.File},
			Reason: "running the dynamic loader directly hides the program it loads from the exec check"}
	}
	v := decideOne(p, &inv, false)
	if v.Decision == profiles.Allow || p.Security != profiles.SecurityAllowlist {
		return v
	}
	// A miss in allowlist mode: deny and ask verdicts that came from a
	// rule stand; a plain miss may still be allowed as a nested program.
	if !v.Miss {
		return v
	}
	a := toArgv(&inv)
	for i := range p.NestedAllow {
		r := &p.NestedAllow[i]
		if r.Pattern.Match(a, profiles.Allow) == profiles.Yes {
			v.Decision, v.Rule, v.Match, v.Reason, v.By, v.Miss = profiles.Allow, r.Loc, r.Match, fmt.Sprintf("matches nested_allow %q", r.Match), r, false
			return v
		}
	}
	switch {
	case e.Continues != nil:
		r := e.Continues
		v.Decision, v.Rule, v.Match, v.By, v.Miss = profiles.Allow, r.Loc, r.Match, r, false
		v.Reason = fmt.Sprintf("the interpreter of a script allowed by %q", r.Match)
	case e.UnderAny != nil:
		r := e.UnderAny
		v.Decision, v.Rule, v.Match, v.By, v.Miss = profiles.Allow, r.Loc, r.Match, r, false
		v.Reason = fmt.Sprintf("started under %q, whose rule says nested = \"any\"", r.Match)
	}
	return v
}

// isLoader reports whether path is the dynamic loader (ld-linux*.so*,
// ld.so, ld64.so*, ld-musl*).
func isLoader(p string) bool {
	b := path.Base(p)
	return b == "ld.so" || strings.HasPrefix(b, "ld-linux") && strings.Contains(b, ".so") ||
		strings.HasPrefix(b, "ld64.so") || strings.HasPrefix(b, "ld-musl")
}
