package shellparse

import (
	"path/filepath"
	"strings"

	"mvdan.cc/sh/v3/syntax"
)

// builtins never exec a program by themselves. Those that run other
// commands (eval, exec, command, builtin, source, trap) are handled apart.
var builtins = setOf(":", "[", "alias", "bg", "break", "cd", "continue", "echo", "exit",
	"export", "false", "fc", "fg", "getopts", "hash", "jobs", "kill", "local", "printf",
	"pwd", "read", "readonly", "return", "set", "shift", "test", "times", "true", "type",
	"ulimit", "umask", "unalias", "unset", "wait", "caller", "compgen", "complete",
	"compopt", "declare", "dirs", "disown", "help", "history", "let", "logout", "mapfile",
	"popd", "pushd", "readarray", "shopt", "suspend", "typeset",
	"eval", "exec", "command", "builtin", "source", ".", "trap")

// shells take a script with -c.
var shells = setOf("sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "yash", "posh", "rbash", "lksh", "ksh93", "busybox-sh")

func setOf(names ...string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}

// ToolName is the name wrapper and normaliser tables are keyed by: the real
// program's name, or its trusted alias when the real name is not one we know
// (npm is npm-cli.js), or the name as written when it was not resolved.
func ToolName(written string, p Program) string {
	// Programs in git's exec path are git run under a dashed name.
	if strings.HasPrefix(filepath.Base(written), "git-") && (filepath.Base(p.Path) == "git" || filepath.Dir(p.Path) == gitExecPath) {
		return "git"
	}
	if p.Path == "" {
		return filepath.Base(written)
	}
	real := filepath.Base(p.Path)
	if p.Alias != "" && !known(real) && known(p.Alias) {
		return p.Alias
	}
	return real
}

func known(name string) bool {
	_, w := wrappers[name]
	_, n := normalisers[name]
	return w || n || shells[name] || name == "find"
}

// call handles one simple command: reports it, then whatever it runs.
// stdin is the literal text a here-document feeds it, if any.
func (f *frame) call(words []Word, redirs []Redirect, pos Pos, via []string, stdin *string) error {
	w0 := words[0]
	// Aliases apply to the first word as written (dash expands them in
	// scripts; bash with expand_aliases).
	if w0.Known() && !strings.Contains(w0.Text, "/") {
		if a, ok := f.p.aliases[w0.Text]; ok {
			delete(f.p.aliases, w0.Text) // an alias does not expand inside itself
			defer func() { f.p.aliases[w0.Text] = a }()
			return f.nested(a+" "+quoteWords(words[1:]), f.lang, pos, withVia(via, "alias "+w0.Text))
		}
	}
	inv := Invocation{Args: words, Redirects: redirs, Pos: pos, Via: via, Dir: f.p.cwd}
	name := ""
	switch {
	case !w0.Known():
		// Unknown program: only the runtime check can decide.
	case !strings.Contains(w0.Text, "/") && f.funcs[w0.Text]:
		inv.Role = Function
	case !strings.Contains(w0.Text, "/") && builtins[w0.Text]:
		inv.Role = Builtin
		name = w0.Text
	default:
		prog, ok := f.resolve(w0.Text)
		inv.Prog, inv.Alias, inv.Unresolvable = prog.Path, prog.Alias, !ok
		name = ToolName(w0.Text, prog)
	}
	if name == "" {
		return f.emit(inv)
	}
	if err := f.builtinEffects(name, words); err != nil {
		return err
	}
	var extra []func() error
	// Tool normalisation (git, npm) may expand an alias into a script.
	if n, ok := normalisers[name]; ok && inv.Role == Command {
		norm := n(words, inv.Prog, f.p.opts.Path)
		inv.Norm = norm.args
		if norm.script != "" {
			s, label := norm.script, norm.label
			extra = append(extra, func() error { return f.nested(s, syntax.LangPOSIX, pos, withVia(via, label)) })
		}
	}
	inners := Unwrap(name, inv.MatchArgs(), stdin)
	for _, in := range inners {
		if in.Transparent {
			inv.Role = Wrapper
		}
	}
	if err := f.emit(inv); err != nil {
		return err
	}
	for _, in := range inners {
		v := withVia(via, in.Label)
		var err error
		switch {
		case in.Unknown:
			err = f.unknownScript(pos, v)
		case in.Script != "":
			lang := syntax.LangPOSIX // watch, su -c, flock -c run sh
			switch {
			case in.Shell != "":
				lang = langOf(in.Shell)
			case in.SameShell:
				lang = f.lang
			}
			err = f.nested(in.Script, lang, pos, v)
		case len(in.Args) > 0:
			err = f.call(in.Args, nil, pos, v, nil)
		}
		if err != nil {
			return err
		}
	}
	for _, e := range extra {
		if err := e(); err != nil {
			return err
		}
	}
	return nil
}

// builtinEffects tracks what changes how later words resolve.
func (f *frame) builtinEffects(name string, words []Word) error {
	switch name {
	case "cd", "pushd", "popd":
		// Tracking cd statically is guesswork across branches and loops;
		// relative paths after one are left to the kernel.
		f.p.cwd = ""
	case "alias":
		for _, w := range words[1:] {
			if !w.Known() {
				continue
			}
			if k, v, ok := strings.Cut(w.Text, "="); ok {
				f.p.aliases[k] = v
			}
		}
	case "hash":
		// hash -p PATH NAME makes NAME run any program.
		for _, w := range words[1:] {
			if !w.Known() || strings.HasPrefix(w.Text, "-") && strings.Contains(w.Text, "p") {
				f.p.pathTainted = true
			}
		}
	case "read", "mapfile", "readarray", "getopts", "printf":
		for _, w := range words[1:] {
			if w.Text == "PATH" {
				f.p.pathTainted = true
			}
		}
	}
	return nil
}

// quoteWords renders words back as shell text, single-quoting known ones.
func quoteWords(ws []Word) string {
	var b strings.Builder
	for i, w := range ws {
		if i > 0 {
			b.WriteByte(' ')
		}
		if !w.Known() {
			b.WriteString(w.Text)
			continue
		}
		b.WriteString(Quote(w.Text))
	}
	return b.String()
}

// Quote single-quotes s for a POSIX shell.
func Quote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=:,+@%", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
