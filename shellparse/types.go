package shellparse

import (
	"fmt"
	"strings"
)

// Word is one argument word after quote removal.
type Word struct {
	// Text is the literal value, or the source text when the word is not
	// knowable before running.
	Text string
	// Dynamic: exactly one word whose value is unknown ("$X", <(cmd)).
	Dynamic bool
	// Multi: zero or more words whose values are unknown (unquoted $X,
	// $(cmd), globs, brace expansion, the arguments xargs appends).
	Multi bool
}

// Known reports whether the word's value is known before running.
func (w Word) Known() bool { return !w.Dynamic && !w.Multi }

func lit(s string) Word { return Word{Text: s} }

// Role says what running an invocation means.
type Role uint8

const (
	// Command runs a program (execve).
	Command Role = iota
	// Builtin is a shell builtin: it never execs anything by itself.
	Builtin
	// Function calls a function the script defines; its body is reported
	// separately.
	Function
	// Wrapper runs another command that is reported after it, and does
	// nothing dangerous itself (env, nice, timeout, xargs, sh -c '...').
	Wrapper
	// RedirectOnly is a redirection with no command (`< file`, or one on a
	// compound command such as `while ...; done < file`).
	RedirectOnly
)

func (r Role) String() string {
	return [...]string{"command", "builtin", "function", "wrapper", "redirect"}[r]
}

// Redirect is a redirection to or from a file.
type Redirect struct {
	Op     string // "<", ">", ">>", "<>", "&>", "&>>", ">|"
	Target Word
	Read   bool
	Write  bool
}

// Pos is a place in the top-level script (1-based).
type Pos struct{ Line, Col int }

func (p Pos) String() string { return fmt.Sprintf("%d:%d", p.Line, p.Col) }

// Invocation is one simple command the script may run.
type Invocation struct {
	// Args is the argv as written: Args[0] is the program word.
	Args []Word
	// Norm is the argv rules match: tool options removed and aliases
	// expanded (git -C dir checkout x is git checkout x). Nil when it is
	// the same as Args.
	Norm []Word
	// Prog is the program's resolved real path; "" when it is a builtin or
	// function, was not found, or is not knowable before running.
	Prog string
	// Alias is the trusted name the program was found under (see Program).
	Alias string
	// Unresolvable: the program word is known but which file it runs is
	// not (the script changed PATH, or cd'd before a relative path).
	Unresolvable bool
	// Identity names the known program whose content the file has (a
	// copy of git under another name); set by the runtime check.
	Identity  string
	Role      Role
	Redirects []Redirect
	// Pos is where the invocation starts in the top-level script. Commands
	// found in nested scripts carry the position of the outer command.
	Pos Pos
	// Via lists what this invocation was reached through, outermost first:
	// "bash -c", "env", "xargs", "find -exec", "eval", "git alias co".
	Via []string
	// Dir is the working directory the command would see, "" when a cd made
	// it unknowable.
	Dir string
}

// MatchArgs returns the argv rules are matched against.
func (inv *Invocation) MatchArgs() []Word {
	if inv.Norm != nil {
		return inv.Norm
	}
	return inv.Args
}

// String renders the argv for messages and journal lines.
func (inv *Invocation) String() string {
	var b strings.Builder
	for i, w := range inv.Args {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(w.Text)
	}
	for _, r := range inv.Redirects {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(r.Op)
		b.WriteString(r.Target.Text)
	}
	return b.String()
}

// Error is a script that cannot be analysed. Pos is the parser's position.
type Error struct {
	Pos Pos
	Msg string
}

func (e *Error) Error() string {
	if e.Pos.Line > 0 {
		return fmt.Sprintf("%d:%d: %s", e.Pos.Line, e.Pos.Col, e.Msg)
	}
	return e.Msg
}
