package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/execgate/execgate/client"
	"github.com/execgate/execgate/supervisor/changes"
)

// runChanges is `execgate changes ID [--diff]`: the paths of a change set
// held for review, with unified diffs of text files.
func runChanges(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("changes", flag.ContinueOnError)
	fs.SetOutput(stderr)
	diff := fs.Bool("diff", false, "show unified diffs of text files (binary files by size and hash)")
	out := fs.String("o", "short", "output: short or json")
	var id string
	if len(args) > 0 && args[0] != "" && args[0][0] != '-' {
		id, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil || id == "" || fs.NArg() != 0 || (*out != "short" && *out != "json") {
		fmt.Fprintln(stderr, "usage: execgate changes ID [--diff] [-o short|json]")
		return exitUsage
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cs, err := client.Admin().Changes(ctx, id, *diff)
	if err != nil {
		fmt.Fprintf(stderr, "execgate: %v\n", err)
		return exitDeny
	}
	if *out == "json" {
		if err := printJSON(stdout, cs); err != nil {
			return exitDeny
		}
		return exitOK
	}
	var set changes.Set
	if err := json.Unmarshal(cs.Set, &set); err != nil {
		fmt.Fprintf(stderr, "execgate: the change set: %v\n", err)
		return exitDeny
	}
	fmt.Fprintf(stdout, "%s  agent %s: %s\n", cs.ID, cs.Agent, cs.Summary)
	for _, v := range cs.Violations {
		fmt.Fprintf(stdout, "  held: %s\n", v)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	for _, c := range set.Changes {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", c.Kind, c.Type, sizeOf(c), c.Abs)
	}
	if err := tw.Flush(); err != nil {
		return exitDeny
	}
	if *diff {
		fmt.Fprint(stdout, "\n", cs.Diff)
	}
	fmt.Fprintf(stdout, "\napprove: execgate approve %s    reject: execgate reject %s\n", cs.ID, cs.ID)
	return exitOK
}

func sizeOf(c changes.Change) string {
	if c.Type != changes.File {
		return "-"
	}
	return changes.FormatBytes(c.Size)
}
