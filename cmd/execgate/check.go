package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/execgate/execgate/policy"
	"github.com/execgate/execgate/profiles"
)

// loadDefaults reads execgate.toml when it exists. An explicit --config
// that is missing is an error; the default path may be absent.
func loadDefaults(path string, explicit bool) (*profiles.Config, error) {
	if _, err := os.Stat(path); err != nil && !explicit && errors.Is(err, os.ErrNotExist) {
		return profiles.DefaultConfig(), nil
	}
	return profiles.LoadConfig(path)
}

func runCheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	config := fs.String("config", profiles.DefaultConfigFile, "daemon config whose [defaults] profiles inherit")
	agents := fs.String("agents", "", "profiles directory (default: the config's agents_dir)")
	agent := fs.String("agent", "", "agent (profile) name")
	cwd := fs.String("cwd", "", "working directory the script would run in (default: the profile's first workdir)")
	out := fs.String("o", "short", "output: short or json")
	runtime := fs.Bool("runtime-check", false, "assume the kernel exec check is on: words not knowable now are left to it")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	explicit := false
	fs.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "config" })
	if *agent == "" || fs.NArg() != 1 || (*out != "short" && *out != "json") {
		fmt.Fprintln(stderr, "usage: execgate check --agents DIR --agent NAME [--cwd DIR] [-o short|json] -- 'SCRIPT'")
		return exitUsage
	}
	cfg, err := loadDefaults(*config, explicit)
	if err != nil {
		fmt.Fprintf(stderr, "execgate: %v\n", err)
		return exitUsage
	}
	if *agents == "" {
		*agents = cfg.AgentsDir
	}
	p, err := profiles.LoadFile(filepath.Join(*agents, *agent+".toml"), cfg.Defaults)
	if err != nil {
		if p == nil || !errors.Is(err, profiles.ErrUnknownAccount) {
			fmt.Fprintf(stderr, "execgate: %v\n", err)
			return exitUsage
		}
		fmt.Fprintf(stderr, "execgate: warning: %v (deciding anyway)\n", err)
	}
	dir := *cwd
	if dir == "" {
		dir = p.Workdirs[0]
	}
	if dir, err = filepath.Abs(dir); err != nil {
		fmt.Fprintf(stderr, "execgate: --cwd: %v\n", err)
		return exitUsage
	}
	res := policy.Decide(p, fs.Arg(0), policy.Options{Dir: dir, RuntimeCheck: *runtime})
	if *out == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(jsonResult(p, dir, res))
	} else {
		printShort(stdout, res)
	}
	switch res.Decision {
	case profiles.Deny:
		return exitDeny
	case profiles.Ask:
		return exitAsk
	}
	return exitOK
}

func printShort(w io.Writer, res *policy.Result) {
	for i := range res.Verdicts {
		v := &res.Verdicts[i]
		d := strings.ToUpper(string(v.Decision))
		if v.Deferred {
			d += "*"
		}
		line := fmt.Sprintf("%-6s %s", d, v.Invocation())
		if v.Inv.Pos.Line > 0 {
			line = fmt.Sprintf("%-6s %-5s %s", d, v.Inv.Pos, v.Invocation())
		}
		if len(v.Inv.Via) > 0 {
			line += "  (via " + strings.Join(v.Inv.Via, ", ") + ")"
		}
		fmt.Fprintf(w, "%s\n       [%s] %s\n", line, v.Rule, v.Reason)
	}
	fmt.Fprintf(w, "=> %s", strings.ToUpper(string(res.Decision)))
	if res.Decision != profiles.Allow || res.Err != nil {
		fmt.Fprintf(w, ": %s", res.Line())
	}
	fmt.Fprintln(w)
	for _, v := range res.Verdicts {
		if v.Deferred {
			fmt.Fprintln(w, "(* the runtime exec check decides the words not knowable before running)")
			break
		}
	}
}

type jsonVerdict struct {
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

type jsonOut struct {
	Agent      string        `json:"agent"`
	Profile    string        `json:"profile"`
	SHA256     string        `json:"profile_sha256"`
	Cwd        string        `json:"cwd"`
	Decision   string        `json:"decision"`
	Invocation string        `json:"invocation,omitempty"`
	Rule       string        `json:"rule,omitempty"`
	Reason     string        `json:"reason,omitempty"`
	Error      string        `json:"error,omitempty"`
	Verdicts   []jsonVerdict `json:"invocations"`
}

func jsonResult(p *profiles.Profile, dir string, res *policy.Result) jsonOut {
	o := jsonOut{Agent: p.Name, Profile: p.File, SHA256: p.SHA256, Cwd: dir, Decision: string(res.Decision), Verdicts: []jsonVerdict{}}
	if d := res.Decisive; d != nil {
		o.Invocation, o.Rule, o.Reason = d.Invocation(), d.Rule.String(), d.Reason
	}
	if res.Err != nil {
		o.Error = res.Err.Error()
	}
	for _, v := range res.Verdicts {
		jv := jsonVerdict{Program: v.Inv.Prog, Role: v.Inv.Role.String(), Via: v.Inv.Via, Decision: string(v.Decision),
			Deferred: v.Deferred, Rule: v.Rule.String(), Match: v.Match, Reason: v.Reason, Argv: []string{}}
		if v.Inv.Pos.Line > 0 {
			jv.Pos = v.Inv.Pos.String()
		}
		for _, w := range v.Inv.Args {
			jv.Argv = append(jv.Argv, w.Text)
		}
		o.Verdicts = append(o.Verdicts, jv)
	}
	return o
}
