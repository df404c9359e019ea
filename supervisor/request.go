package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/execgate/execgate/api"
	"github.com/execgate/execgate/audit"
	"github.com/execgate/execgate/policy"
	"github.com/execgate/execgate/profiles"
	"github.com/execgate/execgate/supervisor/sandbox"
	"github.com/execgate/execgate/supervisor/sandbox/netcapture"
)

// The exit a request that ran nothing ends with, in its end record and
// its exit event.
const (
	exitDenied = 126 // denied, or approval refused
	exitFailed = 125 // execgate failed, or the request was bad
)

// request is one POST /v1/exec on its way through its stages: open, gate,
// approve, run. Each stage either lets it on or returns the *refusal that
// ends it; end then journals the refusal, writes the end record and
// answers the client.
type request struct {
	s     *Server
	w     http.ResponseWriter
	r     *http.Request
	ri    *reqInfo
	body  api.ExecRequest
	stdin io.Reader
	env   []string
	res   *policy.Result
	// approved are the argv lists a human approved (a static ask): their
	// execs do not ask again.
	approved [][]string
	out      *eventStream    // the answer, once the stream began
	ran      *sandbox.Result // what the run did, once it ran
	switched string          // the switch OnStart found thrown
}

func (s *Server) handleExec(w http.ResponseWriter, r *http.Request, c caller) {
	q := &request{s: s, w: w, r: r, ri: &reqInfo{id: newID(), prof: c.prof, peer: c.Peer}}
	if err := q.open(); err != nil {
		// Not a run: no end record.
		f := asRefusal(err)
		q.journal(f)
		q.answer(f)
		return
	}
	err := q.gate()
	if err == nil {
		err = q.approve(r.Context())
	}
	if err == nil {
		err = q.run(r.Context())
	}
	q.end(err)
}

// open reads the request and writes its request record: without that
// record nothing is decided, let alone run.
func (q *request) open() error {
	body, stdin, err := readRequest(q.r)
	if err != nil {
		f := badRequestRefusal(err)
		if body.Script != "" {
			f.scriptSHA = sha(body.Script)
		}
		return f
	}
	q.body, q.stdin = body, stdin
	q.ri.cwd = body.Cwd
	if q.ri.cwd == "" {
		q.ri.cwd = q.ri.prof.Workdirs[0]
	}
	if err := q.s.record(q.s.requestRecord(q.ri, body)); err != nil {
		q.s.logf("audit: %v: refusing run %s", err, q.ri.id)
		return auditRefusal(err)
	}
	return nil
}

// gate decides the request: its cwd, its environment and the static
// decision, journaled before anything else happens; then the switches,
// the schedule and the caps, each a refusal with its own reason.
func (q *request) gate() error {
	s, prof := q.s, q.ri.prof
	cwd, err := resolveCwd(prof, q.body.Cwd)
	if err != nil {
		return badRequestRefusal(err)
	}
	q.ri.cwd = cwd
	q.env = s.env(prof, q.body, cwd)
	q.res = policy.Decide(prof, q.body.Script, policy.Options{Dir: cwd, Path: envValue(q.env, "PATH"), RuntimeCheck: s.runtimeCheck, LookPath: s.look.LookPath})
	if err := s.writeDecisions(q.ri, q.res); err != nil {
		return auditRefusal(err)
	}
	if why := s.switches.refusal(prof.Name); why != "" {
		return denial(http.StatusForbidden, why, s.switchLoc())
	}
	if why := scheduleRefusal(prof, s.now()); why != "" {
		return denial(http.StatusForbidden, why, prof.LocOf(profiles.KeyScheduleWindows))
	}
	if why, key := s.caps.request(prof, s.now()); why != "" {
		return denial(http.StatusTooManyRequests, why, prof.LocOf(key))
	}
	if q.res.Decision == profiles.Deny {
		return staticDenial(q.res)
	}
	return nil
}

