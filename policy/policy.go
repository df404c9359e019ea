package policy

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/execgate/execgate/profiles"
	"github.com/execgate/execgate/shellparse"
)

// Decision is the outcome for a script or an invocation.
type Decision = profiles.Action

// MaxScript is the largest script accepted: the run passes it to the shell
// as one argument (sh -c SCRIPT), and the kernel refuses an argument of
// MAX_ARG_STRLEN (32 pages, 128 KiB, with its NUL) or more with E2BIG. A
// larger limit here would accept a request whose run can only fail.
const MaxScript = 128<<10 - 1

// Options describe where and how the script would run.
type Options struct {
	Dir  string // working directory (absolute)
	Path string // PATH the sandbox will use; shellparse.DefaultPath if empty
	// RuntimeCheck says every execve will also be checked in the kernel
	// (seccomp user notification). Then a word that is not knowable before
	// running (a $X program, an unknown git subcommand) is left to that
	// check; without it, such a word is denied when a deny rule could
	// match it and is a miss for allow rules.
	RuntimeCheck bool
	// LookPath resolves programs. Nil means shellparse's own lookup,
	// cached for this one decision; a caller that decides request after
	// request passes the LookPath of a shellparse.Resolver it holds, and
	// tests pass a fake.
	LookPath func(name, dir, path string) shellparse.Program
}

// Result is the decision for a whole script.
type Result struct {
	Decision Decision
	// The invocation that decided a deny or ask, or the last one that
	// decided an allow.
	Decisive *Verdict
	Verdicts []Verdict
	// Err is set when the script could not be analysed (parse error, NUL
	// byte, too large); the decision is then deny.
	Err error
}

// Verdict is the decision for one invocation.
type Verdict struct {
	Inv      shellparse.Invocation
	Decision Decision
	// Deferred: allowed here, but only the runtime exec check can decide
	// the words that are not knowable now.
	Deferred bool
	Rule     profiles.Loc // the rule or [files] key that decided; File only for mode defaults
	Match    string       // the rule's pattern or the path pattern
	Reason   string
	// By is the rule that decided, if a rule did.
	By *profiles.Rule
	// Miss: no rule matched and the mode decided (allowlist's deny or
	// ask on a miss).
	Miss bool
}

// Invocation renders the verdict's command for messages.
func (v *Verdict) Invocation() string { return v.Inv.String() }

// Line is the decisive verdict in the shape egsh prints after "denied: ":
// "git checkout x: reason (flow.toml:14)".
func (r *Result) Line() string {
	v := r.Decisive
	if v.Inv.Args == nil && v.Inv.Redirects == nil {
		return fmt.Sprintf("%s (%s)", v.Reason, v.Rule)
	}
	return fmt.Sprintf("%s: %s (%s)", v.Invocation(), v.Reason, v.Rule)
}

// Decide analyses script and decides it against p.
func Decide(p *profiles.Profile, script string, o Options) *Result {
	if err := checkScript(script); err != nil {
		return failed(p, err)
	}
	invs, err := shellparse.Parse(script, shellparse.Options{Dir: o.Dir, Path: o.Path, Home: p.Home, Shell: p.Shell, LookPath: o.LookPath})
	if err != nil {
		return failed(p, err)
	}
	r := &Result{Decision: profiles.Allow}
	r.Verdicts = make([]Verdict, len(invs))
	for i := range invs {
		r.Verdicts[i] = decideOne(p, &invs[i], o.RuntimeCheck)
	}
	for i := range r.Verdicts {
		v := &r.Verdicts[i]
		if rank(v.Decision) > rank(r.Decision) || r.Decisive == nil {
			r.Decision, r.Decisive = v.Decision, v
		}
	}
	if r.Decision == profiles.Allow && p.Ask == profiles.AskAlways && p.Security != profiles.SecurityDeny {
		r.Decision = profiles.Ask
		if r.Decisive == nil {
			r.Decisive = &Verdict{}
		}
		d := *r.Decisive
		d.Decision, d.Rule, d.Match, d.Reason = profiles.Ask, p.AskLoc, "", "the profile asks for every request (ask = \"always\")"
		r.Decisive = &d
	}
	if r.Decisive == nil {
		// An empty script runs nothing; deny mode still denies it.
		r.Decisive = &Verdict{Decision: r.Decision, Rule: profiles.Loc{File: p.File}, Reason: "the script runs no command"}
		if p.Security == profiles.SecurityDeny {
			r.Decision = profiles.Deny
			r.Decisive = &Verdict{Decision: profiles.Deny, Rule: p.SecurityLoc, Reason: "security = \"deny\": this agent may not run commands"}
		}
	}
	return r
}

func rank(d Decision) int {
	switch d {
	case profiles.Deny:
		return 2
	case profiles.Ask:
		return 1
	}
	return 0
}

