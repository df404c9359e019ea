package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/execgate/execgate/client"
)

// adminCall runs one admin-socket command with the shared flags.
func adminCall(name string, args []string, stdout, stderr io.Writer, do func(ctx context.Context, c *client.Client, jsonOut bool) error) int {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("o", "short", "output: short or json")
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 || (*out != "short" && *out != "json") {
		fmt.Fprintf(stderr, "usage: execgate %s [-o short|json]\n", name)
		return exitUsage
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := do(ctx, client.Admin(), *out == "json"); err != nil {
		fmt.Fprintf(stderr, "execgate: %v\n", err)
		return exitDeny
	}
	return exitOK
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func runStatus(args []string, stdout, stderr io.Writer) int {
	return adminCall("status", args, stdout, stderr, func(ctx context.Context, c *client.Client, asJSON bool) error {
		st, err := c.Status(ctx)
		if err != nil {
			return err
		}
		if asJSON {
			return printJSON(stdout, st)
		}
		fmt.Fprintf(stdout, "execgated %s, up since %s\n", st.Version, st.Started.Local().Format(time.DateTime))
		fmt.Fprintf(stdout, "audit: %s   cgroup v%d   runtime exec check: %v   runs: %d   pending approvals: %d\n", st.Audit, st.CgroupV, onOff(st.RuntimeCheck), st.Runs, st.Pending)
		if st.Lockdown {
			fmt.Fprintln(stdout, "LOCKDOWN: every request is refused (execgate lockdown off)")
		}
		if !st.RuntimeCheck {
			fmt.Fprintln(stdout, "DEGRADED: no runtime exec check; only static decisions and the sandbox stand")
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "AGENT\tUID\tSECURITY\tSTATE\tRUNS\tREQ/MIN\tREQ/DAY\tEXEC/MIN\tPROFILE\tSHA256")
		for _, a := range st.Agents {
			state := "ok"
			switch {
			case a.Killed:
				state = "KILLED"
			case a.Frozen:
				state = "FROZEN"
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%d\t%d\t%d\t%d\t%s\t%.12s\n", a.Name, a.UID, a.Security, state, a.Runs,
				a.RequestsMinute, a.RequestsDay, a.ExecsMinute, a.Profile, a.SHA256)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		for _, e := range st.Errors {
			fmt.Fprintf(stdout, "profile error: %s\n", e)
		}
		return nil
	})
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func runRuns(args []string, stdout, stderr io.Writer) int {
	return adminCall("runs", args, stdout, stderr, func(ctx context.Context, c *client.Client, asJSON bool) error {
		runs, err := c.Runs(ctx)
		if err != nil {
			return err
		}
		if asJSON {
			return printJSON(stdout, runs)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tAGENT\tUID\tAGE\tCWD\tSCRIPT")
		for _, r := range runs {
			script := strings.Join(strings.Fields(r.Script), " ")
			if len(script) > 60 {
				script = script[:57] + "..."
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", r.ID, r.Agent, r.UID, time.Since(r.Started).Round(time.Second), r.Cwd, script)
		}
		return tw.Flush()
	})
}
