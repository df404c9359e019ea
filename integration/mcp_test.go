package integration

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// An MCP-speaking agent gets execgate as its shell tool: `execgate mcp`
// runs as the agent's own uid and forwards to the agent socket.
func TestMCPRunCommand(t *testing.T) {
	d := startDaemon(t, profile{"bot", fullProfile})
	cmd := exec.Command(filepath.Join(binDir, "execgate"), "mcp")
	cmd.Dir = d.work
	cmd.Env = []string{"EXECGATE_SOCKET=" + d.agentSock()}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: agentUID, Gid: agentUID}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := mcp.NewClient(&mcp.Implementation{Name: "test-agent", Version: "1"}, nil)
	sess, err := cl.Connect(ctx, &mcp.CommandTransport{Command: cmd}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	tools, err := sess.ListTools(ctx, nil)
	if err != nil || len(tools.Tools) != 1 || tools.Tools[0].Name != "run_command" {
		t.Fatalf("tools: %+v %v", tools, err)
	}
	text := func(r *mcp.CallToolResult) string {
		var b strings.Builder
		for _, c := range r.Content {
			if tc, ok := c.(*mcp.TextContent); ok {
				b.WriteString(tc.Text)
			}
		}
		return b.String()
	}
	res, err := sess.CallTool(ctx, &mcp.CallToolParams{Name: "run_command", Arguments: map[string]any{"script": "id -u; echo out; echo err >&2"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := text(res); res.IsError || !strings.Contains(got, "exit code: 0") || !strings.Contains(got, "65534\nout\n") || !strings.Contains(got, "--- stderr\nerr") {
		t.Errorf("allowed call: error=%v %q", res.IsError, got)
	}
	res, err = sess.CallTool(ctx, &mcp.CallToolParams{Name: "run_command", Arguments: map[string]any{"script": "git checkout -b x"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := text(res); !res.IsError || !strings.Contains(got, "exit code: 126") || !strings.Contains(got, "no branch switching (bot.toml:6)") {
		t.Errorf("denied call: error=%v %q", res.IsError, got)
	}
}
