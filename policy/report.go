package policy

import (
	"github.com/execgate/execgate/api"
	"github.com/execgate/execgate/profiles"
)

// Report renders a result in the API's shape, for /v1/check and
// `execgate check -o json`.
func (r *Result) Report(p *profiles.Profile, dir string) api.CheckResult {
	o := api.CheckResult{Agent: p.Name, Profile: p.File, SHA256: p.SHA256, Cwd: dir, Decision: string(r.Decision), Verdicts: []api.Verdict{}}
	if d := r.Decisive; d != nil {
		o.Invocation, o.Rule, o.Reason = d.Invocation(), d.Rule.String(), d.Reason
	}
	if r.Err != nil {
		o.Error = r.Err.Error()
	}
	for _, v := range r.Verdicts {
		o.Verdicts = append(o.Verdicts, v.Report())
	}
	return o
}

// Report renders one verdict in the API's shape.
func (v *Verdict) Report() api.Verdict {
	jv := api.Verdict{Program: v.Inv.Prog, Role: v.Inv.Role.String(), Via: v.Inv.Via, Decision: string(v.Decision),
		Deferred: v.Deferred, Rule: v.Rule.String(), Match: v.Match, Reason: v.Reason, Argv: v.Argv()}
	if v.Inv.Pos.Line > 0 {
		jv.Pos = v.Inv.Pos.String()
	}
	return jv
}

// Argv is the invocation's words as written.
func (v *Verdict) Argv() []string {
	out := make([]string, 0, len(v.Inv.Args))
	for _, w := range v.Inv.Args {
		out = append(out, w.Text)
	}
	return out
}
