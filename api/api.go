// Package api holds the JSON types of execgated's socket API, shared by the
// daemon (package supervisor) and its clients (package client). It has no
// behaviour and no dependencies, so clients stay small.
package api

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// Paths of the agent socket.
const (
	PathExec   = "/v1/exec"
	PathCheck  = "/v1/check"
	PathWhoami = "/v1/whoami"
)

// Paths of the admin socket.
const (
	PathStatus    = "/v1/status"
	PathRuns      = "/v1/runs"
	PathApprovals = "/v1/approvals"
	PathChanges   = "/v1/changes"
	PathAgents    = "/v1/agents/"
	PathLockdown  = "/v1/lockdown"
	PathReload    = "/v1/reload"
)

// Default socket paths and the variables that override them.
const (
	DefaultAgentSocket = "/run/execgate/agent.sock"
	DefaultAdminSocket = "/run/execgate/admin.sock"
	EnvAgentSocket     = "EXECGATE_SOCKET"
	EnvAdminSocket     = "EXECGATE_ADMIN_SOCKET"
)

// ContentTypeNDJSON is the type of the /v1/exec event stream.
const ContentTypeNDJSON = "application/x-ndjson"

// ExecRequest is the body of POST /v1/exec and /v1/check. When Stdin is
// true, the request body continues after this JSON object with the bytes of
// the script's standard input.
type ExecRequest struct {
	Script  string            `json:"script"`
	Args    []string          `json:"args,omitempty"` // $0, $1, ...
	Cwd     string            `json:"cwd,omitempty"`  // default: the profile's first workdir
	Env     map[string]string `json:"env,omitempty"`  // filtered by the profile's env.pass
	Timeout Duration          `json:"timeout,omitempty"`
	Stdin   bool              `json:"stdin,omitempty"`
}

// Duration is a JSON duration: a Go duration string ("90s") or a number of
// seconds.
type Duration time.Duration

func (d *Duration) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("timeout %q: %w", s, err)
		}
		*d = Duration(v)
		return nil
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return fmt.Errorf("timeout %s: want seconds or a duration string", b)
	}
	*d = Duration(f * float64(time.Second))
	return nil
}

func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// Event is one line of the /v1/exec stream.
type Event struct {
	Event string `json:"event"` // accepted, pending, stdout, stderr, denied, exit, error
	ID    string `json:"id,omitempty"`
	Data  []byte `json:"data,omitempty"` // stdout, stderr (base64 in JSON)

	// denied: a nested exec refused at run time.
	Invocation string `json:"invocation,omitempty"`
	Rule       string `json:"rule,omitempty"`
	Reason     string `json:"reason,omitempty"`

	// exit
	Code       *int  `json:"code,omitempty"`
	Signal     int   `json:"signal,omitempty"`
	DurationMS int64 `json:"duration_ms,omitempty"`
	TimedOut   bool  `json:"timed_out,omitempty"`
	Truncated  bool  `json:"truncated,omitempty"`
	Killed     bool  `json:"killed,omitempty"`
	OOMKilled  bool  `json:"oom_killed,omitempty"`

	// error: the run failed inside execgate after it was accepted.
	Error string `json:"error,omitempty"`
}

// Event names.
const (
	EventAccepted = "accepted"
	EventPending  = "pending"
	EventStdout   = "stdout"
	EventStderr   = "stderr"
	EventDenied   = "denied"
	EventChanges  = "changes" // a dry run's change set: Reason is its summary
	EventExit     = "exit"
	EventError    = "error"
)

// Error is the body of every non-2xx response. A static denial (403) also
// names the invocation, rule and reason.
type Error struct {
	Error      string `json:"error"`
	ID         string `json:"id,omitempty"`
	Decision   string `json:"decision,omitempty"` // deny or ask
	Invocation string `json:"invocation,omitempty"`
	Rule       string `json:"rule,omitempty"`
	Reason     string `json:"reason,omitempty"`
}

// CheckResult is the answer of POST /v1/check and `execgate check -o json`.
type CheckResult struct {
	Agent      string    `json:"agent"`
	Profile    string    `json:"profile"`
	SHA256     string    `json:"profile_sha256"`
	Cwd        string    `json:"cwd"`
	Decision   string    `json:"decision"`
	Invocation string    `json:"invocation,omitempty"`
	Rule       string    `json:"rule,omitempty"`
	Reason     string    `json:"reason,omitempty"`
	Error      string    `json:"error,omitempty"`
	Verdicts   []Verdict `json:"invocations"`
}

