package shellparse

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"mvdan.cc/sh/v3/syntax"
)

// Options describe the environment the script would run in.
type Options struct {
	Dir  string // working directory (absolute)
	Path string // PATH for program lookup; DefaultPath when empty
	Home string // the agent's home, for ~; "" leaves ~ words unknowable
	// Shell is the shell that runs the script (default /bin/sh). It picks
	// the grammar: dash and bash disagree on text such as ((x)), and the
	// analysis must read the script the way it will run.
	Shell string
	// LookPath resolves a program. Nil means the built-in lookup (a PATH
	// search plus symlink resolution) with a cache that lives as long as
	// this one Parse; a caller that parses again and again passes the
	// LookPath of a Resolver it holds.
	LookPath func(name, dir, path string) Program
}

// DefaultPath is used when the caller gives no PATH.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Limits on what one script may make the walker do.
const (
	MaxNesting     = 16      // nested -c scripts, eval, aliases
	MaxInvocations = 100_000 // simple commands in one script
	maxDepth       = 2_000   // syntax nesting: subshells in subshells
)

// ErrTooComplex is returned for scripts past the limits above.
var ErrTooComplex = errors.New("script too complex to analyse")

// Parse analyses a script as `sh -c SCRIPT` would run it.
func Parse(script string, opts Options) (invs []Invocation, err error) {
	// The daemon must never crash on input: a panic in the parser or the
	// walk is an analysis failure, which callers deny.
	defer func() {
		if r := recover(); r != nil {
			invs, err = nil, &Error{Msg: fmt.Sprintf("internal error analysing the script: %v", r)}
		}
	}()
	if opts.Path == "" {
		opts.Path = DefaultPath
	}
	if opts.LookPath == nil {
		opts.LookPath = new(Resolver).LookPath
	}
	p := &parser{opts: opts, aliases: map[string]string{}, cwd: opts.Dir}
	if opts.Shell == "" {
		opts.Shell = "/bin/sh"
	}
	if err := p.script(script, langOf(opts.Shell), nil, nil, 0); err != nil {
		return p.out, err
	}
	return p.out, nil
}

type parser struct {
	opts        Options
	out         []Invocation
	aliases     map[string]string
	pathTainted bool   // PATH or the hash table changed: bare names resolve unknowably
	cwd         string // "" once a cd makes it unknowable
}

// frame is one script being walked: the top level, or a nested -c script.
type frame struct {
	p     *parser
	src   string
	lang  syntax.LangVariant
	outer *Pos     // position of the command holding this script, if nested
	via   []string // what the script was reached through
	depth int      // nesting of scripts
	funcs map[string]bool
}

// langOf returns the grammar of a shell. Shells we do not know are read as
// POSIX: a bash-only construct then fails to parse (and is denied) rather
// than being misread.
func langOf(shell string) syntax.LangVariant {
	switch name := filepath.Base(shell); name {
	case "bash", "rbash", "zsh", "ksh", "ksh93", "yash":
		return syntax.LangBash
	case "mksh", "lksh":
		return syntax.LangMirBSDKorn
	}
	return syntax.LangPOSIX
}

func (p *parser) script(src string, lang syntax.LangVariant, outer *Pos, via []string, depth int) error {
	if depth > MaxNesting {
		return &Error{Pos: posOr(outer), Msg: "nested scripts deeper than " + itoa(MaxNesting)}
	}
	file, err := syntax.NewParser(syntax.Variant(lang)).Parse(strings.NewReader(src), "")
	if err != nil {
		var pe syntax.ParseError
		if errors.As(err, &pe) {
			pos := Pos{Line: int(pe.Pos.Line()), Col: int(pe.Pos.Col())}
			if outer != nil {
				pos = *outer
			}
			return &Error{Pos: pos, Msg: "parse error: " + pe.Text}
		}
		return &Error{Pos: posOr(outer), Msg: "parse error: " + err.Error()}
	}
	f := &frame{p: p, src: src, lang: lang, outer: outer, via: via, depth: depth, funcs: map[string]bool{}}
	// Functions may be called before their definition in the text (loops),
	// so collect names first.
	syntax.Walk(file, func(n syntax.Node) bool {
		if fd, ok := n.(*syntax.FuncDecl); ok && fd.Name != nil {
			f.funcs[fd.Name.Value] = true
		}
		return true
	})
	return f.walk(file)
}

func posOr(p *Pos) Pos {
	if p != nil {
		return *p
	}
	return Pos{}
}

func (f *frame) pos(n syntax.Node) Pos {
	if f.outer != nil {
		return *f.outer
	}
	return Pos{Line: int(n.Pos().Line()), Col: int(n.Pos().Col())}
}

