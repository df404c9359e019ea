// Command execgate is the admin and ops tool for execgated: it checks
// scripts against profiles without a daemon, lints profiles, reads the
// journal, talks to the daemon's admin socket, and serves MCP for agents.
package main

import (
	"fmt"
	"io"
	"os"
)

// Exit codes shared by the subcommands.
const (
	exitOK    = 0
	exitDeny  = 1 // check: denied; lint: errors found
	exitUsage = 2
	exitAsk   = 3
)

type command struct {
	name  string
	usage string
	run   func(args []string, stdout, stderr io.Writer) int
}

var commands = []command{
	{"check", "check [--config FILE] (--agents DIR --agent NAME | --profile FILE) [--cwd DIR] [-o short|json] (-- 'SCRIPT' | --connect HOST:PORT)", runCheck},
	{"lint", "lint [--config FILE] [FILE|DIR...]", runLint},
	{"journal", journalUsage, runJournal},
	{"status", "status [-o short|json]", runStatus},
	{"runs", "runs [-o short|json]", runRuns},
	{"approvals", "approvals [-o short|json]", runApprovals},
	{"changes", "changes ID [--diff] [-o short|json]", runChanges},
	{"approve", "approve ID [--remember] [--reason R]", decideCmd("approve")},
	{"reject", "reject ID [--reason R]", decideCmd("reject")},
	{"kill", "kill AGENT", agentCmd("kill")},
	{"freeze", "freeze AGENT", agentCmd("freeze")},
	{"thaw", "thaw AGENT", agentCmd("thaw")},
	{"revive", "revive AGENT", agentCmd("revive")},
	{"lockdown", "lockdown on|off", runLockdown},
	{"reload", "reload", runReload},
	{"mcp", "mcp   (MCP server on stdio with one tool, run_command)", runMCP},
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	for _, c := range commands {
		if c.name == args[0] {
			return c.run(args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "execgate: unknown command %q\n", args[0])
	usage(stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: execgate COMMAND [ARGS]")
	for _, c := range commands {
		fmt.Fprintf(w, "  execgate %s\n", c.usage)
	}
}