// Verdict is the decision for one invocation.
type Verdict struct {
	Argv     []string `json:"argv"`
	Program  string   `json:"program,omitempty"`
	Role     string   `json:"role"`
	Pos      string   `json:"pos,omitempty"`
	Via      []string `json:"via,omitempty"`
	Decision string   `json:"decision"`
	Deferred bool     `json:"deferred,omitempty"`
	Rule     string   `json:"rule"`
	Match    string   `json:"match,omitempty"`
	Reason   string   `json:"reason"`
}

// Whoami is the answer of GET /v1/whoami.
type Whoami struct {
	Agent    string   `json:"agent"`
	UID      uint32   `json:"uid"`
	PID      int32    `json:"pid"`
	Profile  string   `json:"profile"`
	SHA256   string   `json:"profile_sha256"`
	Security string   `json:"security"`
	Ask      string   `json:"ask"`
	Workdirs []string `json:"workdirs"`
}

// Run is a run in progress, for GET /v1/runs.
type Run struct {
	ID      string    `json:"id"`
	Agent   string    `json:"agent"`
	UID     uint32    `json:"uid"`
	PeerPID int32     `json:"peer_pid"`
	Script  string    `json:"script"`
	Cwd     string    `json:"cwd"`
	Started time.Time `json:"started"`
	State   string    `json:"state"` // running
}

// Status is the answer of GET /v1/status.
type Status struct {
	Version      string        `json:"version"`
	Started      time.Time     `json:"started"`
	Audit        string        `json:"audit"`
	CgroupV      int           `json:"cgroup_version"`
	RuntimeCheck bool          `json:"runtime_exec_check"`
	Runs         int           `json:"runs"`
	Pending      int           `json:"pending_approvals"`
	Lockdown     bool          `json:"lockdown"`
	Agents       []AgentStatus `json:"agents"`
	Errors       []string      `json:"profile_errors,omitempty"`
}

// AgentStatus describes one loaded profile.
type AgentStatus struct {
	Name     string `json:"name"`
	UID      uint32 `json:"uid"`
	Profile  string `json:"profile"`
	SHA256   string `json:"profile_sha256"`
	Security string `json:"security"`
	Runs     int    `json:"runs"`
	Killed   bool   `json:"killed,omitempty"`
	Frozen   bool   `json:"frozen,omitempty"`
	// Rolling counts against the profile's caps.
	RequestsMinute int `json:"requests_last_minute"`
	RequestsDay    int `json:"requests_last_day"`
	ExecsMinute    int `json:"execs_last_minute"`
	ExecsDay       int `json:"execs_last_day"`
}

// Approval is a request waiting for a human, for GET /v1/approvals.
type Approval struct {
	ID          string     `json:"id"`
	Agent       string     `json:"agent"`
	UID         uint32     `json:"uid"`
	Script      string     `json:"script,omitempty"`
	Cwd         string     `json:"cwd"`
	EnvSHA256   string     `json:"env_sha256"`
	Invocations [][]string `json:"invocations"` // the exact argv lists that asked
	Nested      bool       `json:"nested,omitempty"`
	Rule        string     `json:"rule"`
	Reason      string     `json:"reason"`
	Created     time.Time  `json:"created"`
	Expires     time.Time  `json:"expires"`
}

// ApprovalDecision is the body of POST /v1/approvals/{id}.
type ApprovalDecision struct {
	Decision string `json:"decision"` // approve or reject
	Remember bool   `json:"remember,omitempty"`
	Reason   string `json:"reason,omitempty"`
}

// LockdownRequest is the body of POST /v1/lockdown.
type LockdownRequest struct {
	On bool `json:"on"`
}

// AdminResult answers an admin action.
type AdminResult struct {
	Message string `json:"message"`
	Runs    int    `json:"runs,omitempty"` // runs the action touched
}

// ChangeSet is a change set held for review (GET /v1/changes/{id}).
type ChangeSet struct {
	ID         string          `json:"id"`
	Agent      string          `json:"agent"`
	Summary    string          `json:"summary"`
	Violations []string        `json:"violations"`
	Set        json.RawMessage `json:"set"`            // every path: see supervisor/changes.Set
	Diff       string          `json:"diff,omitempty"` // with ?diff=1
}
