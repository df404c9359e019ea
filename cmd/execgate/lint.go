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
		if _, err := profiles.LoadFile(f, cfg.Defaults); err != nil {
			report(err)
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
