package shellparse

import (
	"os"
	"path/filepath"
	"strings"
)

type normResult struct {
	args   []Word
	script string // a shell script the command runs instead (git alias !cmd)
	label  string
}

// normalisers rewrite tool-specific global options away so that a rule like
// `git checkout **` sees the subcommand in second place.
var normalisers = map[string]func(args []Word, prog, path string) normResult{
	"git": normaliseGit,
	"npm": normaliseNpm,
}

// Normalize applies the tool normalisation for the program called name and
// returns the argv rules are matched against. The runtime exec check uses it
// so both layers see the same argv. A git alias that runs a shell command
// (`!cmd`) is returned as script.
func Normalize(name string, args []Word, path string) (argv []Word, script string) {
	n, ok := normalisers[name]
	if !ok {
		return args, ""
	}
	r := n(args, "", path)
	return r.args, r.script
}

var gitValued = setOf("-C", "-c", "--git-dir", "--work-tree", "--namespace", "--super-prefix", "--config-env", "--list-cmds", "--attr-source")

// gitBuiltins are git's own commands; an alias can never shadow them.
var gitBuiltins = setOf("add", "am", "annotate", "apply", "archive", "backfill", "bisect", "blame", "branch",
	"bugreport", "bundle", "cat-file", "check-attr", "check-ignore", "check-mailmap", "check-ref-format",
	"checkout", "checkout-index", "cherry", "cherry-pick", "clean", "clone", "column", "commit",
	"commit-graph", "commit-tree", "config", "count-objects", "credential", "credential-cache",
	"credential-store", "daemon", "describe", "diagnose", "diff", "diff-files", "diff-index", "diff-tree",
	"difftool", "fast-export", "fast-import", "fetch", "fetch-pack", "filter-branch", "fmt-merge-msg",
	"for-each-ref", "for-each-repo", "format-patch", "fsck", "fsck-objects", "gc", "get-tar-commit-id",
	"grep", "gui", "hash-object", "help", "hook", "http-backend", "index-pack", "init", "init-db",
	"instaweb", "interpret-trailers", "last-modified", "log", "ls-files", "ls-remote", "ls-tree", "mailinfo",
	"mailsplit", "maintenance", "merge", "merge-base", "merge-file", "merge-index", "merge-octopus",
	"merge-one-file", "merge-ours", "merge-recursive", "merge-resolve", "merge-subtree", "merge-tree",
	"mergetool", "mktag", "mktree", "multi-pack-index", "mv", "name-rev", "notes", "pack-objects",
	"pack-redundant", "pack-refs", "patch-id", "prune", "prune-packed", "pull", "push", "quiltimport",
	"range-diff", "read-tree", "rebase", "receive-pack", "reflog", "refs", "remote", "repack", "replace",
	"replay", "repo", "request-pull", "rerere", "reset", "restore", "rev-list", "rev-parse", "revert", "rm",
	"send-email", "send-pack", "shell", "shortlog", "show", "show-branch", "show-index", "show-ref",
	"sparse-checkout", "stage", "stash", "status", "stripspace", "submodule", "subtree", "switch",
	"symbolic-ref", "tag", "unpack-file", "unpack-objects", "update-index", "update-ref",
	"update-server-info", "upload-archive", "upload-pack", "var", "verify-commit", "verify-pack",
	"verify-tag", "version", "whatchanged", "worktree", "write-tree")

// gitExecPath is where git keeps its external commands.
const gitExecPath = "/usr/lib/git-core"

func normaliseGit(args []Word, _ string, path string) normResult {
	// git run as "git-SUB" (a dashed name, exec -a, a link in git's exec
	// path) is "git SUB": git itself reads its argv[0] that way.
	if w := args[0]; w.Known() {
		if base := filepath.Base(w.Text); strings.HasPrefix(base, "git-") && len(base) > 4 {
			args = append([]Word{w, lit(base[4:])}, args[1:]...)
			r := normaliseGit(append([]Word{lit("git")}, args[1:]...), "", path)
			r.args[0] = w
			return r
		}
	}
	out := []Word{args[0]}
	i, aliases, unknown := gitGlobalOptions(args)
	if unknown {
		// An unknown word among the global options could be anything,
		// including the subcommand.
		out = append(out, Word{Text: args[i].Text, Multi: true})
		return normResult{args: append(out, args[i+1:]...)}
	}
	if i >= len(args) {
		return normResult{args: out}
	}
	return expandGitAliases(out, args[i:], aliases, path)
}

// gitGlobalOptions reads git's global options (before the subcommand) and
// the aliases that -c and --config-env define there. It returns the index
// of the subcommand, or of the first word not knowable (unknown set).
func gitGlobalOptions(args []Word) (i int, aliases map[string]string, unknown bool) {
	aliases = map[string]string{}
	for i = 1; i < len(args); i++ {
		a := args[i]
		if !a.Known() {
			return i, aliases, true
		}
		t := a.Text
		if !strings.HasPrefix(t, "-") {
			break
		}
		key, val, hasVal := strings.Cut(t, "=")
		if gitValued[key] && !hasVal && !strings.HasPrefix(t, "--exec-path") {
			if i+1 < len(args) {
				i++
				val = args[i].Text
				if !args[i].Known() {
					val = "\x00unknown"
				}
			}
		} else if len(t) > 2 && (strings.HasPrefix(t, "-c") || strings.HasPrefix(t, "-C")) && t[1] != '-' {
			key, val = t[:2], t[2:]
		}
		switch key {
		case "-c":
			k, v, _ := strings.Cut(val, "=")
			if strings.HasPrefix(strings.ToLower(k), "alias.") {
				aliases[strings.ToLower(k[len("alias."):])] = v
			}
		case "--config-env":
			k, _, _ := strings.Cut(val, "=")
			if strings.HasPrefix(strings.ToLower(k), "alias.") {
				aliases[strings.ToLower(k[len("alias."):])] = "\x00unknown"
			}
		}
	}
	return i, aliases, false
}

