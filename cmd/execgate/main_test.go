package main

import (
	"os"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"execgate": func() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) },
	})
}

// The CLI is tested as scripts in testdata/script/*.txtar, run against the
// example profiles.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Setup: func(e *testscript.Env) error {
			wd, err := os.Getwd()
			if err != nil {
				return err
			}
			e.Setenv("EXAMPLES", wd+"/../../examples")
			return nil
		},
	})
}
