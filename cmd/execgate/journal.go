package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"iter"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/execgate/execgate/audit"
	"github.com/execgate/execgate/systemd/journal"
)

// Exit codes of execgate journal, besides exitOK and exitUsage.
const (
	// exitReadError: the records (or a file to verify) could not be read.
	exitReadError = 1
	// exitChainBroken: --verify found the file's chain broken, or the
	// noted --head missing.
	exitChainBroken = 4
)

const journalUsage = "journal [-f] [--agent A] [--decision D] [--event E] [--id RUN] [--since T] [-n N] [-o short|json] [--file PATH | --directory DIR]\n" +
	"  execgate journal --verify [--head HASH] --file PATH [--file PATH...]"

var (
	decisions = []string{"allow", "deny", "ask", "approved", "rejected", "expired", "applied", "held", "conflict", "dry-run"}
	events    = []audit.Event{audit.EventRequest, audit.EventDecision, audit.EventApproval, audit.EventStart, audit.EventExec, audit.EventConnect, audit.EventDisconnect, audit.EventChanges, audit.EventEnd, audit.EventAdmin, audit.EventReload, audit.EventError}
)

// runJournal is `execgate journal`: it prints execgated's audit records
// from journald (through journalctl -o json) or, with --file, from the
// JSONL audit file. SIGINT or SIGTERM end a -f follow with status 0.
func runJournal(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return runJournalContext(ctx, args, stdout, stderr)
}

// journalArgs is a parsed `execgate journal` command line.
type journalArgs struct {
	opts      audit.ReadOptions
	jsonOut   bool
	file, dir string
	verify    bool
	files     []string // --verify: the files, oldest first
	head      string   // --verify --head
}

func runJournalContext(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	ja, code := parseJournalArgs(args, stderr)
	if code != exitOK {
		return code
	}
	if ja.verify {
		return runJournalVerify(ja, stdout, stderr)
	}
	var seq iter.Seq2[*audit.Entry, error]
	if ja.file != "" {
		seq = audit.ReadFile(ctx, ja.file, ja.opts)
	} else {
		seq = journal.Read(ctx, journal.ReadOptions{ReadOptions: ja.opts, Directory: ja.dir})
	}
	for e, err := range seq {
		if err != nil {
			var le *audit.LineError
			if errors.As(err, &le) {
				// A torn or foreign line: say so, and go on.
				fmt.Fprintf(stderr, "execgate journal: warning: %v\n", err)
				continue
			}
			fmt.Fprintf(stderr, "execgate journal: %v%s\n", err, journalHint(ja.file, ja.dir))
			return exitReadError
		}
		var werr error
		if ja.jsonOut {
			_, werr = stdout.Write(append(e.Raw, '\n'))
		} else if line, ok := journalShortLine(e.Record); ok {
			_, werr = io.WriteString(stdout, line+"\n")
		}
		if werr != nil {
			fmt.Fprintf(stderr, "execgate journal: write output: %v\n", werr)
			return exitReadError
		}
	}
	return exitOK
}

// fileList is a --file flag that may be given more than once.
type fileList []string

func (l *fileList) String() string     { return strings.Join(*l, ",") }
func (l *fileList) Set(v string) error { *l = append(*l, v); return nil }

// journalFlags are the flags as given.
type journalFlags struct {
	follow, verify                         bool
	agent, decision, event, id, since, out string
	dir, head                              string
	lines                                  int
	files                                  fileList
	set                                    map[string]bool
}