// expandGitAliases replaces the subcommand rest[0] by the alias it names
// (again, up to 8 deep), after out (git itself).
func expandGitAliases(out, rest []Word, aliases map[string]string, path string) normResult {
	for depth := 0; depth < 8; depth++ {
		sub := rest[0]
		if !sub.Known() {
			break
		}
		v, isAlias := aliases[strings.ToLower(sub.Text)]
		if !isAlias || gitBuiltins[sub.Text] {
			if !isAlias && !gitKnown(sub.Text, path) {
				// Not a git command: it can only be an alias from a git
				// config file, which could stand for anything.
				rest = append([]Word{{Text: sub.Text, Dynamic: true}}, rest[1:]...)
			}
			break
		}
		if v == "\x00unknown" {
			rest = append([]Word{{Text: sub.Text, Dynamic: true}}, rest[1:]...)
			break
		}
		if strings.HasPrefix(v, "!") {
			// A shell alias: git runs `sh -c "CMD \"$@\"" CMD ARGS...`.
			return normResult{args: append(out, rest...), script: v[1:] + " " + quoteWords(rest[1:]), label: "git alias " + sub.Text}
		}
		words, err := splitPatternWords(v)
		if err != nil || len(words) == 0 {
			rest = append([]Word{{Text: sub.Text, Dynamic: true}}, rest[1:]...)
			break
		}
		rest = append(words, rest[1:]...)
	}
	return normResult{args: append(out, rest...)}
}

// gitKnown reports whether sub is a git command (builtin or git-SUB on
// git's exec path or PATH), which no alias can shadow.
func gitKnown(sub, path string) bool {
	if gitBuiltins[sub] {
		return true
	}
	if strings.ContainsAny(sub, "/\x00") || sub == "" {
		return false
	}
	if isExec(filepath.Join(gitExecPath, "git-"+sub)) {
		return true
	}
	for _, dir := range filepath.SplitList(path) {
		if filepath.IsAbs(dir) && isExec(filepath.Join(dir, "git-"+sub)) {
			return true
		}
	}
	return false
}

func isExec(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0
}

// splitPatternWords splits a git alias value the way git does (quotes
// group, no expansions).
func splitPatternWords(s string) ([]Word, error) {
	var out []Word
	var b strings.Builder
	in := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			if in {
				out = append(out, lit(b.String()))
				b.Reset()
				in = false
			}
		case c == '\'' || c == '"':
			end := strings.IndexByte(s[i+1:], c)
			if end < 0 {
				return nil, errUnterminated
			}
			b.WriteString(s[i+1 : i+1+end])
			i += end + 1
			in = true
		case c == '\\' && i+1 < len(s):
			i++
			b.WriteByte(s[i])
			in = true
		default:
			b.WriteByte(c)
			in = true
		}
	}
	if in {
		out = append(out, lit(b.String()))
	}
	return out, nil
}

var errUnterminated = &Error{Msg: "unterminated quote"}

var npmValued = setOf("--prefix", "-C", "--workspace", "-w", "--loglevel", "--registry", "--cache",
	"--userconfig", "--globalconfig", "--tag", "--scope", "--otp", "--script-shell", "--node-options", "--before", "--omit", "--include")

var npmAliases = map[string]string{
	"run-script": "run", "rum": "run", "urn": "run",
	"t": "test", "tst": "test",
	"i": "install", "in": "install", "ins": "install", "inst": "install", "insta": "install", "instal": "install",
	"isnt": "install", "isnta": "install", "isntal": "install", "isntall": "install", "add": "install",
	"x": "exec", "ci": "clean-install", "install-clean": "clean-install", "ic": "clean-install",
	"it": "install-test", "cit": "install-ci-test", "rm": "uninstall", "r": "uninstall", "un": "uninstall",
	"unlink": "uninstall", "remove": "uninstall", "up": "update", "upgrade": "update", "publish": "publish",
}

// normaliseNpm puts npm's positional words first (options may stand
// anywhere before --) and canonicalises command aliases, so `npm --silent
// run-script build` is `npm run build --silent`.
func normaliseNpm(args []Word, _ string, _ string) normResult {
	var pos, opts []Word
	i := 1
	for ; i < len(args); i++ {
		a := args[i]
		if !a.Known() {
			pos = append(pos, a)
			continue
		}
		t := a.Text
		if t == "--" {
			break
		}
		if strings.HasPrefix(t, "-") && len(t) > 1 {
			opts = append(opts, a)
			if npmValued[t] && i+1 < len(args) {
				i++
				opts = append(opts, args[i])
			}
			continue
		}
		pos = append(pos, a)
	}
	if len(pos) > 0 && pos[0].Known() {
		if c, ok := npmAliases[pos[0].Text]; ok {
			pos[0] = lit(c)
		}
	}
	out := append([]Word{args[0]}, pos...)
	out = append(out, opts...)
	return normResult{args: append(out, args[i:]...)}
}
