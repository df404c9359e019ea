package supervisor

import (
	"errors"
	"net/http"

	"github.com/execgate/execgate/api"
	"github.com/execgate/execgate/audit"
	"github.com/execgate/execgate/policy"
	"github.com/execgate/execgate/profiles"
)

// refusal ends a request that runs nothing: a denial, a bad request, or
// execgate failing. It is the one place that says, for each, what the
// journal gets, what the client is answered (an HTTP error while no stream
// has begun; in the stream, a denied event and an exit event, or an error
// event) and the exit its end record carries.
type refusal struct {
	status     int // the HTTP status, while no stream has begun
	code       int // exitDenied or exitFailed
	journal    refusalRecord
	msg        string // api.Error's error; an error event's error
	decision   string // "deny" for a denial
	invocation string
	rule       profiles.Loc
	reason     string
	scriptSHA  string // a bad request's script hash, when it had a script
}

// refusalRecord is the record a refusal writes.
type refusalRecord int

const (
	journaled        refusalRecord = iota // none: the trail has it already (the decisions, the approval, the failed record)
	denyRecord                            // a decision record, DENY reason
	badRequestRecord                      // an error record, BAD REQUEST msg
	failureRecord                         // an error record, ERROR msg
)

func (f *refusal) Error() string { return f.msg }

// denial is a refusal by a switch, the schedule or a cap.
func denial(status int, reason string, rule profiles.Loc) *refusal {
	return &refusal{status: status, code: exitDenied, journal: denyRecord, msg: "deny: " + reason,
		decision: "deny", rule: rule, reason: reason}
}

// staticDenial is the static decision's deny, journaled with the
// decisions.
func staticDenial(res *policy.Result) *refusal {
	d := res.Decisive
	return &refusal{status: http.StatusForbidden, code: exitDenied, journal: journaled, msg: "deny: " + res.Line(),
		decision: "deny", invocation: d.Invocation(), rule: d.Rule, reason: d.Reason}
}

// humanDenial is an ask that was not approved, journaled as the approval.
func humanDenial(d *policy.Verdict, h verdictOfHuman) *refusal {
	reason := h.state.String() + ": " + h.reason
	return &refusal{status: http.StatusForbidden, code: exitDenied, journal: journaled, msg: "deny: " + reason,
		decision: "deny", invocation: d.Invocation(), rule: d.Rule, reason: reason}
}

// badRequestRefusal answers a request that cannot be served as sent.
func badRequestRefusal(err error) *refusal {
	re := asRequestError(err)
	return &refusal{status: re.code, code: exitFailed, journal: badRequestRecord, msg: re.msg}
}

// auditRefusal answers a request whose gating record could not be written.
func auditRefusal(err error) *refusal {
	return &refusal{status: http.StatusServiceUnavailable, code: exitFailed, journal: journaled,
		msg: "the audit log cannot be written, so nothing runs: " + err.Error()}
}

// runFailure is a run the sandbox could not carry out.
func runFailure(err error) *refusal {
	return &refusal{status: http.StatusInternalServerError, code: exitFailed, journal: failureRecord,
		msg: "execgate could not run the script: " + err.Error()}
}

// asRefusal is err as a *refusal; any other error is execgate failing.
func asRefusal(err error) *refusal {
	var f *refusal
	if errors.As(err, &f) {
		return f
	}
	return &refusal{status: http.StatusInternalServerError, code: exitFailed, journal: failureRecord, msg: err.Error()}
}

// record is what the refusal adds to the trail, or nil.
func (f *refusal) record(ri *reqInfo) *audit.Record {
	switch f.journal {
	case denyRecord:
		return ri.record(audit.EventDecision, audit.PriWarning, "DENY "+f.reason).Set(audit.FieldDecision, "deny").
			Set(audit.FieldReason, f.reason).Set(audit.FieldRule, f.rule.String())
	case badRequestRecord:
		rec := ri.record(audit.EventError, audit.PriWarning, "BAD REQUEST "+f.msg).Set(audit.FieldReason, f.msg)
		if f.scriptSHA != "" {
			rec.Set(audit.FieldScriptSHA256, f.scriptSHA)
		}
		return rec
	case failureRecord:
		return ri.record(audit.EventError, audit.PriErr, "ERROR "+f.msg).Set(audit.FieldReason, f.msg)
	}
	return nil
}

// apiError is the answer while no stream has begun.
func (f *refusal) apiError(id string) api.Error {
	return api.Error{Error: f.msg, ID: id, Decision: f.decision, Invocation: f.invocation, Rule: f.rule.String(), Reason: f.reason}
}

// deniedEvent is what the stream says of a denial as soon as it is made;
// a failure has none.
func (f *refusal) deniedEvent(id string) (api.Event, bool) {
	if f.code != exitDenied {
		return api.Event{}, false
	}
	return api.Event{Event: api.EventDenied, ID: id, Invocation: f.invocation, Rule: f.rule.String(), Reason: f.reason}, true
}

// lastEvent ends the stream: the exit of a denial, or the failure.
func (f *refusal) lastEvent(id string) api.Event {
	if f.code != exitDenied {
		return api.Event{Event: api.EventError, ID: id, Error: f.msg}
	}
	code := f.code
	return api.Event{Event: api.EventExit, ID: id, Code: &code}
}
