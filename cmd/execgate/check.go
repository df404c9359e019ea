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
		_ = enc.Encode(res.Report(p, dir)) // as the short output: the exit code carries the decision
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
