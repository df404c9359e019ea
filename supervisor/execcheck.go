package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/execgate/execgate/api"
	"github.com/execgate/execgate/audit"
	"github.com/execgate/execgate/internal/procfs"
	"github.com/execgate/execgate/policy"
	"github.com/execgate/execgate/profiles"
	"github.com/execgate/execgate/supervisor/execwatch"
)

// WithExecCheck turns the kernel exec check on or off. Off is the degraded
// mode: the static decision then denies what it cannot prove safe.
func WithExecCheck(on bool) Option { return func(s *Server) { s.runtimeCheck = on } }

// mark is a process allowed by a rule with nested = "any"; Start tells a
// reused pid apart.
type mark struct {
	rule  *profiles.Rule
	start uint64
}

// script is the last program a process was allowed to exec, so that the
// interpreter its "#!" line names can follow (the kernel starts "#!/usr/
// bin/env node" without a new execve; env's exec of node is the next one).
type script struct {
	rule *profiles.Rule
	path string
	argv []string
}

// continues reports whether argv runs the script s: INTERP [OPTS] PATH ARGS.
func (s script) continues(argv []string) bool {
	for i := 1; i < len(argv) && i <= 3; i++ {
		if argv[i] == s.path && len(s.argv) > 0 && slices.Equal(argv[i+1:], s.argv[1:]) {
			return true
		}
	}
	return false
}

// execCheck decides every exec of one run. Watch calls it from one
// goroutine, so its state needs no lock.
type execCheck struct {
	s    *Server
	ri   *reqInfo
	req  api.ExecRequest
	out  *eventStream
	kill context.CancelFunc
	// argv is the init's exec of the shell: the script the static layer
	// decided. approved are the argv lists a human approved for this run
	// (a static ask): their execs do not ask again.
	argv     [][]string
	approved [][]string
	first    bool
	free     map[int]mark
	scripts  map[int]script
	// last is the verdict of the exec just allowed, for Confirm.
	last   policy.Verdict
	lastID string
}

func (s *Server) execChecker(ri *reqInfo, req api.ExecRequest, out *eventStream, argv []string, approved [][]string, kill context.CancelFunc) *execCheck {
	return &execCheck{s: s, ri: ri, req: req, out: out, kill: kill, argv: [][]string{argv}, approved: approved,
		first: true, free: map[int]mark{}, scripts: map[int]script{}}
}

// Decide answers an exec before the kernel runs it. ctx ends with the
// run, and with it any wait for a human.
func (c *execCheck) Decide(ctx context.Context, e *execwatch.Exec) error {
	if c.first {
		// The init's exec of the shell is the script itself, which the
		// static layer decided; anything else in its place is refused.
		c.first = false
		if e.Err == nil && slices.Equal(e.Argv, c.argv[0]) {
			c.last, c.lastID = policy.Verdict{Decision: profiles.Allow}, ""
			return nil
		}
	}
	prof := c.ri.prof
	var v policy.Verdict
	var identity string
	if e.Err != nil {
		v = policy.Verdict{Decision: profiles.Deny, Rule: profiles.Loc{File: prof.File}, Reason: "cannot be checked: " + e.Err.Error()}
	} else {
		identity = c.s.reg.Load().bins.identify(e.Pid, e.Resolved)
		pe := policy.Exec{Path: e.Resolved, Alias: e.Alias, Argv: e.Argv, Cwd: e.Cwd, UnderAny: underAny(e.Pid, c.free), Identity: identity}
		if sc, ok := c.scripts[e.Pid]; ok && sc.continues(e.Argv) {
			pe.Continues = sc.rule
		}
		v = policy.DecideExec(prof, pe)
	}
	if v.Decision != profiles.Deny && e.Err == nil {
		if why, key := c.s.caps.exec(prof, c.s.now()); why != "" {
			v = policy.Verdict{Decision: profiles.Deny, Rule: prof.LocOf(key), Reason: why}
		}
	}
	if v.Decision == profiles.Ask && slices.ContainsFunc(c.approved, func(a []string) bool { return slices.Equal(a, e.Argv) }) {
		v.Decision, v.Reason = profiles.Allow, "approved for this run: "+v.Reason
	}
	if v.Decision == profiles.Ask {
		c.ask(ctx, e, &v)
	}
	if err := c.record(e, &v, identity); err != nil {
		return err
	}
	if v.Decision != profiles.Allow {
		return errors.New(v.Reason)
	}
	c.last, c.lastID = v, identity
	c.allowed(e.Pid, e.Path, e.Argv, &v)
	return nil
}

