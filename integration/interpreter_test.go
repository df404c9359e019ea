package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const interpProfile = `uid = 65534
security = "allowlist"
ask = "off"
workdirs = ["WORK"]

[[rule]]
match = "npm test **"
action = "allow"

[[rule]]
match = "run.sh **"
action = "allow"

[limits]
timeout = "60s"
`

// The interpreter a "#!" line names runs as the continuation of the
// allowed script, through the exec confirmation: npm is "#!/usr/bin/env
// node", so the kernel runs env, which then execs node. Anything the
// script's interpreter was not asked to run stays denied.
func TestScriptInterpreters(t *testing.T) {
	d := startDaemon(t, profile{"bot", interpProfile})
	os.WriteFile(filepath.Join(d.work, "package.json"), []byte(`{"name":"t","scripts":{"test":"echo tested-by-npm"}}`), 0o644)
	os.WriteFile(filepath.Join(d.work, "run.sh"), []byte("#!/bin/sh -e\necho ran-by-sh \"$@\"\n"), 0o755)
	cases := []struct {
		name, script, want string
		code               int
	}{
		{"npm test", "npm test", "tested-by-npm", 0},
		{"script with an option on its #! line", "./run.sh a b", "ran-by-sh a b", 0},
		{"the interpreter on its own", "node -e 'console.log(1)'", "", 126},
		{"npm run of another script", "npm run build", "", 126},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := d.egsh(agentUID, nil, "-c", c.script)
			if r.code != c.code || !strings.Contains(string(r.stdout), c.want) {
				t.Errorf("%s: exit %d (want %d), stdout %q, stderr %q", c.script, r.code, c.code, r.stdout, r.stderr)
			}
		})
	}
}