func journalFlagSet(stderr io.Writer, jf *journalFlags) *flag.FlagSet {
	fs := flag.NewFlagSet("journal", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: execgate "+journalUsage)
		fs.PrintDefaults()
		fmt.Fprintln(stderr, journalVerifyHelp)
	}
	fs.BoolVar(&jf.follow, "f", false, "follow: print new records as they are written, until interrupted")
	fs.BoolVar(&jf.follow, "follow", false, "same as -f")
	fs.StringVar(&jf.agent, "agent", "", "only this agent's records")
	fs.StringVar(&jf.decision, "decision", "", "only records with this decision: "+strings.Join(decisions, ", "))
	fs.StringVar(&jf.event, "event", "", "only this event: request, decision, approval, start, exec, end, admin, reload, error")
	fs.StringVar(&jf.id, "id", "", "only the records of this run id")
	fs.StringVar(&jf.since, "since", "", "only records at or after this time: 2025-06-01 18:22:25, 18:22, today, yesterday, -1h, @UNIX, RFC 3339")
	fs.IntVar(&jf.lines, "n", -1, "only the last N matching records to start with (default: all, or 10 with -f and no --since)")
	fs.StringVar(&jf.out, "o", "short", "output: short (one line per decision; with the host for journald's records) or json (the records as JSON lines)")
	fs.Var(&jf.files, "file", "read the JSONL audit file `PATH` instead of journald (the daemon's --audit file:PATH); with --verify, repeat it for rotated files, oldest first")
	fs.StringVar(&jf.dir, "directory", "", "read the journal files in this directory (journalctl --directory)")
	fs.BoolVar(&jf.verify, "verify", false, "check the JSONL file's hash chain (EXECGATE_PREV) instead of printing records: exit 0 and a summary ending in head=HASH when intact, 4 when broken")
	fs.StringVar(&jf.head, "head", "", "with --verify: a head `HASH` printed earlier (head=HASH), which must still be in the chain: catches records cut from the end")
	return fs
}

// journalVerifyHelp ends the usage text.
const journalVerifyHelp = `
--verify checks that no line of the audit file was changed, removed, inserted
or moved: each record's EXECGATE_PREV is the SHA-256 of the record line before
it. A chain alone cannot show records cut from the end of the file: note the
head=HASH the summary prints (ship it off the host) and pass it back as --head.
Exit status: 0 intact, 1 a file could not be read, 2 usage, 4 chain broken or
--head not found. For journald, use journald's Forward Secure Sealing:
journalctl --setup-keys, then journalctl --verify --verify-key=KEY.`

// parseJournalArgs reads the flags; a code other than exitOK is the usage
// error already said on stderr.
func parseJournalArgs(args []string, stderr io.Writer) (journalArgs, int) {
	jf := journalFlags{set: map[string]bool{}}
	fs := journalFlagSet(stderr, &jf)
	if err := fs.Parse(args); err != nil {
		return journalArgs{}, exitUsage
	}
	fs.Visit(func(f *flag.Flag) { jf.set[f.Name] = true })
	usageErr := func(format string, a ...any) (journalArgs, int) {
		fmt.Fprintf(stderr, "execgate journal: "+format+"\n", a...)
		fmt.Fprintln(stderr, "usage: execgate "+journalUsage)
		return journalArgs{}, exitUsage
	}
	if fs.NArg() != 0 {
		return usageErr("unexpected argument %q", fs.Arg(0))
	}
	if jf.verify || jf.head != "" {
		return parseJournalVerify(&jf, usageErr)
	}
	if len(jf.files) > 1 {
		return usageErr("--file given %d times: several files only with --verify", len(jf.files))
	}
	if jf.out != "short" && jf.out != "json" {
		return usageErr("-o %s: want short or json", jf.out)
	}
	if len(jf.files) > 0 && jf.dir != "" {
		return usageErr("--file and --directory exclude each other")
	}
	f, err := journalFilter(jf.agent, jf.id, jf.decision, jf.event, jf.since)
	if err != nil {
		return usageErr("%v", err)
	}
	n := jf.lines
	switch {
	case n < -1:
		return usageErr("-n %d: want a count of records", n)
	case n == -1 && jf.follow && f.Since.IsZero():
		n = 10
	case n == -1:
		n = 0
	case n == 0:
		return usageErr("-n 0: want at least 1")
	}
	ja := journalArgs{opts: audit.ReadOptions{Filter: f, Follow: jf.follow, Lines: n}, jsonOut: jf.out == "json", dir: jf.dir}
	if len(jf.files) > 0 {
		path, err := filepath.Abs(jf.files[0])
		if err != nil {
			return usageErr("--file: %v", err)
		}
		ja.file = path
	}
	return ja, exitOK
}