// ask holds an exec that asks in the kernel while a human decides, and
// turns v into the human's allow or deny.
func (c *execCheck) ask(ctx context.Context, e *execwatch.Exec, v *policy.Verdict) {
	h, err := c.s.askHuman(ctx, c.ri, c.req, []asked{{argv: e.Argv, program: e.Resolved}}, v.Rule, v.Reason, true, func(a api.Approval) {
		c.out.tell(api.Event{Event: api.EventPending, ID: a.ID, Invocation: shellJoin(e.Argv, e.Path), Rule: v.Rule.String(), Reason: v.Reason})
	})
	if err == nil && h.state == approved {
		v.Decision, v.Reason = profiles.Allow, h.reason
	} else {
		v.Decision, v.Reason = profiles.Deny, h.state.String()+": "+h.reason
	}
}

// Confirm decides again at the exec event when the new image is not the
// exec that was decided. A "#!" script legitimately runs its interpreter
// (INTERP [OPTS] PATH ARGS); anything else another thread or process
// changed between the check and the kernel's copy, and is decided on what
// the kernel really executed. Nothing asks here: the new image is stopped
// before its first instruction and runs only if the rules allow it as is.
func (c *execCheck) Confirm(ctx context.Context, decided, ran *execwatch.Exec) error {
	prof := c.ri.prof
	var v policy.Verdict
	var identity string
	if ran.Err != nil {
		v = policy.Verdict{Decision: profiles.Deny, Rule: profiles.Loc{File: prof.File}, Reason: "cannot be confirmed: " + ran.Err.Error()}
	} else {
		identity = c.s.reg.Load().bins.identifyFile("/proc/"+strconv.Itoa(ran.Pid)+"/exe", path.Base(ran.Resolved))
		if ran.Resolved == decided.Resolved && identity == c.lastID && slices.Equal(ran.Argv, decided.Argv) {
			return nil // the same program and argv, only a file too fresh to trust its ctime
		}
		pe := policy.Exec{Path: ran.Resolved, Argv: ran.Argv, Cwd: ran.Cwd, UnderAny: underAny(ran.Pid, c.free), Identity: identity}
		if c.last.By != nil && (script{rule: c.last.By, path: decided.Path, argv: decided.Argv}).continues(ran.Argv) {
			pe.Continues = c.last.By
		}
		v = policy.DecideExec(prof, pe)
		if v.Decision == profiles.Allow {
			if pe.Continues != nil {
				// The interpreter of the script: what it execs next (env's
				// exec of node) still continues the script, not env.
				c.scripts[ran.Pid] = script{rule: c.last.By, path: decided.Path, argv: decided.Argv}
			} else {
				c.allowed(ran.Pid, ran.Path, ran.Argv, &v)
			}
			return nil
		}
	}
	v.Decision = profiles.Deny
	v.Reason = fmt.Sprintf("the exec raced its check: the kernel executed %q, not the %q that was allowed (%s)",
		shellJoin(ran.Argv, ran.Path), shellJoin(decided.Argv, decided.Path), v.Reason)
	if err := c.record(ran, &v, identity); err != nil {
		return err
	}
	return errors.New(v.Reason)
}

