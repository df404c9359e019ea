package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
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

const checkUsage = "usage: execgate check [--config FILE] (--agents DIR --agent NAME | --profile FILE) [--cwd DIR] [-o short|json] (-- 'SCRIPT' | --connect HOST:PORT)"

func runCheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	config := fs.String("config", profiles.DefaultConfigFile, "daemon config whose [defaults] profiles inherit")
	agents := fs.String("agents", "", "profiles directory (default: the config's agents_dir)")
	agent := fs.String("agent", "", "agent (profile) name")
	profile := fs.String("profile", "", "profile file to check against, instead of --agents and --agent")
	cwd := fs.String("cwd", "", "working directory the script would run in (default: the profile's first workdir)")
	out := fs.String("o", "short", "output: short or json")
	runtime := fs.Bool("runtime-check", false, "assume the kernel exec check is on: words not knowable now are left to it")
	connect := fs.String("connect", "", "decide a connection to HOST:PORT instead of a script")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	explicit := false
	fs.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "config" })
	wantArgs := 1
	if *connect != "" {
		wantArgs = 0
	}
	if (*agent == "") == (*profile == "") || fs.NArg() != wantArgs || (*out != "short" && *out != "json") {
		fmt.Fprintln(stderr, checkUsage)
		return exitUsage
	}
	cfg, err := loadDefaults(*config, explicit)
	if err != nil {
		fmt.Fprintf(stderr, "execgate: %v\n", err)
		return exitUsage
	}
	file := *profile
	if file == "" {
		if *agents == "" {
			*agents = cfg.AgentsDir
		}
		file = filepath.Join(*agents, *agent+".toml")
	}
	p, err := profiles.LoadFile(file, cfg.Defaults)
	if err != nil {
		if p == nil || !errors.Is(err, profiles.ErrUnknownAccount) {
			fmt.Fprintf(stderr, "execgate: %v\n", err)
			return exitUsage
		}
		fmt.Fprintf(stderr, "execgate: warning: %v (deciding anyway)\n", err)
	}
	if *connect != "" {
		return checkConnect(p, cfg, *connect, *out == "json", stdout, stderr)
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
	return decisionExit(res.Decision)
}

func decisionExit(d policy.Decision) int {
	switch d {
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

// connectReport is `execgate check --connect -o json`.
type connectReport struct {
	Agent    string `json:"agent"`
	Profile  string `json:"profile"`
	SHA256   string `json:"sha256"`
	Connect  string `json:"connect"`
	Decision string `json:"decision"`
	Rule     string `json:"rule"`
	Match    string `json:"match,omitempty"`
	Reason   string `json:"reason"`
	// Address: for an IP literal, the check of the address itself
	// (loopback, private, metadata ...), which the daemon makes too.
	Address *connectStep `json:"address,omitempty"`
	// Proxy: what the [[connect]] rules would decide with
	// network.mode = "proxy", when the profile has another mode.
	Proxy *connectStep `json:"proxy,omitempty"`
}

type connectStep struct {
	Decision string `json:"decision"`
	Rule     string `json:"rule"`
	Match    string `json:"match,omitempty"`
	Reason   string `json:"reason"`
}

func stepOf(v *policy.ConnectVerdict) *connectStep {
	return &connectStep{Decision: string(v.Decision), Rule: v.Rule.String(), Match: v.Match, Reason: v.Reason}
}

// checkConnect explains the decision for a connection to target (HOST:PORT,
// IPv6 in brackets). A name is not resolved here: the daemon checks the
// address it resolves to when connecting. An IP literal is also checked
// as an address, against the config's [network] private_ok.
func checkConnect(p *profiles.Profile, cfg *profiles.Config, target string, asJSON bool, stdout, stderr io.Writer) int {
	host, portStr, err := net.SplitHostPort(target)
	port, perr := strconv.ParseUint(portStr, 10, 16)
	if err != nil || perr != nil || port == 0 {
		fmt.Fprintf(stderr, "execgate: --connect %q: want HOST:PORT with a port from 1 to 65535 (IPv6 as [2001:db8::1]:443)\n", target)
		return exitUsage
	}
	v := policy.DecideConnect(p, host, uint16(port))
	final := &v
	r := connectReport{Agent: p.Name, Profile: p.File, SHA256: p.SHA256, Connect: v.Target()}
	if v.Dest.Addr.IsValid() && v.Decision != profiles.Deny && p.Network == profiles.NetworkProxy {
		a := policy.CheckAddr(p, &cfg.PrivateOK, v.Dest.Addr, uint16(port))
		r.Address = stepOf(&a)
		if a.Decision == profiles.Deny {
			final = &a
		}
	}
	if p.Network != profiles.NetworkProxy && len(p.Connect) > 0 && v.Dest != (profiles.Dest{}) {
		rv := policy.MatchConnect(p, v.Dest, uint16(port))
		r.Proxy = stepOf(&rv)
	}
	r.Decision, r.Rule, r.Match, r.Reason = string(final.Decision), final.Rule.String(), final.Match, final.Reason
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(r) // the exit code carries the decision
	} else {
		printConnect(stdout, &v, final, &r)
	}
	return decisionExit(final.Decision)
}

// printConnect mirrors printShort: the verdict, its rule and reason, then
// the decision.
func printConnect(w io.Writer, v, final *policy.ConnectVerdict, r *connectReport) {
	fmt.Fprintf(w, "%-6s %s\n       [%s] %s\n", strings.ToUpper(string(v.Decision)), r.Connect, v.Rule, v.Reason)
	if a := r.Address; a != nil {
		fmt.Fprintf(w, "       address: %s [%s] %s\n", strings.ToUpper(a.Decision), a.Rule, a.Reason)
	}
	if x := r.Proxy; x != nil {
		fmt.Fprintf(w, "       with network.mode = \"proxy\": %s [%s] %s\n", strings.ToUpper(x.Decision), x.Rule, x.Reason)
	}
	fmt.Fprintf(w, "=> %s", strings.ToUpper(string(final.Decision)))
	if final.Decision != profiles.Allow {
		fmt.Fprintf(w, ": %s: %s (%s)", r.Connect, final.Reason, final.Rule)
	}
	fmt.Fprintln(w)
	if v.Dest.Name != "" && final.Decision != profiles.Deny {
		fmt.Fprintln(w, "(the address the name resolves to is checked when connecting: loopback, private, link-local, CGNAT and metadata addresses are refused unless a rule names them or private_ok lists them)")
	}
}
