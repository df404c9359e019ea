package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/execgate/execgate/profiles"
)

func runLint(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("lint", flag.ContinueOnError)
	fs.SetOutput(stderr)
	config := fs.String("config", profiles.DefaultConfigFile, "daemon config whose [defaults] profiles inherit")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	explicit := false
	fs.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "config" })
	bad := 0
	report := func(err error) {
		var es profiles.Errors
		var e *profiles.Error
		switch {
		case errors.As(err, &es):
			for _, e := range es {
				fmt.Fprintln(stdout, e.Error())
			}
			bad += len(es)
		case errors.As(err, &e) && errors.Is(err, profiles.ErrUnknownAccount):
			fmt.Fprintf(stdout, "%s: warning: %s\n", locPrefix(e.Loc), e.Msg)
		case errors.As(err, &e):
			fmt.Fprintln(stdout, e.Error())
			bad++
		default:
			fmt.Fprintln(stdout, err.Error())
			bad++
		}
	}
	cfg, err := loadDefaults(*config, explicit)
	if err != nil {
		report(err)
		cfg = profiles.DefaultConfig()
	}
	targets := fs.Args()
	if len(targets) == 0 {
		targets = []string{cfg.AgentsDir}
	}
	files, err := expand(targets)
	if err != nil {
		fmt.Fprintf(stderr, "execgate: %v\n", err)
		return exitUsage
	}
	n := 0
	for _, f := range files {
		if filepath.Base(f) == "execgate.toml" {
			if _, err := profiles.LoadConfig(f); err != nil {
				report(err)
			}
			n++
			continue
		}
		p, err := profiles.LoadFile(f, cfg.Defaults)
		if err != nil {
			report(err)
		}
		if p != nil {
			for _, w := range profileWarnings(p) {
				fmt.Fprintf(stdout, "%s: warning: %s\n", locPrefix(w.Loc), w.Msg)
			}
		}
		n++
	}
	if bad > 0 {
		fmt.Fprintf(stderr, "execgate: %d error(s) in %d file(s)\n", bad, n)
		return exitDeny
	}
	fmt.Fprintf(stderr, "execgate: %d file(s) OK\n", n)
	return exitOK
}

// profileWarnings finds settings of a valid profile that load but do
// nothing in its network or changes mode: an admin who wrote them may
// believe they hold. Only the profile's own settings are warned about:
// [defaults] may set [[defaults.connect]], the egress limits and the
// change caps for every agent. changes.protect is never warned about: in
// direct mode it still guards the protected paths that exist (read-only).
func profileWarnings(p *profiles.Profile) []*profiles.Error {
	var ws []*profiles.Error
	mode := fmt.Sprintf("network.mode is %q", p.Network)
	if l := p.LocOf(profiles.KeyNetworkMode); l.Line > 0 {
		mode += " (" + l.String() + ")"
	} else {
		mode += " (the default)"
	}
	if p.Network == profiles.NetworkNone {
		own := 0
		var first profiles.Loc
		for _, r := range p.Connect {
			if r.Loc.File == p.File {
				if own == 0 {
					first = r.Loc
				}
				own++
			}
		}
		if own > 0 {
			ws = append(ws, &profiles.Error{Loc: first, Msg: fmt.Sprintf(
				"[[connect]]: these rules (%d) decide nothing until network.mode = \"proxy\": %s, so every connection is refused", own, mode)})
		}
	}
	if p.Network != profiles.NetworkProxy {
		for _, key := range []string{profiles.KeyConnections, profiles.KeyEgressBytes} {
			if l := p.LocOf(key); l.File == p.File && l.Line > 0 {
				ws = append(ws, &profiles.Error{Loc: l, Msg: fmt.Sprintf(
					"%s applies only with network.mode = \"proxy\": %s", key, mode)})
			}
		}
	}
	if p.Changes.Mode == profiles.ChangesDirect {
		cm := fmt.Sprintf("changes.mode is %q", p.Changes.Mode)
		if l := p.LocOf(profiles.KeyChangesMode); l.Line > 0 {
			cm += " (" + l.String() + ")"
		} else {
			cm += " (the default)"
		}
		for _, key := range []string{profiles.KeyChangesMaxFiles, profiles.KeyChangesMaxDeleted, profiles.KeyChangesMaxBytes, profiles.KeyChangesProtect} {
			if l := p.LocOf(key); l.File == p.File && l.Line > 0 {
				ws = append(ws, &profiles.Error{Loc: l, Msg: fmt.Sprintf(
					"%s: caps and protect apply only in review and dry-run: %s, so writes land as they happen", key, cm)})
			}
		}
	}
	return ws
}

func locPrefix(l profiles.Loc) string {
	if l.Line > 0 {
		return fmt.Sprintf("%s:%d", l.File, l.Line)
	}
	return l.File
}

// expand turns directories into the *.toml files they hold.
func expand(targets []string) ([]string, error) {
	var out []string
	for _, t := range targets {
		st, err := os.Stat(t)
		if err != nil {
			return nil, err
		}
		if !st.IsDir() {
			out = append(out, t)
			continue
		}
		ents, err := os.ReadDir(t)
		if err != nil {
			return nil, err
		}
		var names []string
		for _, e := range ents {
			if !e.IsDir() && strings.HasSuffix(e.Name(), ".toml") && !strings.HasPrefix(e.Name(), ".") {
				names = append(names, filepath.Join(t, e.Name()))
			}
		}
		sort.Strings(names)
		out = append(out, names...)
	}
	return out, nil
}