// record journals an exec decision and tells the client of a denial. An
// exec goes on only with its record written: without the trail, the run
// is killed.
func (c *execCheck) record(e *execwatch.Exec, v *policy.Verdict, identity string) error {
	if err := c.s.record(execRecord(c.ri, e, v, identity)); err != nil {
		c.s.logf("audit: %v: killing run %s", err, c.ri.id)
		c.kill()
		return fmt.Errorf("audit: %w", err)
	}
	if v.Decision != profiles.Allow {
		c.out.tell(api.Event{Event: api.EventDenied, ID: c.ri.id, Invocation: shellJoin(e.Argv, e.Path), Rule: v.Rule.String(), Reason: v.Reason})
	}
	return nil
}

// allowed notes what an allowed exec lets its process do next.
func (c *execCheck) allowed(pid int, p string, argv []string, v *policy.Verdict) {
	if v.By != nil && v.By.NestedAny {
		if st, err := procfs.Stat(pid); err == nil {
			c.free[pid] = mark{rule: v.By, start: st.Start}
		}
	}
	if v.By != nil && v.By.Action == profiles.Allow {
		c.scripts[pid] = script{rule: v.By, path: p, argv: argv}
	} else {
		delete(c.scripts, pid)
	}
}

// underAny returns the nested = "any" rule that allowed pid or one of its
// ancestors, if any did.
func underAny(pid int, free map[int]mark) *profiles.Rule {
	if len(free) == 0 {
		return nil
	}
	for steps := 0; pid > 1 && steps < 64; steps++ {
		st, err := procfs.Stat(pid)
		if err != nil {
			return nil
		}
		if m, ok := free[pid]; ok && m.start == st.Start {
			return m.rule
		}
		pid = st.PPid
	}
	return nil
}

// parents describes the caller's ancestry inside the run for a denial
// record: "412 find < 410 bash", up to the run's init.
func parents(e *execwatch.Exec, initPid int) string {
	var chain []string
	for pid, steps := e.PPid, 0; pid > 1 && steps < 16; steps++ {
		if pid == initPid {
			chain = append(chain, strconv.Itoa(pid)+" execgate-init")
			break
		}
		st, err := procfs.Stat(pid)
		if err != nil {
			break
		}
		chain = append(chain, strconv.Itoa(pid)+" "+st.Comm)
		pid = st.PPid
	}
	return strings.Join(chain, " < ")
}

func shellJoin(argv []string, path string) string {
	if len(argv) == 0 {
		return path
	}
	return strings.Join(argv, " ")
}

func execRecord(ri *reqInfo, e *execwatch.Exec, v *policy.Verdict, identity string) *audit.Record {
	pri := audit.PriInfo
	word := "EXEC"
	if v.Decision != profiles.Allow {
		pri, word = audit.PriWarning, "EXEC DENY"
	}
	argv := e.Argv
	private := ri.prof.Audit.Script == profiles.AuditScriptSHA256 && v.Decision == profiles.Allow
	if private && len(argv) > 1 {
		argv = argv[:1] // allowed execs keep only the program when scripts are hashed
	}
	line := shellJoin(argv, e.Path)
	msg := fmt.Sprintf("%s %s (%s", word, line, v.Rule)
	if v.Decision != profiles.Allow {
		msg += ": " + v.Reason
	}
	msg += ")"
	b, _ := json.Marshal(argv)
	rec := ri.record(audit.EventExec, pri, msg).Set(audit.FieldArgv, string(b)).Set(audit.FieldDecision, string(v.Decision)).
		Set(audit.FieldRule, v.Rule.String()).Set(audit.FieldReason, v.Reason).SetInt(audit.FieldPid, int64(e.Pid)).
		SetInt(audit.FieldPPid, int64(e.PPid)).Set(audit.FieldCwd, e.Cwd).Set(audit.FieldProgram, e.Resolved)
	if v.Decision != profiles.Allow {
		rec.Set(audit.FieldParents, parents(e, ri.initPid))
	}
	if identity != "" {
		rec.Set(audit.FieldProgram, e.Resolved+" (a copy of "+identity+")")
	}
	return rec
}
