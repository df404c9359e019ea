package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/execgate/execgate/api"
	"github.com/execgate/execgate/audit"
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

// execChecker decides every exec of one run. It is called from one
// goroutine per run (execwatch.Watch), so its state needs no lock.
// approved are the argv lists a human approved for this run (a static
// ask): their execs do not ask again.
func (s *Server) execChecker(ctx context.Context, ri *reqInfo, req api.ExecRequest, out *eventStream, argv []string, approved [][]string, kill context.CancelFunc) execwatch.Decide {
	first := true
	free := map[int]mark{}
	scripts := map[int]script{}
	return func(e *execwatch.Exec) error {
		if first {
			// The init's exec of the shell is the script itself, which the
			// static layer decided; anything else in its place is refused.
			first = false
			if e.Err == nil && slices.Equal(e.Argv, argv) {
				return nil
			}
		}
		var v policy.Verdict
		var identity string
		if e.Err != nil {
			v = policy.Verdict{Decision: profiles.Deny, Rule: profiles.Loc{File: ri.prof.File}, Reason: "cannot be checked: " + e.Err.Error()}
		} else {
			identity = s.reg.Load().bins.identify(e.Pid, e.Resolved)
			pe := policy.Exec{Path: e.Resolved, Alias: e.Alias, Argv: e.Argv, Cwd: e.Cwd, UnderAny: underAny(e.Pid, free), Identity: identity}
			if sc, ok := scripts[e.Pid]; ok && sc.continues(e.Argv) {
				pe.Continues = sc.rule
			}
			v = policy.DecideExec(ri.prof, pe)
		}
		if v.Decision != profiles.Deny && e.Err == nil {
			if why, key := s.caps.exec(ri.prof, s.now()); why != "" {
				v = policy.Verdict{Decision: profiles.Deny, Rule: ri.prof.LocOf(key), Reason: why}
			}
		}
		if v.Decision == profiles.Ask && slices.ContainsFunc(approved, func(a []string) bool { return slices.Equal(a, e.Argv) }) {
			v.Decision, v.Reason = profiles.Allow, "approved for this run: "+v.Reason
		}
		if v.Decision == profiles.Ask {
			// The exec waits in the kernel while a human decides.
			h := s.askHuman(ctx, ri, req, []asked{{argv: e.Argv, program: e.Resolved}}, v.Rule, v.Reason, true, func(a api.Approval) {
				out.send(api.Event{Event: api.EventPending, ID: a.ID, Invocation: shellJoin(e.Argv, e.Path), Rule: v.Rule.String(), Reason: v.Reason})
			})
			if h.approve {
				v.Decision, v.Reason = profiles.Allow, h.reason
			} else {
				v.Decision, v.Reason = profiles.Deny, h.state+": "+h.reason
			}
		}
		if err := s.sink.Write(execRecord(ri, e, &v, identity)); err != nil {
			// The audit trail is gone: the run must not go on unrecorded.
			logf("audit: %v: killing run %s", err, ri.id)
			kill()
			return fmt.Errorf("audit: %w", err)
		}
		if v.Decision == profiles.Allow {
			if v.By != nil && v.By.NestedAny {
				if st, err := execwatch.ProcStat(e.Pid); err == nil {
					free[e.Pid] = mark{rule: v.By, start: st.Start}
				}
			}
			if v.By != nil && v.By.Action == profiles.Allow {
				scripts[e.Pid] = script{rule: v.By, path: e.Path, argv: e.Argv}
			} else {
				delete(scripts, e.Pid)
			}
			return nil
		}
		out.send(api.Event{Event: api.EventDenied, ID: ri.id, Invocation: shellJoin(e.Argv, e.Path), Rule: v.Rule.String(), Reason: v.Reason})
		return errors.New(v.Reason)
	}
}

// underAny returns the nested = "any" rule that allowed pid or one of its
// ancestors, if any did.
func underAny(pid int, free map[int]mark) *profiles.Rule {
	if len(free) == 0 {
		return nil
	}
	for steps := 0; pid > 1 && steps < 64; steps++ {
		st, err := execwatch.ProcStat(pid)
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
		st, err := execwatch.ProcStat(pid)
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
	private := ri.prof.Audit.Script == "sha256" && v.Decision == profiles.Allow
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