// approve holds a request that asks until a human decides, with the
// stream begun (pending). Then the switches are checked again: a kill,
// freeze or lockdown thrown while a human decided beats an approval
// given after it.
func (q *request) approve(ctx context.Context) error {
	if q.res.Decision == profiles.Ask {
		if err := q.ask(ctx); err != nil {
			return err
		}
	}
	if why := q.s.switches.refusal(q.ri.prof.Name); why != "" {
		return denial(http.StatusForbidden, why, q.s.switchLoc())
	}
	return nil
}

// ask puts the invocations that ask (every one, with ask = "always")
// before a human.
func (q *request) ask(ctx context.Context) error {
	var asks []asked
	for _, v := range q.res.Verdicts {
		if v.Decision == profiles.Ask {
			asks = append(asks, asked{argv: v.Argv(), program: v.Inv.Prog})
		}
	}
	if len(asks) == 0 { // ask = "always"
		for _, v := range q.res.Verdicts {
			asks = append(asks, asked{argv: v.Argv(), program: v.Inv.Prog})
		}
	}
	d := q.res.Decisive
	q.startStream()
	q.out.tell(api.Event{Event: api.EventPending, ID: q.ri.id, Invocation: d.Invocation(), Rule: d.Rule.String(), Reason: d.Reason})
	h, err := q.s.askHuman(ctx, q.ri, q.body, asks, d.Rule, d.Reason, false, nil)
	if err != nil || h.state != approved {
		return humanDenial(d, h)
	}
	for _, a := range asks {
		q.approved = append(q.approved, a.argv)
	}
	return nil
}

// run runs what was allowed in the sandbox, counted against the agent's
// concurrency cap, and streams its output.
func (q *request) run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s := q.s
	if msg := s.register(q.ri, q.body, cancel); msg != "" {
		return denial(http.StatusTooManyRequests, msg, q.ri.prof.LocOf(profiles.KeyConcurrent))
	}
	defer s.unregister(q.ri)
	q.startStream()
	q.out.tell(api.Event{Event: api.EventAccepted, ID: q.ri.id})
	spec := q.spec(cancel)
	if q.ri.prof.Network == profiles.NetworkProxy {
		eg, err := s.newEgress(q.ri, q.body, q.out)
		if err != nil {
			return runFailure(err)
		}
		// After the run: its connections are cut and their disconnect
		// records written before its end record.
		defer eg.Close()
		spec.Egress = eg
		spec.Env = setEnv(spec.Env, netcapture.DefaultPorts.Env())
	}
	cr, err := q.prepareChanges(&spec)
	if err != nil {
		return runFailure(err)
	}
	result, err := s.runner.Run(ctx, spec)
	if err != nil && cr != nil {
		q.discard(cr)
	}
	switch {
	case err != nil && q.switched != "":
		return denial(http.StatusForbidden, q.switched, s.switchLoc())
	case err != nil:
		return runFailure(err)
	}
	q.ran = &result
	if cr != nil {
		return q.settleChanges(ctx, cr)
	}
	return nil
}

// spec is the run's sandbox settings, with the stream for its output, the
// last check before its first instruction and the exec check.
func (q *request) spec(cancel context.CancelFunc) sandbox.Spec {
	s, prof := q.s, q.ri.prof
	spec := s.spec(prof, q.ri, q.body, q.ri.cwd, q.env)
	spec.Stdin = q.stdin
	spec.Stdout, spec.Stderr = q.out.writer(api.EventStdout), q.out.writer(api.EventStderr)
	started := new(sandbox.StartInfo) // filled in by the sandbox before OnStart
	spec.StartInfo, spec.DenyReadPatterns = started, prof.DenyRead.Patterns
	spec.OnStart = q.onStart(started)
	if s.runtimeCheck {
		argv := append([]string{spec.Shell, "-c", spec.Script}, spec.Args...)
		spec.ExecCheck = s.execChecker(q.ri, q.body, q.out, argv, q.approved, cancel)
	}
	return spec
}

