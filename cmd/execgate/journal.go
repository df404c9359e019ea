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

// exitReadError: execgate journal could not read the records.
const exitReadError = 1

const journalUsage = "journal [-f] [--agent A] [--decision D] [--event E] [--id RUN] [--since T] [-n N] [-o short|json] [--file PATH | --directory DIR]"

var (
	decisions = []string{"allow", "deny", "ask", "approved", "rejected", "expired"}
	events    = []audit.Event{audit.EventRequest, audit.EventDecision, audit.EventApproval, audit.EventStart, audit.EventExec, audit.EventEnd, audit.EventAdmin, audit.EventReload, audit.EventError}
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
}

func runJournalContext(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	ja, code := parseJournalArgs(args, stderr)
	if code != exitOK {
		return code
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

// parseJournalArgs reads the flags; a code other than exitOK is the usage
// error already said on stderr.
func parseJournalArgs(args []string, stderr io.Writer) (journalArgs, int) {
	fs := flag.NewFlagSet("journal", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: execgate "+journalUsage)
		fs.PrintDefaults()
	}
	var follow bool
	fs.BoolVar(&follow, "f", false, "follow: print new records as they are written, until interrupted")
	fs.BoolVar(&follow, "follow", false, "same as -f")
	agent := fs.String("agent", "", "only this agent's records")
	decision := fs.String("decision", "", "only records with this decision: "+strings.Join(decisions, ", "))
	event := fs.String("event", "", "only this event: request, decision, approval, start, exec, end, admin, reload, error")
	id := fs.String("id", "", "only the records of this run id")
	since := fs.String("since", "", "only records at or after this time: 2025-06-01 18:22:25, 18:22, today, yesterday, -1h, @UNIX, RFC 3339")
	lines := fs.Int("n", -1, "only the last N matching records to start with (default: all, or 10 with -f and no --since)")
	out := fs.String("o", "short", "output: short (one line per decision) or json (the records as JSON lines)")
	file := fs.String("file", "", "read this JSONL audit file instead of journald (the daemon's --audit file:PATH)")
	dir := fs.String("directory", "", "read the journal files in this directory (journalctl --directory)")
	if err := fs.Parse(args); err != nil {
		return journalArgs{}, exitUsage
	}
	usageErr := func(format string, a ...any) (journalArgs, int) {
		fmt.Fprintf(stderr, "execgate journal: "+format+"\n", a...)
		fmt.Fprintln(stderr, "usage: execgate "+journalUsage)
		return journalArgs{}, exitUsage
	}
	if fs.NArg() != 0 {
		return usageErr("unexpected argument %q", fs.Arg(0))
	}
	if *out != "short" && *out != "json" {
		return usageErr("-o %s: want short or json", *out)
	}
	if *file != "" && *dir != "" {
		return usageErr("--file and --directory exclude each other")
	}
	f, err := journalFilter(*agent, *id, *decision, *event, *since)
	if err != nil {
		return usageErr("%v", err)
	}
	n := *lines
	switch {
	case n < -1:
		return usageErr("-n %d: want a count of records", n)
	case n == -1 && follow && f.Since.IsZero():
		n = 10
	case n == -1:
		n = 0
	case n == 0:
		return usageErr("-n 0: want at least 1")
	}
	ja := journalArgs{opts: audit.ReadOptions{Filter: f, Follow: follow, Lines: n}, jsonOut: *out == "json", dir: *dir}
	if *file != "" {
		path, err := filepath.Abs(*file)
		if err != nil {
			return usageErr("--file: %v", err)
		}
		ja.file = path
	}
	return ja, exitOK
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
// (local time, agent, decision, argv, rule). Records without a decision
// give no line. Everything that came from outside (argv, agent, rule) is
// escaped, so a crafted argument cannot forge or break lines.
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
