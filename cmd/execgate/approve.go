package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/execgate/execgate/api"
	"github.com/execgate/execgate/client"
)

func runApprovals(args []string, stdout, stderr io.Writer) int {
	return adminCall("approvals", args, stdout, stderr, func(ctx context.Context, c *client.Client, asJSON bool) error {
		list, err := c.Approvals(ctx)
		if err != nil {
			return err
		}
		if asJSON {
			return printJSON(stdout, list)
		}
		if len(list) == 0 {
			fmt.Fprintln(stdout, "no pending approvals")
			return nil
		}
		for _, a := range list {
			fmt.Fprintf(stdout, "%s  agent %s (uid %d), waiting %s, expires in %s\n", a.ID, a.Agent, a.UID,
				time.Since(a.Created).Round(time.Second), time.Until(a.Expires).Round(time.Second))
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			for _, inv := range a.Invocations {
				fmt.Fprintf(tw, "  argv:\t%s\n", quoteArgv(inv))
			}
			fmt.Fprintf(tw, "  cwd:\t%s\n  rule:\t%s\n  reason:\t%s\n", a.Cwd, a.Rule, a.Reason)
			if a.Script != "" && !a.Nested {
				fmt.Fprintf(tw, "  script:\t%s\n", oneLine(a.Script, 200))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
		}
		return nil
	})
}

func quoteArgv(argv []string) string {
	out := make([]string, len(argv))
	for i, a := range argv {
		if a == "" || strings.ContainsAny(a, " \t\n'\"\\$`|&;<>(){}*?[]#~") {
			out[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		} else {
			out[i] = a
		}
	}
	return strings.Join(out, " ")
}

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		s = s[:n] + "..."
	}
	return s
}

// decideCmd is approve or reject.
func decideCmd(verb string) func([]string, io.Writer, io.Writer) int {
	return func(args []string, stdout, stderr io.Writer) int {
		fs := flag.NewFlagSet(verb, flag.ContinueOnError)
		fs.SetOutput(stderr)
		remember := fs.Bool("remember", false, "also allow this exact argv from now on (approve only)")
		reason := fs.String("reason", "", "why (journaled)")
		// Flags may come before or after the id.
		err := fs.Parse(args)
		var id string
		if err == nil && fs.NArg() > 0 {
			id = fs.Arg(0)
			err = fs.Parse(fs.Args()[1:])
		}
		if err != nil || id == "" || fs.NArg() != 0 || (verb == "reject" && *remember) {
			fmt.Fprintf(stderr, "usage: execgate %s ID%s\n", verb, map[string]string{"approve": " [--remember] [--reason R]", "reject": " [--reason R]"}[verb])
			return exitUsage
		}
		return adminAction(stdout, stderr, func(ctx context.Context, c *client.Client) (*api.AdminResult, error) {
			return c.Decide(ctx, id, api.ApprovalDecision{Decision: verb, Remember: *remember, Reason: *reason})
		})
	}
}

// adminAction runs one admin-socket action and prints its answer.
func adminAction(stdout, stderr io.Writer, do func(context.Context, *client.Client) (*api.AdminResult, error)) int {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := do(ctx, client.Admin())
	if err != nil {
		fmt.Fprintf(stderr, "execgate: %v\n", err)
		return exitDeny
	}
	fmt.Fprintln(stdout, res.Message)
	return exitOK
}

// agentCmd is kill, freeze, thaw or revive AGENT.
func agentCmd(action string) func([]string, io.Writer, io.Writer) int {
	return func(args []string, stdout, stderr io.Writer) int {
		if len(args) != 1 || strings.HasPrefix(args[0], "-") {
			fmt.Fprintf(stderr, "usage: execgate %s AGENT\n", action)
			return exitUsage
		}
		return adminAction(stdout, stderr, func(ctx context.Context, c *client.Client) (*api.AdminResult, error) {
			return c.AgentAction(ctx, args[0], action)
		})
	}
}

func runLockdown(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 || (args[0] != "on" && args[0] != "off") {
		fmt.Fprintln(stderr, "usage: execgate lockdown on|off")
		return exitUsage
	}
	return adminAction(stdout, stderr, func(ctx context.Context, c *client.Client) (*api.AdminResult, error) {
		return c.Lockdown(ctx, args[0] == "on")
	})
}

func runReload(args []string, stdout, stderr io.Writer) int {
	if len(args) != 0 {
		fmt.Fprintln(stderr, "usage: execgate reload")
		return exitUsage
	}
	return adminAction(stdout, stderr, func(ctx context.Context, c *client.Client) (*api.AdminResult, error) {
		return c.Reload(ctx)
	})
}
