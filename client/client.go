// Package client talks to execgated's sockets. The zero Client talks to the
// agent socket ($EXECGATE_SOCKET, default /run/execgate/agent.sock); Admin
// returns one for the admin socket. Every call takes a context first, and a
// 403 comes back as *AccessDeniedError.
package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"

	"github.com/execgate/execgate/api"
)

// Client is an execgated client. Its zero value is ready to use.
type Client struct {
	// Socket is the Unix socket path; empty means $EXECGATE_SOCKET or
	// /run/execgate/agent.sock.
	Socket string

	env  string // the variable that names this socket, for errors
	once sync.Once
	hc   *http.Client
}

// Admin returns a client for the admin socket ($EXECGATE_ADMIN_SOCKET or
// /run/execgate/admin.sock).
func Admin() *Client {
	s := os.Getenv(api.EnvAdminSocket)
	if s == "" {
		s = api.DefaultAdminSocket
	}
	return &Client{Socket: s, env: api.EnvAdminSocket}
}

// SocketPath returns the socket the client uses.
func (c *Client) SocketPath() string {
	if c.Socket != "" {
		return c.Socket
	}
	if s := os.Getenv(api.EnvAgentSocket); s != "" {
		return s
	}
	return api.DefaultAgentSocket
}

func (c *Client) http() *http.Client {
	c.once.Do(func() {
		path := c.SocketPath()
		c.hc = &http.Client{Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", path)
			},
			DisableCompression: true,
		}}
	})
	return c.hc
}

// AccessDeniedError is a 403 or 429: a denied request, a cap reached, an
// unknown caller, or an endpoint this socket does not serve to this caller.
type AccessDeniedError struct {
	Message    string
	ID         string // the run id of a denied request
	Decision   string // deny, or ask when approval was needed
	Invocation string
	Rule       string
	Reason     string
}

func (e *AccessDeniedError) Error() string {
	if e.Invocation != "" || e.Rule != "" {
		return fmt.Sprintf("denied: %s: %s (%s)", e.Invocation, e.Reason, e.Rule)
	}
	return "access denied: " + e.Message
}

// NotFoundError is a 404.
type NotFoundError struct{ Message string }

func (e *NotFoundError) Error() string { return "not found: " + e.Message }

// APIError is any other non-2xx answer.
type APIError struct {
	Status  int
	Message string
	ID      string
}

func (e *APIError) Error() string { return fmt.Sprintf("execgated: %s (HTTP %d)", e.Message, e.Status) }

// ConnectError means the daemon could not be reached.
type ConnectError struct {
	Socket string
	Env    string // the variable that chooses the socket: EXECGATE_SOCKET or EXECGATE_ADMIN_SOCKET
	Err    error
}

func (e *ConnectError) Error() string {
	env := e.Env
	if env == "" {
		env = api.EnvAgentSocket
	}
	return fmt.Sprintf("cannot reach execgated at %s: %v (is the daemon running? set %s to another socket)", e.Socket, e.Err, env)
}
func (e *ConnectError) Unwrap() error { return e.Err }

func (c *Client) do(ctx context.Context, method, path string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://execgate"+path, body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http().Do(req)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return nil, &ConnectError{Socket: c.SocketPath(), Env: c.env, Err: op.Err}
		}
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		return nil, decodeError(resp)
	}
	return resp, nil
}

func decodeError(resp *http.Response) error {
	var e api.Error
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if json.Unmarshal(b, &e) != nil || e.Error == "" {
		e.Error = strings.TrimSpace(string(b))
	}
	switch resp.StatusCode {
	case http.StatusForbidden, http.StatusTooManyRequests: // 429: a cap denied it
		return &AccessDeniedError{Message: e.Error, ID: e.ID, Decision: e.Decision, Invocation: e.Invocation, Rule: e.Rule, Reason: e.Reason}
	case http.StatusNotFound:
		return &NotFoundError{Message: e.Error}
	}
	return &APIError{Status: resp.StatusCode, Message: e.Error, ID: e.ID}
}

func (c *Client) getJSON(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	resp, err := c.do(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decode %s answer: %w", path, err)
	}
	return nil
}

// Whoami asks which agent the daemon takes the caller for.
func (c *Client) Whoami(ctx context.Context) (*api.Whoami, error) {
	var w api.Whoami
	return &w, c.getJSON(ctx, http.MethodGet, api.PathWhoami, nil, &w)
}

