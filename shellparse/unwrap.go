package shellparse

import (
	"strings"
)

// Inner is what a wrapper or shell runs.
type Inner struct {
	Label string // "env", "bash -c", "find -exec", ...
	// Exactly one of these describes the inner command.
	Args    []Word // an argv
	Script  string // a shell script to parse
	Unknown bool   // a script whose text is not knowable before running
	// Shell names the shell that parses Script; SameShell means the shell
	// already running (eval, trap). Otherwise Script is for /bin/sh.
	Shell     string
	SameShell bool
	// Transparent wrappers need no allow rule of their own: the inner
	// command decides. Deny and ask rules still apply to them.
	Transparent bool
}

// wrapSpec describes a wrapper's command line: options, then fixed
// positional arguments, then the command and its arguments.
type wrapSpec struct {
	valShort    string          // short options that take a value
	optShort    string          // short options whose value is optional (attached only)
	valLong     map[string]bool // long options that take a value (without "--")
	positional  int             // non-option words before the command (timeout's DURATION)
	assigns     bool            // NAME=VALUE words before the command (env, sudo)
	noCmd       string          // short options meaning nothing is run (command -v)
	scriptShort string          // option whose value is a shell script (su -c)
	scriptLong  string
	splitShort  string // option whose value is split into the command (env -S)
	splitLong   string
	transparent bool
	defaultCmd  []string // run when no command is given (xargs: echo)
	appendsArgs bool     // the command gets more arguments at run time (xargs)
}

func longs(names ...string) map[string]bool { return setOf(names...) }

var wrappers = map[string]*wrapSpec{
	"env": {valShort: "uCSP", valLong: longs("unset", "chdir", "split-string", "default-signal", "ignore-signal", "block-signal"),
		assigns: true, splitShort: "S", splitLong: "split-string", transparent: true},
	"nice":    {valShort: "n", valLong: longs("adjustment"), transparent: true},
	"nohup":   {transparent: true},
	"timeout": {valShort: "sk", valLong: longs("signal", "kill-after"), positional: 1, transparent: true},
	"stdbuf":  {valShort: "ioe", valLong: longs("input", "output", "error"), transparent: true},
	"time":    {valShort: "fo", valLong: longs("format", "output"), transparent: true},
	"command": {noCmd: "vV", transparent: true},
	"builtin": {transparent: true},
	"exec":    {valShort: "a", transparent: true},
	"setsid":  {transparent: true},
	"ionice":  {valShort: "cnp", valLong: longs("class", "classdata", "pid", "pgid", "uid"), noCmd: "pPu", transparent: true},
	"taskset": {positional: 1, noCmd: "p", transparent: true},
	"chrt":    {valShort: "TPD", valLong: longs("sched-runtime", "sched-period", "sched-deadline"), positional: 1, noCmd: "pm", transparent: true},
	"flock": {valShort: "wE", valLong: longs("timeout", "conflict-exit-code"), positional: 1,
		scriptShort: "c", scriptLong: "command", transparent: true},
	"xargs": {valShort: "adEILnPs", optShort: "eil", valLong: longs("arg-file", "delimiter", "max-args", "max-procs", "max-chars", "process-slot-var"),
		transparent: true, defaultCmd: []string{"echo"}, appendsArgs: true},
	"watch": {valShort: "nq", valLong: longs("interval", "equexit"), optShort: "d", transparent: true},
	"script": {valShort: "EIOBTm", valLong: longs("echo", "log-in", "log-out", "log-io", "log-timing", "logging-format"),
		scriptShort: "c", scriptLong: "command", transparent: true},
	// Privilege and namespace tools are unwrapped so deny rules see the
	// inner command, but they need an allow rule of their own.
	"sudo": {valShort: "CDghpRrTtUu", valLong: longs("close-from", "chdir", "group", "host", "prompt", "role", "chroot", "type", "command-timeout", "other-user", "user"),
		assigns: true, noCmd: "eKklLvV"},
	"doas":     {valShort: "Cu"},
	"su":       {valShort: "sgGw", valLong: longs("shell", "group", "supp-group", "whitelist-environment"), scriptShort: "c", scriptLong: "command", positional: -1},
	"runuser":  {valShort: "usgGw", valLong: longs("user", "shell", "group", "supp-group", "whitelist-environment"), scriptShort: "c", scriptLong: "command", positional: -1},
	"chroot":   {valLong: longs("userspec", "groups"), positional: 1},
	"unshare":  {valShort: "SGRw", valLong: longs("setuid", "setgid", "root", "wd", "propagation", "setgroups", "map-user", "map-group", "map-users", "map-groups")},
	"nsenter":  {valShort: "tSGrwUmuinpCT", valLong: longs("target", "setuid", "setgid", "root", "wd")},
	"fakeroot": {valShort: "lsi", valLong: longs("lib", "faked")},
	"busybox":  {transparent: true},
}