// parseJournalVerify checks the flags of --verify.
func parseJournalVerify(jf *journalFlags, usageErr func(string, ...any) (journalArgs, int)) (journalArgs, int) {
	if !jf.verify {
		return usageErr("--head goes with --verify")
	}
	if len(jf.files) == 0 {
		where := "journalctl --verify"
		if jf.dir != "" {
			where = "journalctl --verify --directory " + jf.dir
		}
		return usageErr("--verify checks the hash chain of a JSONL audit file: give it with --file PATH. "+
			"journald's records are sealed by journald itself: with Forward Secure Sealing (journalctl --setup-keys), check them with %s --verify-key=KEY", where)
	}
	for _, name := range []string{"f", "follow", "agent", "decision", "event", "id", "since", "n", "o", "directory"} {
		if jf.set[name] {
			return usageErr("--verify checks every line of the file: it takes no -%s", name)
		}
	}
	ja := journalArgs{verify: true}
	if jf.head != "" {
		h := strings.TrimPrefix(strings.ToLower(strings.TrimSpace(jf.head)), "head=")
		if _, err := audit.ParseHead(h); err != nil {
			return usageErr("--head: %v", err)
		}
		ja.head = h
	}
	for _, f := range jf.files {
		path, err := filepath.Abs(f)
		if err != nil {
			return usageErr("--file: %v", err)
		}
		ja.files = append(ja.files, path)
	}
	return ja, exitOK
}

// runJournalVerify is `execgate journal --verify`: the findings on
// stderr, the summary on stdout when the chain is intact (on stderr when
// not).
func runJournalVerify(ja journalArgs, stdout, stderr io.Writer) int {
	res, err := audit.VerifyFiles(ja.files, audit.VerifyOptions{Head: ja.head})
	if err != nil {
		fmt.Fprintf(stderr, "execgate journal: --verify: %v\n", err)
		return exitReadError
	}
	for _, f := range res.Findings {
		fmt.Fprintf(stderr, "execgate journal: %s\n", f)
	}
	if res.Omitted > 0 {
		fmt.Fprintf(stderr, "execgate journal: ... and %d more findings\n", res.Omitted)
	}
	if !res.Intact() {
		fmt.Fprintf(stderr, "execgate journal: %s\n", res.Summary())
		return exitChainBroken
	}
	if _, err := fmt.Fprintln(stdout, res.Summary()); err != nil {
		fmt.Fprintf(stderr, "execgate journal: write output: %v\n", err)
		return exitReadError
	}
	return exitOK
}

// journalFilter checks and assembles the record filter of the flags.
func journalFilter(agent, id, decision, event, since string) (audit.Filter, error) {
	f := audit.Filter{Agent: agent, ID: id}
	if decision != "" {
		f.Decision = strings.ToLower(decision)
		if !journalHas(decisions, f.Decision) {
			return f, fmt.Errorf("--decision %s: want one of %s", decision, strings.Join(decisions, ", "))
		}
	}
	if event != "" {
		f.Event = audit.Event(strings.ToLower(event))
		if !journalHas(events, f.Event) {
			return f, fmt.Errorf("--event %s: want one of request, decision, approval, start, exec, end, admin, reload, error", event)
		}
	}
	if since != "" {
		t, err := audit.ParseSince(since, time.Now())
		if err != nil {
			return f, fmt.Errorf("--since: %v", err)
		}
		f.Since = t
	}
	return f, nil
}

func journalHas[T comparable](list []T, v T) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// journalHint points at the audit file when journald could not be read and the
// daemon's default file exists.
func journalHint(file, dir string) string {
	if file != "" || dir != "" {
		return ""
	}
	if _, err := os.Stat(audit.DefaultFile); err == nil {
		return " (without journald execgated writes " + audit.DefaultFile + ": read it with --file " + audit.DefaultFile + ")"
	}
	return ""
}