// Check decides a script against the caller's own profile without running it.
func (c *Client) Check(ctx context.Context, req api.ExecRequest) (*api.CheckResult, error) {
	var r api.CheckResult
	return &r, c.getJSON(ctx, http.MethodPost, api.PathCheck, req, &r)
}

// Status is the daemon's state (admin socket).
func (c *Client) Status(ctx context.Context) (*api.Status, error) {
	var s api.Status
	return &s, c.getJSON(ctx, http.MethodGet, api.PathStatus, nil, &s)
}

// Runs lists the runs in progress (admin socket).
func (c *Client) Runs(ctx context.Context) ([]api.Run, error) {
	var r []api.Run
	return r, c.getJSON(ctx, http.MethodGet, api.PathRuns, nil, &r)
}

// Streams are where Exec delivers a run's output and events.
type Streams struct {
	Stdin          io.Reader // nil: the script reads nothing
	Stdout, Stderr io.Writer // nil: discarded
	// Event, if set, sees every event (accepted, pending, denied, ...).
	Event func(api.Event)
}

// Exec runs a script and streams its output. It returns the exit event, an
// *AccessDeniedError for a static denial, or another error; cancelling ctx
// closes the connection, which kills the run.
func (c *Client) Exec(ctx context.Context, req api.ExecRequest, s Streams) (*api.Event, error) {
	req.Stdin = s.Stdin != nil
	head, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	var body io.Reader = bytes.NewReader(head)
	if s.Stdin != nil {
		body = io.MultiReader(bytes.NewReader(append(head, '\n')), s.Stdin)
	}
	resp, err := c.do(ctx, http.MethodPost, api.PathExec, body)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		var ev api.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return nil, fmt.Errorf("bad event from execgated: %w", err)
		}
		if s.Event != nil {
			s.Event(ev)
		}
		switch ev.Event {
		case api.EventStdout:
			if s.Stdout != nil {
				_, _ = s.Stdout.Write(ev.Data) // a reader gone stops nothing: the run goes on to its exit
			}
		case api.EventStderr:
			if s.Stderr != nil {
				_, _ = s.Stderr.Write(ev.Data) // as for stdout
			}
		case api.EventExit:
			return &ev, nil
		case api.EventError:
			return nil, &APIError{Status: http.StatusInternalServerError, Message: ev.Error, ID: ev.ID}
		}
	}
	if err := sc.Err(); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("event stream: %w", err)
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return nil, errors.New("event stream ended without an exit event")
}

// Approvals lists the requests waiting for a human (admin socket).
func (c *Client) Approvals(ctx context.Context) ([]api.Approval, error) {
	var a []api.Approval
	return a, c.getJSON(ctx, http.MethodGet, api.PathApprovals, nil, &a)
}

// Decide approves or rejects a pending request (admin socket). A second
// decision on the same id is an *APIError with status 409.
func (c *Client) Decide(ctx context.Context, id string, d api.ApprovalDecision) (*api.AdminResult, error) {
	var r api.AdminResult
	return &r, c.getJSON(ctx, http.MethodPost, api.PathApprovals+"/"+url.PathEscape(id), d, &r)
}

// Changes returns a change set held for review (admin socket), with
// unified diffs when diff is set.
func (c *Client) Changes(ctx context.Context, id string, diff bool) (*api.ChangeSet, error) {
	var cs api.ChangeSet
	path := api.PathChanges + "/" + url.PathEscape(id)
	if diff {
		path += "?diff=1"
	}
	return &cs, c.getJSON(ctx, http.MethodGet, path, nil, &cs)
}

// AgentAction is kill, freeze, thaw or revive of one agent (admin socket).
func (c *Client) AgentAction(ctx context.Context, agent, action string) (*api.AdminResult, error) {
	var r api.AdminResult
	return &r, c.getJSON(ctx, http.MethodPost, api.PathAgents+url.PathEscape(agent)+"/"+url.PathEscape(action), struct{}{}, &r)
}

// Lockdown turns the global lockdown on or off (admin socket).
func (c *Client) Lockdown(ctx context.Context, on bool) (*api.AdminResult, error) {
	var r api.AdminResult
	return &r, c.getJSON(ctx, http.MethodPost, api.PathLockdown, api.LockdownRequest{On: on}, &r)
}

// Reload re-reads every profile (admin socket).
func (c *Client) Reload(ctx context.Context) (*api.AdminResult, error) {
	var r api.AdminResult
	return &r, c.getJSON(ctx, http.MethodPost, api.PathReload, struct{}{}, &r)
}