// Unwrap returns what an invocation of the program called name runs, if
// anything: the wrapped argv of a wrapper, the script of a shell, the
// -exec commands of find. stdin is a literal script fed on standard input
// (a here-document), or nil. The runtime exec check uses it too.
func Unwrap(name string, args []Word, stdin *string) []Inner {
	switch {
	case shells[name]:
		return unwrapShell(name, args, stdin)
	case name == "find":
		return unwrapFind(args)
	case name == "eval":
		in := joinedScript("eval", args[1:], true)
		in.SameShell = true
		return []Inner{in}
	case name == "trap":
		if len(args) >= 3 && args[1].Known() && !strings.HasPrefix(args[1].Text, "-") {
			in := joinedScript("trap", args[1:2], false)
			in.SameShell = true
			return []Inner{in}
		}
		if len(args) >= 3 && !args[1].Known() {
			return []Inner{{Label: "trap", Unknown: true}}
		}
		return nil
	case name == "source" || name == ".":
		// The file's commands are not knowable here; the runtime exec
		// check sees each one it execs.
		if len(args) > 1 {
			return []Inner{{Label: name + " " + args[1].Text, Unknown: true}}
		}
		return nil
	case name == "git":
		return nil // aliases are handled by normalisation
	}
	spec, ok := wrappers[name]
	if !ok {
		return nil
	}
	return unwrapWith(name, spec, args)
}

func unwrapWith(name string, s *wrapSpec, args []Word) []Inner {
	sc := &optScan{name: name, s: s, args: args, i: 1, pos: s.positional}
	if res, done := sc.options(); done {
		return res
	}
	return sc.command()
}

// optScan walks a wrapper's options up to the command it runs.
type optScan struct {
	name      string
	s         *wrapSpec
	args      []Word
	i         int  // the word being read
	pos       int  // positional words still to skip (-1: su's user names)
	watchExec bool // watch -x: the command is not run through sh -c
}

// options skips the options and positional words before the command.
// done is set when an option decides the answer itself (res, which may
// be nil: nothing to check).
func (sc *optScan) options() (res []Inner, done bool) {
	name, s, args := sc.name, sc.s, sc.args
	for sc.i < len(args) {
		a := args[sc.i]
		if !a.Known() {
			// An unknown word among the options: the command cannot be
			// located statically.
			return []Inner{{Label: name, Args: []Word{{Text: a.Text, Multi: true}}, Transparent: s.transparent}}, true
		}
		t := a.Text
		switch {
		case t == "--":
			sc.i++
			return nil, false
		case strings.HasPrefix(t, "--") && len(t) > 2:
			if res, done := sc.long(t); done {
				return res, true
			}
		case strings.HasPrefix(t, "-") && len(t) > 1 && !(name == "su" && t == "-"):
			if res, done := sc.short(t); done {
				return res, true
			}
		case name == "su" && t == "-", s.assigns && isAssignment(t):
			sc.i++
		case sc.pos > 0:
			sc.pos--
			sc.i++
		case sc.pos < 0:
			// su/runuser: a user name may come before -c.
			sc.i++
		default:
			return nil, false
		}
	}
	return nil, false
}

