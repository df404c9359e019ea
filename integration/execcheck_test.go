package integration

import (
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/execgate/execgate/audit"
)

// checkoutProfile is full mode with one deny rule: the runtime exec check
// must stop `git checkout` however the script reaches it.
const checkoutProfile = `uid = 65534
security = "full"
workdirs = ["WORK"]

[[rule]]
match = "git checkout **"
action = "deny"
reason = "no checkouts"

[limits]
timeout = "60s"
`

// bypasses are the ways of reaching `git checkout -b x` that static
// analysis cannot follow (interpreters, build tools, forwarders).
var bypasses = []struct{ name, script string }{
	{"find -exec", `find . -maxdepth 0 -exec git checkout -b x \;`},
	{"xargs", `echo x | xargs git checkout -b`},
	{"python os.system", `python3 -c 'import os; os.system("git checkout -b x")'`},
	{"perl system", `perl -e 'system("git", "checkout", "-b", "x")'`},
	{"node execSync", `node -e 'require("child_process").execSync("git checkout -b x")'`},
	{"sh -c of printf", `sh -c "$(printf 'git checkout -b x')"`},
	{"variable program", `G=git; $G checkout -b x`},
	{"npm script", `npm run --silent co`},
	{"make recipe", `make -s co`},
	{"symlink", `ln -s /usr/bin/git ./g && ./g checkout -b x`},
	{"git alias", `git -c alias.co=checkout co -b x`},
	{"awk system", `awk 'BEGIN{system("git checkout -b x")}'`},
	{"renamed copy", `cp /usr/bin/git ./mygit && ./mygit checkout -b x`},
	{"copy in private tmp", `cp /usr/bin/git /tmp/g && /tmp/g -C "$PWD" checkout -b x`},
	// A same-size junk file is checked (and its identity cached), then
	// overwritten in place with git's bytes and its mtime put back.
	{"copy overwritten after a check", `head -c $(stat -c %s /usr/bin/git) /dev/zero > junk && chmod +x junk && { ./junk 2>/dev/null; m=$(stat -c %Y junk); cat /usr/bin/git > junk; touch -d @$m junk; ./junk checkout -b x; }`},
}

// gitRepo makes the workdir a repository the agent owns, with an npm
// script and a Makefile recipe that check out a branch.
func gitRepo(t *testing.T, d *daemon) func(...string) string {
	t.Helper()
	git := func(args ...string) string {
		out, _ := exec.Command("git", append([]string{"-c", "safe.directory=*", "-C", d.work}, args...)...).CombinedOutput()
		return strings.TrimSpace(string(out))
	}
	os.WriteFile(filepath.Join(d.work, "package.json"), []byte(`{"name":"t","scripts":{"co":"git checkout -b x"}}`), 0o644)
	os.WriteFile(filepath.Join(d.work, "Makefile"), []byte("co:\n\tgit checkout -b x\n"), 0o644)
	git("init", "-q", "-b", "main")
	git("add", "-A")
	git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "init")
	exec.Command("chown", "-R", strconv.Itoa(agentUID), d.work).Run()
	return git
}

// TestRuntimeExecCheck runs each bypass hidden from static analysis (the
// script arrives base64-encoded through eval), between two allowed steps:
// the checkout never happens, the allowed steps do, and the journal has
// the denied exec with its parent chain.
func TestRuntimeExecCheck(t *testing.T) {
	d := startDaemon(t, profile{"bot", checkoutProfile})
	git := gitRepo(t, d)
	for i, bp := range bypasses {
		t.Run(bp.name, func(t *testing.T) {
			before, after := fmt.Sprintf("before-%d", i), fmt.Sprintf("after-%d", i)
			hidden := base64.StdEncoding.EncodeToString([]byte(bp.script))
			script := fmt.Sprintf(`echo ok > %s; eval "$(echo %s | base64 -d)"; echo ok > %s`, before, hidden, after)
			r := d.egsh(agentUID, nil, "-c", script)
			if b := git("branch", "--list", "x"); b != "" {
				t.Fatalf("branch x exists after %q (exit %d, %s)", bp.script, r.code, r.stderr)
			}
			if cur := git("rev-parse", "--abbrev-ref", "HEAD"); cur != "main" {
				t.Fatalf("HEAD moved to %q", cur)
			}
			for _, f := range []string{before, after} {
				if _, err := os.Stat(filepath.Join(d.work, f)); err != nil {
					t.Errorf("the allowed step writing %s did not run: %v (stderr %s)", f, err, r.stderr)
				}
			}
			if !strings.Contains(string(r.stderr), "execgate: denied: ") || !strings.Contains(string(r.stderr), "no checkouts (bot.toml:6)") {
				t.Errorf("stderr lacks the denial: %q", r.stderr)
			}
			recs := find(d.records(), audit.FieldEvent, "exec", audit.FieldDecision, "deny")
			var mine []*audit.Record
			for _, rec := range recs {
				if strings.Contains(rec.Fields[audit.FieldArgv], "checkout") || strings.Contains(rec.Fields[audit.FieldArgv], `"co"`) {
					mine = append(mine, rec)
				}
			}
			if len(mine) == 0 {
				t.Fatalf("no denied exec record for %q", bp.script)
			}
			last := mine[len(mine)-1]
			if last.Fields[audit.FieldRule] != "bot.toml:6" || last.Fields[audit.FieldPid] == "" || last.Fields[audit.FieldParents] == "" || (last.Fields[audit.FieldProgram] != "/usr/bin/git" && !strings.Contains(bp.script, " /usr/bin/git ")) ||
				strings.Contains(last.Fields[audit.FieldParents], "execgated") {
				t.Errorf("exec record: %v", last.Fields)
			}
		})
	}
}

// TestBypassesAsWritten sends each bypass as it is: whichever layer stops
// it, the branch never exists and the denial is journaled.
func TestBypassesAsWritten(t *testing.T) {
	d := startDaemon(t, profile{"bot", checkoutProfile})
	git := gitRepo(t, d)
	for _, bp := range bypasses {
		r := d.egsh(agentUID, nil, "-c", bp.script)
		if b := git("branch", "--list", "x"); b != "" {
			t.Fatalf("%s: branch x exists (exit %d, %s)", bp.name, r.code, r.stderr)
		}
		if !strings.Contains(string(r.stderr), "no checkouts (bot.toml:6)") {
			t.Errorf("%s: no denial on stderr: %q", bp.name, r.stderr)
		}
	}
	static := len(find(d.records(), audit.FieldEvent, "decision", audit.FieldDecision, "deny"))
	runtime := len(find(d.records(), audit.FieldEvent, "exec", audit.FieldDecision, "deny"))
	if static+runtime < len(bypasses) {
		t.Errorf("%d static and %d runtime denials for %d bypasses", static, runtime, len(bypasses))
	}
	t.Logf("stopped statically: %d, at exec time: %d", static, runtime)
}