func failed(p *profiles.Profile, err error) *Result {
	v := &Verdict{Decision: profiles.Deny, Rule: profiles.Loc{File: p.File}, Reason: err.Error()}
	var se *shellparse.Error
	if errors.As(err, &se) {
		v.Reason = "cannot analyse the script: " + se.Error()
	}
	return &Result{Decision: profiles.Deny, Decisive: v, Verdicts: []Verdict{*v}, Err: err}
}

// Bad-input errors, each with a clear message for the client.
var (
	ErrNUL       = errors.New("script contains a NUL byte")
	ErrNotUTF8   = errors.New("script is not valid UTF-8")
	ErrTooLarge  = fmt.Errorf("script is larger than %d bytes", MaxScript)
	ErrEmptyPath = errors.New("no working directory")
)

func checkScript(s string) error {
	switch {
	case len(s) > MaxScript:
		return ErrTooLarge
	case strings.IndexByte(s, 0) >= 0:
		return ErrNUL
	case !utf8.ValidString(s):
		return ErrNotUTF8
	}
	return nil
}

// decideOne decides one invocation.
func decideOne(p *profiles.Profile, inv *shellparse.Invocation, runtime bool) Verdict {
	v := Verdict{Inv: *inv}
	if p.Security == profiles.SecurityDeny {
		v.Decision, v.Rule, v.Reason = profiles.Deny, p.SecurityLoc, "security = \"deny\": this agent may not run commands"
		return v
	}
	if path, pat, ok := readsDenied(p, inv); ok {
		v.Decision, v.Rule, v.Match = profiles.Deny, p.DenyRead.LocOf(pat), pat
		v.Reason = fmt.Sprintf("reads %s, which matches deny_read %q", path, pat)
		return v
	}
	if path, pat, ok := writesReadOnly(p, inv); ok {
		v.Decision, v.Rule, v.Match = profiles.Deny, p.ReadOnly.LocOf(pat), pat
		v.Reason = fmt.Sprintf("writes %s, which matches read_only %q", path, pat)
		return v
	}
	if inv.Role == shellparse.RedirectOnly {
		v.Decision, v.Reason = profiles.Allow, "a redirection runs no program"
		return v
	}
	v = decideArgv(p, toArgv(inv), inv.Dir, inv.Role, runtime)
	v.Inv = *inv
	return v
}

// toArgv converts a parsed invocation for matching.
func toArgv(inv *shellparse.Invocation) profiles.Argv {
	args := inv.MatchArgs()
	a := profiles.Argv{Path: inv.Prog, Alias: inv.Alias, Unresolvable: inv.Unresolvable, Identity: inv.Identity}
	if w := args[0]; w.Known() {
		a.Name = w.Text
	}
	a.Args = make([]profiles.Word, len(args)-1)
	for i, w := range args[1:] {
		a.Args[i] = profiles.Word{Text: w.Text, Dynamic: w.Dynamic, Multi: w.Multi}
	}
	return a
}

