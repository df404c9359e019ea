package journaltest

import (
	"fmt"
	"time"

	"github.com/execgate/execgate/audit"
)

// Samples returns one realistic record of every event type (request,
// decision, approval, start, exec, end, admin, reload, error) for run id
// and agent, with every field execgated sets on it, in the order a run
// writes them. They replay flow's incident, the one examples/flow.toml
// was written for.
func Samples(id, agent string) []*audit.Record {
	const profileSHA = "9f2c4e1b7a3d5f60c8e2b4a6d8f0e1c3b5a7d9f1e3c5b7a9d1f3e5c7b9a1d3f5"
	script := "git checkout flow/a11y-badge-recordings && npm run build && git add -A && git commit -m 'badge recordings'"
	argv := []string{"git", "checkout", "flow/a11y-badge-recordings"}
	common := func(r *audit.Record) *audit.Record {
		return r.Set(audit.FieldID, id).Set(audit.FieldAgent, agent).Set(audit.FieldUID, "1001").Set(audit.FieldProfileSHA256, profileSHA)
	}
	req := common(audit.New(audit.EventRequest, audit.PriInfo, fmt.Sprintf("%s request %s", agent, script))).
		Set(audit.FieldPeerPID, "48211").
		Set(audit.FieldScript, script).
		Set(audit.FieldScriptSHA256, "5d41402abc4b2a76b9719d911017c592ae5c1b7fb5d3c1b5e0e5c7d1a2b3c4d5").
		Set(audit.FieldCwd, "/srv/fibreflow").
		Set(audit.FieldEnvNames, "HOME,LANG,PATH,TERM").
		Set(audit.FieldVia, "egsh")
	dec := common(audit.New(audit.EventDecision, audit.PriWarning, fmt.Sprintf("%s DENY git checkout flow/a11y-badge-recordings (flow.toml:14: FibreFlow changes need a direct human approval; submit a PR instead)", agent))).
		SetArgv(argv).
		Set(audit.FieldCwd, "/srv/fibreflow").
		Set(audit.FieldDecision, "deny").
		Set(audit.FieldRule, "flow.toml:14").
		Set(audit.FieldReason, "FibreFlow changes need a direct human approval; submit a PR instead")
	appr := common(audit.New(audit.EventApproval, audit.PriInfo, fmt.Sprintf("%s APPROVED npm test (by uid 0)", agent))).
		SetArgv([]string{"npm", "test"}).
		Set(audit.FieldDecision, "approved").
		Set(audit.FieldReviewerUID, "0").
		Set(audit.FieldReason, "tests only")
	start := common(audit.New(audit.EventStart, audit.PriInfo, fmt.Sprintf("%s start npm test", agent))).
		Set(audit.FieldPid, "48230").
		Set(audit.FieldCgroup, "/execgate/"+agent+"/"+id).
		Set(audit.FieldCwd, "/srv/fibreflow")
	exec := common(audit.New(audit.EventExec, audit.PriInfo, fmt.Sprintf("%s ALLOW exec node /usr/lib/node_modules/npm/bin/npm-cli.js test", agent))).
		SetArgv([]string{"node", "/usr/lib/node_modules/npm/bin/npm-cli.js", "test"}).
		Set(audit.FieldDecision, "allow").
		Set(audit.FieldRule, "flow.toml:22").
		Set(audit.FieldPid, "48231").
		Set(audit.FieldPPid, "48230")
	end := common(audit.New(audit.EventEnd, audit.PriInfo, fmt.Sprintf("%s end exit 0 in 1532ms", agent))).
		SetInt(audit.FieldExit, 0).
		SetInt(audit.FieldSignal, 0).
		SetInt(audit.FieldDurationMS, 1532).
		SetInt(audit.FieldCPUMS, 911).
		SetInt(audit.FieldMemPeak, 73400320).
		SetInt(audit.FieldStdoutBytes, 20480).
		SetInt(audit.FieldStderrBytes, 112).
		Set(audit.FieldTimedOut, "false").
		Set(audit.FieldTruncated, "false")
	admin := common(audit.New(audit.EventAdmin, audit.PriWarning, fmt.Sprintf("admin uid 0 kill %s", agent))).
		Set(audit.FieldAdminAction, "kill").
		Set(audit.FieldReviewerUID, "0")
	reload := common(audit.New(audit.EventReload, audit.PriInfo, "reloaded 3 profiles")).
		Set(audit.FieldReason, "SIGHUP")
	errRec := common(audit.New(audit.EventError, audit.PriErr, fmt.Sprintf("profile %s.toml:3: unknown key \"secuirty\"; keeping the last good version", agent))).
		Set(audit.FieldReason, "unknown key \"secuirty\"").
		Set(audit.FieldRule, agent+".toml:3")
	return []*audit.Record{req, dec, appr, start, exec, end, admin, reload, errRec}
}

// SameRecord returns an error unless got holds everything want does:
// Message, Priority, SYSLOG_IDENTIFIER=execgated and every field of want
// with the same value, and a Time within a minute of want.Time when that
// is set (journald stamps its own receive time).
func SameRecord(got, want *audit.Record) error {
	if got == nil {
		return fmt.Errorf("no record, want %q", want.Message)
	}
	if got.Message != want.Message {
		return fmt.Errorf("MESSAGE = %q, want %q", trim(got.Message), trim(want.Message))
	}
	if got.Priority != want.Priority {
		return fmt.Errorf("%s: PRIORITY = %d, want %d", want.Event(), got.Priority, want.Priority)
	}
	if v := got.Fields[audit.FieldIdentifier]; v != audit.Identifier {
		return fmt.Errorf("%s: SYSLOG_IDENTIFIER = %q, want %q", want.Event(), v, audit.Identifier)
	}
	for k, w := range want.Fields {
		g, ok := got.Fields[k]
		if !ok {
			return fmt.Errorf("%s: %s missing", want.Event(), k)
		}
		if g != w {
			return fmt.Errorf("%s: %s = %q (%d bytes), want %q (%d bytes)", want.Event(), k, trim(g), len(g), trim(w), len(w))
		}
	}
	if got.Time.IsZero() {
		return fmt.Errorf("%s: no time", want.Event())
	}
	if !want.Time.IsZero() {
		if d := got.Time.Sub(want.Time); d < -time.Minute || d > time.Minute {
			return fmt.Errorf("%s: time %v, want about %v", want.Event(), got.Time, want.Time)
		}
	}
	return nil
}

func trim(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}