// walk visits every node in source order. Statement redirections are
// attached to the simple command they belong to.
func (f *frame) walk(file *syntax.File) error {
	var err error
	redirs := map[*syntax.CallExpr][]Redirect{}
	stdin := map[*syntax.CallExpr]*string{}
	depth := 0
	var visit func(n syntax.Node) bool
	visit = func(n syntax.Node) bool {
		if err != nil {
			return false
		}
		switch x := n.(type) {
		case *syntax.Stmt:
			rs, herestr := f.redirects(x)
			if call, ok := x.Cmd.(*syntax.CallExpr); ok && len(call.Args) > 0 {
				redirs[call] = rs
				if herestr != nil {
					stdin[call] = herestr
				}
			} else if len(rs) > 0 {
				err = f.emit(Invocation{Role: RedirectOnly, Redirects: rs, Pos: f.pos(x), Via: f.via, Dir: f.p.cwd})
			}
		case *syntax.Subshell, *syntax.Block, *syntax.CmdSubst, *syntax.ProcSubst:
			depth++
			if depth > maxDepth {
				err = &Error{Pos: f.pos(n), Msg: "commands nested deeper than " + itoa(maxDepth)}
				return false
			}
			syntax.Walk(n, func(c syntax.Node) bool {
				if c == n {
					return true
				}
				return visit(c)
			})
			depth--
			return false
		case *syntax.DeclClause:
			for _, a := range x.Args {
				f.assign(a)
			}
		case *syntax.CallExpr:
			for _, a := range x.Assigns {
				f.assign(a)
			}
			if len(x.Args) > 0 {
				words := make([]Word, len(x.Args))
				for i, w := range x.Args {
					words[i] = f.word(w)
				}
				err = f.call(words, redirs[x], f.pos(x), f.via, stdin[x])
			}
		}
		return err == nil
	}
	syntax.Walk(file, visit)
	return err
}

// assign notes assignments that change how later commands resolve.
func (f *frame) assign(a *syntax.Assign) {
	if a.Name != nil && a.Name.Value == "PATH" {
		f.p.pathTainted = true
	}
}

// redirects returns a statement's file redirections, and the literal text
// fed to stdin by a here-document or here-string, if any (a shell reading
// its script from stdin runs it).
func (f *frame) redirects(s *syntax.Stmt) ([]Redirect, *string) {
	var out []Redirect
	var stdin *string
	for _, r := range s.Redirs {
		switch r.Op {
		case syntax.Hdoc, syntax.DashHdoc:
			if r.Hdoc != nil && (r.N == nil || r.N.Value == "0") {
				t := f.hdocText(r)
				stdin = t
			}
			continue
		case syntax.WordHdoc:
			if r.N == nil || r.N.Value == "0" {
				w := f.word(r.Word)
				if w.Known() {
					t := w.Text + "\n"
					stdin = &t
				} else {
					stdin = nil
				}
			}
			continue
		case syntax.DplIn, syntax.DplOut:
			// n>&m duplicates a descriptor; >&file (no digits) is a file.
			if w := f.word(r.Word); !w.Known() || isFD(w.Text) {
				continue
			}
		}
		red := Redirect{Op: r.Op.String(), Target: f.word(r.Word)}
		switch r.Op {
		case syntax.RdrIn, syntax.DplIn:
			red.Read = true
		case syntax.RdrInOut:
			red.Read, red.Write = true, true
		default:
			red.Write = true
		}
		out = append(out, red)
	}
	return out, stdin
}

// hdocText returns a here-document's body when it is literal.
func (f *frame) hdocText(r *syntax.Redirect) *string {
	var b strings.Builder
	for _, part := range r.Hdoc.Parts {
		l, ok := part.(*syntax.Lit)
		if !ok {
			return nil // expansions inside: not knowable
		}
		b.WriteString(l.Value)
	}
	t := b.String()
	return &t
}

func isFD(s string) bool {
	if s == "-" {
		return true
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}

func (f *frame) emit(inv Invocation) error {
	if len(f.p.out) >= MaxInvocations {
		return &Error{Pos: inv.Pos, Msg: ErrTooComplex.Error() + ": more than " + itoa(MaxInvocations) + " commands"}
	}
	f.p.out = append(f.p.out, inv)
	return nil
}

// nested parses a script found inside a command (sh -c, eval, ...) in the
// grammar of the shell that runs it.
func (f *frame) nested(src string, lang syntax.LangVariant, pos Pos, via []string) error {
	return f.p.script(src, lang, &pos, via, f.depth+1)
}

// unknownScript reports a script whose text is not knowable (sh -c "$X",
// curl | sh, source FILE): a command with an unknown program and arguments,
// which only the runtime exec check can decide.
func (f *frame) unknownScript(pos Pos, via []string) error {
	return f.emit(Invocation{Args: []Word{{Text: "<script not knowable before it runs>", Multi: true}}, Pos: pos, Via: via, Dir: f.p.cwd})
}

// resolve finds the program a command word names. ok is false when that is
// not knowable before running: PATH or hash was changed, or a relative path
// follows a cd.
func (f *frame) resolve(name string) (p Program, ok bool) {
	if strings.Contains(name, "/") {
		if !filepath.IsAbs(name) && f.p.cwd == "" {
			return Program{}, false
		}
	} else if f.p.pathTainted {
		return Program{}, false
	}
	return f.p.opts.LookPath(name, f.p.cwd, f.p.opts.Path), true
}

func withVia(via []string, label string) []string {
	out := make([]string, len(via), len(via)+1)
	copy(out, via)
	return append(out, label)
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}