// long reads the option --KEY[=VALUE] at sc.i.
func (sc *optScan) long(t string) ([]Inner, bool) {
	s := sc.s
	key, val, hasVal := strings.Cut(t[2:], "=")
	if s.scriptLong != "" && key == s.scriptLong {
		return scriptOpt(sc.name, s, val, hasVal, sc.args, sc.i), true
	}
	if s.splitLong != "" && key == s.splitLong {
		return splitOpt(sc.name, s, val, hasVal, sc.args, sc.i), true
	}
	if sc.name == "watch" && key == "exec" {
		sc.watchExec = true
	}
	if s.valLong[key] && !hasVal {
		sc.i++
	}
	sc.i++
	return nil, false
}

// short reads the short options -abc at sc.i.
func (sc *optScan) short(t string) ([]Inner, bool) {
	s := sc.s
	for j := 1; j < len(t); j++ {
		c := t[j]
		if strings.IndexByte(s.noCmd, c) >= 0 {
			return nil, true
		}
		if sc.name == "watch" && c == 'x' {
			sc.watchExec = true
		}
		if s.scriptShort != "" && c == s.scriptShort[0] {
			return scriptOpt(sc.name, s, t[j+1:], j+1 < len(t), sc.args, sc.i), true
		}
		if s.splitShort != "" && c == s.splitShort[0] {
			return splitOpt(sc.name, s, t[j+1:], j+1 < len(t), sc.args, sc.i), true
		}
		if strings.IndexByte(s.optShort, c) >= 0 {
			break // optional value, attached only
		}
		if strings.IndexByte(s.valShort, c) >= 0 {
			if j == len(t)-1 {
				sc.i++ // value is the next word
			}
			break
		}
	}
	sc.i++
	return nil, false
}

// command is what the wrapper runs, once the options are read.
func (sc *optScan) command() []Inner {
	name, s, args := sc.name, sc.s, sc.args
	i := sc.i
	for pos := sc.pos; pos > 0 && i < len(args); pos-- {
		i++
	}
	cmd := args[min(i, len(args)):]
	if s.positional < 0 {
		return nil // su USER without -c runs a login shell: nothing to check statically
	}
	if len(cmd) == 0 {
		if len(s.defaultCmd) == 0 {
			return nil
		}
		for _, d := range s.defaultCmd {
			cmd = append(cmd, lit(d))
		}
	}
	if name == "watch" && !sc.watchExec {
		// watch runs its arguments joined by spaces through sh -c.
		return []Inner{joinedScript("watch", cmd, true)}
	}
	out := Inner{Label: name, Args: append([]Word(nil), cmd...), Transparent: s.transparent}
	if s.appendsArgs {
		out.Args = append(out.Args, Word{Text: "<arguments read from stdin>", Multi: true})
		out.Args = markReplaced(args, out.Args)
	}
	return []Inner{out}
}

// scriptOpt handles an option whose value is a shell script (su -c CMD).
func scriptOpt(name string, s *wrapSpec, val string, attached bool, args []Word, i int) []Inner {
	label := name + " -c"
	if !attached {
		if i+1 >= len(args) {
			return nil
		}
		w := args[i+1]
		if !w.Known() {
			return []Inner{{Label: label, Unknown: true, Transparent: s.transparent}}
		}
		val = w.Text
	}
	return []Inner{{Label: label, Script: val, Transparent: s.transparent}}
}

// splitOpt handles env -S 'cmd args': the value is split into words.
func splitOpt(name string, s *wrapSpec, val string, attached bool, args []Word, i int) []Inner {
	rest := i + 1
	if !attached {
		if i+1 >= len(args) {
			return nil
		}
		if !args[i+1].Known() {
			return []Inner{{Label: name + " -S", Unknown: true, Transparent: s.transparent}}
		}
		val = args[i+1].Text
		rest = i + 2
	}
	script := val + " " + quoteWords(args[rest:])
	return []Inner{{Label: name + " -S", Script: script, Transparent: s.transparent}}
}