// decideArgv applies the rules: deny > ask > allow, with Maybe matches left
// to the runtime check when there is one.
func decideArgv(p *profiles.Profile, a profiles.Argv, dir string, role shellparse.Role, runtime bool) Verdict {
	var v Verdict
	var yes, maybe [3]*profiles.Rule // indexed by rank
	var remembered *profiles.Rule
	for i := range p.Rules {
		r := &p.Rules[i]
		k := rank(r.Action)
		if yes[k] != nil && !r.Remembered || r.Cwd != "" && r.Cwd != dir {
			continue
		}
		switch r.Pattern.Match(a, r.Action) {
		case profiles.Yes:
			if r.Remembered && remembered == nil {
				remembered = r
			}
			if yes[k] == nil {
				yes[k] = r
			}
		case profiles.Maybe:
			if maybe[k] == nil {
				maybe[k] = r
			}
		}
	}
	set := func(d Decision, r *profiles.Rule, reason string) Verdict {
		v.Decision, v.Rule, v.Match, v.Reason, v.By = d, r.Loc, r.Match, reason, r
		if reason == "" {
			v.Reason = r.Reason
		}
		if v.Reason == "" {
			v.Reason = fmt.Sprintf("matches %s rule %q", r.Action, r.Match)
		}
		return v
	}
	unknowable := func(r *profiles.Rule) string {
		return fmt.Sprintf("%s not knowable before it runs, and %s rule %q could match it", unknownWords(a), r.Action, r.Match)
	}
	switch {
	case yes[2] != nil:
		return set(profiles.Deny, yes[2], "")
	case maybe[2] != nil && !runtime:
		return set(profiles.Deny, maybe[2], unknowable(maybe[2]))
	case remembered != nil:
		// An admin approved exactly this before: it no longer asks.
		return set(profiles.Allow, remembered, "approved before: "+remembered.Reason)
	case yes[1] != nil:
		return set(profiles.Ask, yes[1], "")
	case maybe[1] != nil && !runtime:
		return set(profiles.Ask, maybe[1], unknowable(maybe[1]))
	}
	deferred := maybe[2] != nil || maybe[1] != nil
	if yes[0] != nil {
		v = set(profiles.Allow, yes[0], "")
		v.Deferred = deferred
		return v
	}
	if maybe[0] != nil && runtime {
		v = set(profiles.Allow, maybe[0], "")
		v.Deferred = true
		return v
	}
	// No allow rule matched.
	v.Deferred = deferred
	switch {
	case p.Security == profiles.SecurityFull:
		v.Decision, v.Rule, v.Reason = profiles.Allow, p.SecurityLoc, "no rule matches (security = \"full\")"
	case role == shellparse.Builtin || role == shellparse.Function:
		v.Decision, v.Rule, v.Reason = profiles.Allow, p.SecurityLoc, "a shell "+role.String()+" runs no program of its own"
	case role == shellparse.Wrapper:
		v.Decision, v.Rule, v.Reason = profiles.Allow, p.SecurityLoc, "a wrapper: the command it runs is checked on its own"
	case p.Ask == profiles.AskOnMiss:
		v.Decision, v.Rule, v.Reason, v.Miss = profiles.Ask, p.AskLoc, "no allow rule matches (ask = \"on-miss\")", true
	default:
		v.Decision, v.Rule, v.Reason, v.Miss = profiles.Deny, p.SecurityLoc, "no allow rule matches (security = \"allowlist\")", true
	}
	return v
}

// unknownWords names the words of a that are not knowable, for reasons.
func unknownWords(a profiles.Argv) string {
	var ws []string
	if a.Name == "" && a.Path == "" || a.Unresolvable {
		ws = append(ws, "the program")
	}
	for _, w := range a.Args {
		if w.Dynamic || w.Multi {
			ws = append(ws, strconv.Quote(w.Text))
		}
	}
	if a.Name != "" && len(ws) == 0 {
		ws = append(ws, "its program")
	}
	if len(ws) == 1 {
		return ws[0] + " is"
	}
	return strings.Join(ws, ", ") + " are"
}

// readsDenied finds a word or input redirection that names a deny_read
// path. Every known word counts, not only file operands: a false positive is
// a clear denial, a false negative would rest on the mount masks alone.
func readsDenied(p *profiles.Profile, inv *shellparse.Invocation) (string, string, bool) {
	set := p.DenyRead.Set
	if set.Empty() {
		return "", "", false
	}
	check := func(w shellparse.Word) (string, string, bool) {
		if !w.Known() || w.Text == "" {
			return "", "", false
		}
		for _, cand := range candidates(w.Text) {
			if pat, ok := set.Match(absPath(inv.Dir, cand)); ok {
				return cand, pat, true
			}
		}
		return "", "", false
	}
	for _, r := range inv.Redirects {
		if r.Read {
			if a, b, ok := check(r.Target); ok {
				return a, b, true
			}
		}
	}
	for i, w := range inv.Args {
		if i == 0 && !strings.Contains(w.Text, "/") {
			continue
		}
		if a, b, ok := check(w); ok {
			return a, b, true
		}
	}
	return "", "", false
}

func writesReadOnly(p *profiles.Profile, inv *shellparse.Invocation) (string, string, bool) {
	set := p.ReadOnly.Set
	if set.Empty() {
		return "", "", false
	}
	for _, r := range inv.Redirects {
		if r.Write && r.Target.Known() {
			if pat, ok := set.Match(absPath(inv.Dir, r.Target.Text)); ok {
				return r.Target.Text, pat, true
			}
		}
	}
	return "", "", false
}

// candidates are the paths a word may name: itself, the value of
// --opt=VALUE or if=VALUE forms, and the path of REV:PATH (git show
// HEAD:.env reads the file from history, where no mount mask reaches).
func candidates(t string) []string {
	out := []string{t}
	if _, v, ok := strings.Cut(t, "="); ok && v != "" {
		out = append(out, v)
	}
	if i := strings.LastIndexByte(t, ':'); i >= 0 && i+1 < len(t) {
		out = append(out, t[i+1:])
	}
	return out
}

// absPath joins a word with the working directory. With an unknown
// directory, a relative word is joined with "/", so that floating patterns
// such as **/.env still see it.
func absPath(dir, w string) string {
	if filepath.IsAbs(w) {
		return filepath.Clean(w)
	}
	if dir == "" {
		dir = "/"
	}
	return filepath.Join(dir, w)
}
