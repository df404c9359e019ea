package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/execgate/execgate/api"
	"github.com/execgate/execgate/client"
)

// mcpOutputCap bounds what one tool call returns per stream: a model's
// context is not the place for megabytes of build log.
const mcpOutputCap = 256 << 10

type runCommandArgs struct {
	Script  string `json:"script" jsonschema:"the shell script to run (bash syntax)"`
	Cwd     string `json:"cwd,omitempty" jsonschema:"absolute working directory; default: the agent's first workdir"`
	Timeout string `json:"timeout,omitempty" jsonschema:"a duration such as 30s or 5m; capped by the agent's profile"`
}

type runCommandResult struct {
	ExitCode  int    `json:"exit_code"`
	Stdout    string `json:"stdout"`
	Stderr    string `json:"stderr"`
	Denied    string `json:"denied,omitempty"`
	TimedOut  bool   `json:"timed_out,omitempty"`
	Truncated bool   `json:"truncated,omitempty"`
}

func runMCP(args []string, stdout, stderr io.Writer) int {
	if len(args) != 0 {
		fmt.Fprintln(stderr, "usage: execgate mcp   (an MCP server on stdin/stdout)")
		return exitUsage
	}
	srv := newMCPServer(&client.Client{})
	if err := srv.Run(context.Background(), &mcp.StdioTransport{}); err != nil && !errors.Is(err, io.EOF) {
		fmt.Fprintf(stderr, "execgate mcp: %v\n", err)
		return exitDeny
	}
	return exitOK
}

// newMCPServer exposes one tool, run_command, forwarded to the agent socket
// under the caller's own uid: the daemon decides as for any other call.
func newMCPServer(c *client.Client) *mcp.Server {
	srv := mcp.NewServer(&mcp.Implementation{Name: "execgate", Version: "1"}, nil)
	mcp.AddTool(srv, &mcp.Tool{
		Name: "run_command",
		Description: "Run a shell script through execgate. Every command is checked against this agent's profile " +
			"before and while it runs; a denial says which rule and why.",
	}, func(ctx context.Context, _ *mcp.CallToolRequest, in runCommandArgs) (*mcp.CallToolResult, runCommandResult, error) {
		return runCommand(ctx, c, in)
	})
	return srv
}

func runCommand(ctx context.Context, c *client.Client, in runCommandArgs) (*mcp.CallToolResult, runCommandResult, error) {
	var out runCommandResult
	req := api.ExecRequest{Script: in.Script, Cwd: in.Cwd}
	if in.Timeout != "" {
		d, err := time.ParseDuration(in.Timeout)
		if err != nil {
			return nil, out, fmt.Errorf("timeout %q: %w", in.Timeout, err)
		}
		req.Timeout = api.Duration(d)
	}
	if req.Cwd == "" {
		if wd, err := os.Getwd(); err == nil {
			req.Cwd = wd
		}
	}
	var so, se capped
	so.max, se.max = mcpOutputCap, mcpOutputCap
	exit, err := c.Exec(ctx, req, client.Streams{Stdout: &so, Stderr: &se, Event: func(ev api.Event) {
		if ev.Event == api.EventDenied {
			fmt.Fprintf(&se, "execgate: denied: %s: %s (%s)\n", ev.Invocation, ev.Reason, ev.Rule)
		}
	}})
	var denied *client.AccessDeniedError
	switch {
	case errors.As(err, &denied):
		out.ExitCode = 126
		out.Denied = denied.Error()
	case err != nil:
		return nil, out, err
	default:
		out.TimedOut, out.Truncated = exit.TimedOut, exit.Truncated || so.cut || se.cut
		switch {
		case exit.TimedOut:
			out.ExitCode = 124
		case exit.Signal != 0:
			out.ExitCode = 128 + exit.Signal
		case exit.Code != nil:
			out.ExitCode = *exit.Code
		}
	}
	out.Stdout, out.Stderr = so.String(), se.String()
	text := fmt.Sprintf("exit code: %d\n", out.ExitCode)
	if out.Denied != "" {
		text += out.Denied + "\n"
	}
	if out.Stdout != "" {
		text += "--- stdout\n" + out.Stdout
	}
	if out.Stderr != "" {
		text += "--- stderr\n" + out.Stderr
	}
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: text}}, IsError: out.ExitCode != 0}, out, nil
}

// capped keeps the first max bytes written to it.
type capped struct {
	bytes.Buffer
	max int
	cut bool
}

func (c *capped) Write(p []byte) (int, error) {
	if room := c.max - c.Len(); room < len(p) {
		c.cut = true
		if room > 0 {
			c.Buffer.Write(p[:room])
		}
		return len(p), nil
	}
	return c.Buffer.Write(p)
}