// onStart is called at the last moment before any of the agent's code
// runs: a switch thrown by now still holds, and the start record must be
// written (no record, no run).
func (q *request) onStart(started *sandbox.StartInfo) func(pid int, cgroup string) error {
	return func(pid int, cgroup string) error {
		if q.switched = q.s.switches.refusal(q.ri.prof.Name); q.switched != "" {
			return errors.New(q.switched)
		}
		q.ri.initPid = pid
		cut := int64(0)
		if started.MaskCut {
			cut = 1
		}
		return q.s.record(q.ri.record(audit.EventStart, audit.PriInfo, fmt.Sprintf("START pid %d cgroup %s", pid, cgroup)).
			SetInt(audit.FieldPid, int64(pid)).Set(audit.FieldCgroup, cgroup).
			SetInt(audit.FieldMasked, int64(started.Masked)).SetInt(audit.FieldMaskCut, cut))
	}
}

// startStream begins the NDJSON answer, once: from then on the client is
// answered in the stream.
func (q *request) startStream() {
	if q.out != nil {
		return
	}
	if q.stdin != nil {
		// Read stdin while writing the stream: full duplex HTTP/1.1.
		if err := http.NewResponseController(q.w).EnableFullDuplex(); err != nil {
			q.stdin = nil
		}
	}
	q.w.Header().Set("Content-Type", api.ContentTypeNDJSON)
	q.w.WriteHeader(http.StatusOK)
	q.out = newEventStream(q.w)
}

// end closes a request that was opened: what its refusal journals, the
// end record, then the client's last answer, so that a client that saw
// its exit can rely on the record being there.
func (q *request) end(err error) {
	var f *refusal
	if err != nil {
		f = asRefusal(err)
		q.journal(f)
	}
	q.s.note(q.endRecord(f))
	q.answer(f)
}

// journal writes what a refusal adds to the trail and, in the stream,
// tells the client of a denial at once.
func (q *request) journal(f *refusal) {
	if rec := f.record(q.ri); rec != nil {
		q.s.note(rec)
	}
	if ev, ok := f.deniedEvent(q.ri.id); ok && q.out != nil {
		q.out.tell(ev)
	}
}

// answer gives the client its last word: an HTTP error while no stream
// has begun, else the stream's last event.
func (q *request) answer(f *refusal) {
	switch {
	case f == nil:
		q.out.tell(exitEvent(q.ri.id, q.ran))
	case q.out == nil:
		writeError(q.w, f.status, f.apiError(q.ri.id))
	default:
		q.out.tell(f.lastEvent(q.ri.id))
	}
}

func (q *request) endRecord(f *refusal) *audit.Record {
	res := q.ran
	code := 0
	if f != nil {
		code = f.code
	} else {
		code = res.Exit
	}
	end := q.ri.record(audit.EventEnd, endPriority(code, res), endMessage(code, res))
	if res == nil {
		return end.SetInt(audit.FieldExit, int64(code))
	}
	return end.SetInt(audit.FieldExit, int64(res.Exit)).SetInt(audit.FieldSignal, int64(res.Signal)).
		SetInt(audit.FieldDurationMS, res.Duration.Milliseconds()).SetInt(audit.FieldCPUMS, res.CPU.Milliseconds()).
		SetInt(audit.FieldMemPeak, res.MemPeak).SetInt(audit.FieldStdoutBytes, res.StdoutBytes).
		SetInt(audit.FieldStderrBytes, res.StderrBytes).Set(audit.FieldTimedOut, boolStr(res.TimedOut)).
		Set(audit.FieldTruncated, boolStr(res.Truncated)).Set(audit.FieldOOMKilled, boolStr(res.OOMKilled)).
		Set(audit.FieldCgroup, res.Cgroup)
}

func exitEvent(id string, res *sandbox.Result) api.Event {
	code := res.Exit
	return api.Event{Event: api.EventExit, ID: id, Code: &code, Signal: res.Signal, DurationMS: res.Duration.Milliseconds(),
		TimedOut: res.TimedOut, Truncated: res.Truncated, Killed: res.Killed, OOMKilled: res.OOMKilled}
}

// switchLoc is where a refusal by a switch points: the state file.
func (s *Server) switchLoc() profiles.Loc { return profiles.Loc{File: s.switches.path} }