// markReplaced marks words holding xargs -I's replace string as unknown.
func markReplaced(all, cmd []Word) []Word {
	repl := ""
	for i := 1; i < len(all); i++ {
		t := all[i].Text
		switch {
		case t == "-I" && i+1 < len(all):
			repl = all[i+1].Text
		case strings.HasPrefix(t, "-I") && len(t) > 2:
			repl = t[2:]
		case t == "-i" || t == "--replace":
			repl = "{}"
		case strings.HasPrefix(t, "-i") && len(t) > 2:
			repl = t[2:]
		case strings.HasPrefix(t, "--replace="):
			repl = t[len("--replace="):]
		}
	}
	if repl == "" {
		return cmd
	}
	for i, w := range cmd {
		if w.Known() && strings.Contains(w.Text, repl) {
			cmd[i] = Word{Text: w.Text, Dynamic: true}
		}
	}
	return cmd
}

func isAssignment(t string) bool {
	k, _, ok := strings.Cut(t, "=")
	if !ok || k == "" {
		return false
	}
	for i, c := range k {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// joinedScript treats words as a script joined with spaces (eval, watch).
func joinedScript(label string, ws []Word, transparent bool) Inner {
	parts := make([]string, 0, len(ws))
	for _, w := range ws {
		if !w.Known() {
			return Inner{Label: label, Unknown: true, Transparent: transparent}
		}
		parts = append(parts, w.Text)
	}
	return Inner{Label: label, Script: strings.Join(parts, " "), Transparent: transparent}
}

// unwrapShell finds the script a shell runs: -c SCRIPT, a script file (the
// shell itself then needs a rule), or stdin.
func unwrapShell(name string, args []Word, stdin *string) []Inner {
	hasC, readsStdin := false, false
	i := 1
	for i < len(args) {
		a := args[i]
		if !a.Known() {
			break // the script or script file, not knowable
		}
		t := a.Text
		if t == "--" || t == "-" {
			i++
			break
		}
		if strings.HasPrefix(t, "--") {
			if t == "--rcfile" || t == "--init-file" {
				i++
			}
			i++
			continue
		}
		if (strings.HasPrefix(t, "-") || strings.HasPrefix(t, "+")) && len(t) > 1 {
			takesVal := false
			for _, c := range t[1:] {
				switch c {
				case 'c':
					hasC = true
				case 's':
					readsStdin = true
				case 'o', 'O':
					takesVal = true
				}
			}
			if takesVal {
				i++
			}
			i++
			continue
		}
		break
	}
	label := name + " -c"
	switch {
	case hasC:
		if i >= len(args) {
			return nil
		}
		if !args[i].Known() {
			return []Inner{{Label: label, Unknown: true, Transparent: true}}
		}
		return []Inner{{Label: label, Script: args[i].Text, Shell: name, Transparent: true}}
	case i < len(args) && !readsStdin:
		// `bash script.sh`: the file's commands are not knowable here and
		// the shell needs a rule of its own.
		return []Inner{{Label: name + " " + args[i].Text, Unknown: true}}
	case stdin != nil:
		return []Inner{{Label: name + " <<<", Script: *stdin, Shell: name, Transparent: true}}
	default:
		return []Inner{{Label: name + " (stdin)", Unknown: true, Transparent: true}}
	}
}

// unwrapFind returns the commands of -exec, -execdir, -ok and -okdir.
func unwrapFind(args []Word) []Inner {
	var out []Inner
	for i := 1; i < len(args); i++ {
		a := args[i]
		if !a.Known() {
			continue
		}
		switch a.Text {
		case "-exec", "-execdir", "-ok", "-okdir":
		default:
			continue
		}
		label := "find " + a.Text
		var cmd []Word
		j := i + 1
		for ; j < len(args); j++ {
			t := args[j]
			if t.Known() && (t.Text == ";" || t.Text == "+") {
				break
			}
			if t.Known() && strings.Contains(t.Text, "{}") {
				t = Word{Text: t.Text, Dynamic: true}
			}
			cmd = append(cmd, t)
		}
		if j < len(args) && args[j].Text == "+" {
			cmd = append(cmd, Word{Text: "{}...", Multi: true})
		}
		if len(cmd) > 0 {
			out = append(out, Inner{Label: label, Args: cmd})
		}
		i = j
	}
	return out
}