// journalShortLine renders a record that carries a decision as
//
//	18:22:25 flow DENY git checkout flow/a11y-badge-recordings [flow.toml:14]
//
// (local time, agent, decision, argv, rule). A record from journald
// carries the host it was logged on (_HOSTNAME): like journalctl's short
// output, the line then names it after the time, which tells apart the
// hosts of a journal gathered by systemd-journal-remote:
//
//	18:22:25 hostA flow DENY git checkout flow/a11y-badge-recordings [flow.toml:14]
//
// The JSONL file's records have no host and keep the first form. Records
// without a decision give no line. Everything that came from outside
// (argv, agent, rule, host) is escaped, so a crafted argument cannot
// forge or break lines.
func journalShortLine(r *audit.Record) (string, bool) {
	d := r.Fields[audit.FieldDecision]
	if d == "" {
		return "", false
	}
	agent := r.Fields[audit.FieldAgent]
	if agent == "" {
		agent = "-"
	}
	var b strings.Builder
	b.WriteString(r.Time.Local().Format("15:04:05"))
	b.WriteByte(' ')
	if host := r.Fields[audit.FieldHostname]; host != "" {
		b.WriteString(journalEscape(host))
		b.WriteByte(' ')
	}
	b.WriteString(journalEscape(agent))
	b.WriteByte(' ')
	b.WriteString(journalEscape(strings.ToUpper(d)))
	b.WriteByte(' ')
	b.WriteString(journalInvocation(r))
	if rule := r.Fields[audit.FieldRule]; rule != "" {
		b.WriteString(" [")
		b.WriteString(journalEscape(rule))
		b.WriteByte(']')
	}
	return b.String(), true
}

// journalInvocation is the record's argv joined by spaces, each word quoted for
// the shell when it needs it; without an argv, the script or the message.
func journalInvocation(r *audit.Record) string {
	if argv, err := r.Argv(); err == nil && len(argv) > 0 {
		words := make([]string, len(argv))
		for i, w := range argv {
			words[i] = journalQuoteWord(w)
		}
		return strings.Join(words, " ")
	}
	if s := r.Fields[audit.FieldScript]; s != "" {
		return journalEscape(s)
	}
	return journalEscape(r.Message)
}

func journalPlainByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("@%+=:,./_-", c) >= 0
}

// journalQuoteWord returns w as is when it is plain, in '...' when it only has
// printable characters, else in bash's $'...' with escapes.
func journalQuoteWord(w string) string {
	if w == "" {
		return "''"
	}
	plain, printable := true, utf8.ValidString(w)
	for i := 0; i < len(w); i++ {
		if !journalPlainByte(w[i]) {
			plain = false
		}
	}
	if plain {
		return w
	}
	if printable {
		for _, r := range w {
			if !unicode.IsPrint(r) || r == '\'' {
				printable = false
				break
			}
		}
	}
	if printable {
		return "'" + w + "'"
	}
	var b strings.Builder
	b.WriteString("$'")
	for i := 0; i < len(w); {
		r, size := utf8.DecodeRuneInString(w[i:])
		switch {
		case r == '\'' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == utf8.RuneError && size == 1, !unicode.IsPrint(r):
			for _, c := range []byte(w[i : i+size]) {
				fmt.Fprintf(&b, `\x%02x`, c)
			}
		default:
			b.WriteRune(r)
		}
		i += size
	}
	b.WriteByte('\'')
	return b.String()
}

// journalEscape leaves printable text alone and quotes (Go syntax) anything with
// control characters or invalid UTF-8.
func journalEscape(s string) string {
	if !utf8.ValidString(s) {
		return strconv.Quote(s)
	}
	for _, r := range s {
		if !unicode.IsPrint(r) && r != ' ' {
			return strconv.Quote(s)
		}
	}
	return s
}
