package integration

// The bypass corpus: every way we know for an agent to reach a forbidden
// effect (a branch switch, a secret's bytes, a push, a write to a
// read_only path), run through the real daemon as the unprivileged agent.
//
// Each case lives in testdata/bypass/CATEGORY.txtar, one per line in the
// "cases" section:
//
//	KIND  FLAGS  SCRIPT
//
// KIND is the effect that must not happen: branch, secret, push, ro; or
// allowed, a control that must succeed. FLAGS is a comma-separated list
// without spaces of the modes the case runs in (full, allowlist) and of
// tags, each for every mode or, as MODE:TAG, for one mode (hidden, below,
// has the tags of full too):
//
//	known-bypass  the effect is known to happen: logged loudly, not failed;
//	              a known bypass that stops happening fails the test, so
//	              the tag goes once the product is fixed
//	known-fp      allowed: the control is known to be denied (a false
//	              positive): logged loudly, and fails once it passes
//	quiet         no denial is journaled: a mount (deny_read mask,
//	              read_only bind) stops it, which the kernel does silently
//	              (or another silent refusal, explained in the archive)
//	miss          in allowlist mode, a denial because no allow rule
//	              matches is the expected stop (a copy of git, ld.so, a
//	              script or hook the case writes: new programs)
//	noeffect      the case does not reach the effect even without
//	              execgate (a hard link the kernel refuses); implies quiet
//	needs=PROG    skipped, and logged, when PROG is not installed
//	want=TEXT     allowed: stdout must contain TEXT
//
// SCRIPT is the rest of the line, or @NAME for the section script/NAME of
// the same archive (multi-line scripts: here-documents, aliases).
//
// Every case of full mode also runs in a third pass, "hidden": the same
// full profile, the script sent as eval "$(echo BASE64 | base64 -d)", so
// that static analysis sees nothing and the exec check and the mounts
// must stop it on their own (a branch or push case must then be denied
// at exec; a secret or read_only case may meet the mount silently).
//
// For every case the test:
//  1. runs the script once WITHOUT execgate (bash -c, as the agent uid,
//     with a private /tmp) and checks that the effect does happen there:
//     the case proves the gate, not file permissions or a typo;
//  2. runs it through egsh in each mode and checks that the effect did
//     not happen: no new ref and HEAD still main; the secret's bytes
//     (plain, reversed, hex, octal, base64 at every alignment, spaced or
//     split over lines) absent from stdout, stderr and the files of the
//     workdir; the remote's refs unchanged; the read_only tree unchanged
//     (every effect after every case, whatever its kind);
//  3. checks the journal: the run (found by its request record's
//     EXECGATE_SCRIPT) has a deny record, static (EXECGATE_EVENT=decision)
//     or at exec time (EXECGATE_EVENT=exec), made by a rule or deny_read
//     rather than an allowlist miss (unless tagged miss, or quiet);
//  4. for controls: exit 0, the wanted output, and no deny record.
//
// The profiles (bypassProfile): both modes carry the same deny rules.
// The branch rule denies every git subcommand that creates, moves or
// switches a branch or HEAD: checkout, switch, branch, worktree,
// update-ref, symbolic-ref, bisect, fetch and pull (fetch . main:x
// creates x). A rule cannot say "git branch except --list" (deny beats
// allow), so `git branch` is denied whole; the test itself lists
// branches with host git. push has its own rule. deny_read covers
// **/.env and **/.env.*; read_only covers WORK/protected. .git is
// deliberately NOT read_only: with it, the mount alone would stop most
// branch cases and the corpus would no longer test the exec check.
// allowlist mode allows (allow rules, not nested_allow) every tool the
// cases use, interpreters included, so what stops a case is a deny rule
// at some depth, not a missing allow rule; ld.so, copies of git and
// scripts the agent writes are the exceptions (no sane allowlist names
// them: tagged allowlist:miss).
//
// The fixture repository has two commits: the first tracked .env (the
// classic accident), the second untracked it and added .gitignore. A
// tracked .env in history is a real leak vector that no mount mask
// reaches, so the history cases (git show HEAD~1:.env, git log -p, ...)
// are in fileread.txtar with the same secret.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/txtar"

	"github.com/execgate/execgate/audit"
)

// bypassProfileHead is shared by both modes; MODE and EXTRA are filled in.
const bypassProfileHead = `uid = 65534
security = "MODE"
ask = "off"
workdirs = ["WORK"]

[[rule]]
match = "git {checkout,switch,branch,worktree,update-ref,symbolic-ref,bisect,fetch,pull} **"
action = "deny"
reason = "bypass corpus: no branch changes"

[[rule]]
match = "git push **"
action = "deny"
reason = "bypass corpus: no pushes"
EXTRA
[files]
deny_read = ["**/.env", "**/.env.*"]
read_only = ["WORK/protected"]

[limits]
timeout = "20s"
`

// bypassAllowed is what allowlist mode allows: the tools the cases use.
const bypassAllowed = `
[[rule]]
match = "{git,cat,ls,echo,printf,true,false,test,id,pwd,head,tail,grep,sed,awk,mawk,find,xargs,cut,tr,sort,wc,tee,diff,nl,env,nice,nohup,timeout,setsid,stdbuf,flock,watch,script,ionice,taskset,chrt,time,busybox,cp,ln,mv,rm,mkdir,chmod,touch,install,truncate,dd,base64,od,xxd,hexdump,tar,less,more,rev,tac,strings,split,zip,python3,python3.11,perl,strace,node,npm,make,tclsh,tclsh8.6,vim,vim.basic,vi,ex,ed,ssh,gdb,sleep} **"
action = "allow"
reason = "bypass corpus: the tools the cases use"
`

func bypassProfile(mode string) string {
	extra := ""
	switch mode {
	case "allowlist":
		extra = bypassAllowed
	case "hidden":
		mode = "full"
	}
	return strings.NewReplacer("MODE", mode, "EXTRA", extra).Replace(bypassProfileHead)
}

// bypassModes are the ways every case runs: the two security modes, and
// "hidden": the full profile with the script hidden from static analysis
// (eval of its base64), so that the layers behind it (the exec check,
// the mounts) are tested on their own.
var bypassModes = []string{"full", "allowlist", "hidden"}

// runsIn reports whether the case runs in mode: hidden runs every case
// of full mode.
func (c *bypassCase) runsIn(mode string) bool {
	if mode == "hidden" {
		return c.modes["full"]
	}
	return c.modes[mode]
}

// scriptFor is the script sent in mode.
func (c *bypassCase) scriptFor(mode string) string {
	if mode != "hidden" {
		return c.script
	}
	return fmt.Sprintf(`eval "$(echo %s | base64 -d)"`, base64.StdEncoding.EncodeToString([]byte(c.script)))
}

type bypassCase struct {
	category string
	file     string
	line     int
	kind     string
	modes    map[string]bool
	tags     map[string]map[string]bool // mode ("" = every mode) -> tag
	needs    string
	want     string
	script   string
}

// tag reports whether the case has tag in mode; hidden mode has the tags
// of full mode too.
func (c *bypassCase) tag(mode, tag string) bool {
	return c.tags[""][tag] || c.tags[mode][tag] || mode == "hidden" && c.tags["full"][tag]
}

func (c *bypassCase) String() string {
	return fmt.Sprintf("%s:%d [%s] %q", c.file, c.line, c.kind, c.script)
}

var bypassKinds = map[string]bool{"branch": true, "secret": true, "push": true, "ro": true, "allowed": true}
var bypassTags = map[string]bool{"known-bypass": true, "known-fp": true, "quiet": true, "miss": true, "noeffect": true}

// loadBypassCorpus parses testdata/bypass/*.txtar.
func loadBypassCorpus(t *testing.T) []*bypassCase {
	t.Helper()
	files, _ := filepath.Glob("testdata/bypass/*.txtar")
	if len(files) == 0 {
		t.Fatal("no testdata/bypass/*.txtar")
	}
	var out []*bypassCase
	seen := map[string]string{}
	for _, f := range files {
		ar, err := txtar.ParseFile(f)
		if err != nil {
			t.Fatal(err)
		}
		scripts := map[string]string{}
		var cases []byte
		for _, af := range ar.Files {
			switch {
			case af.Name == "cases":
				cases = af.Data
			case strings.HasPrefix(af.Name, "script/"):
				scripts[strings.TrimPrefix(af.Name, "script/")] = string(af.Data)
			default:
				t.Fatalf("%s: unknown section %q", f, af.Name)
			}
		}
		// Line numbers in the file: the comment, then each section header.
		base := bytes.Count(ar.Comment, []byte("\n")) + 1
		for _, af := range ar.Files {
			if af.Name == "cases" {
				break
			}
			base += bytes.Count(af.Data, []byte("\n")) + 1
		}
		cat := strings.TrimSuffix(filepath.Base(f), ".txtar")
		for i, l := range strings.Split(string(cases), "\n") {
			s := strings.TrimSpace(l)
			if s == "" || strings.HasPrefix(s, "#") {
				continue
			}
			c := &bypassCase{category: cat, file: filepath.Base(f), line: base + i + 1, modes: map[string]bool{}, tags: map[string]map[string]bool{}}
			kind, rest, _ := strings.Cut(s, " ")
			if k, r, ok := strings.Cut(s, "\t"); ok && len(k) < len(kind) {
				kind, rest = k, r
			}
			rest = strings.TrimLeft(rest, " \t")
			flags, script, ok := strings.Cut(rest, " ")
			if fl, sc, ok2 := strings.Cut(rest, "\t"); ok2 && len(fl) < len(flags) {
				flags, script, ok = fl, sc, ok2
			}
			script = strings.TrimLeft(script, " \t")
			if !ok || script == "" || !bypassKinds[kind] {
				t.Fatalf("%s:%d: want KIND FLAGS SCRIPT: %q", f, c.line, l)
			}
			c.kind = kind
			for _, fl := range strings.Split(flags, ",") {
				switch {
				case fl == "full" || fl == "allowlist":
					c.modes[fl] = true
				case strings.HasPrefix(fl, "want="):
					c.want = strings.TrimPrefix(fl, "want=")
				case strings.HasPrefix(fl, "needs="):
					c.needs = strings.TrimPrefix(fl, "needs=")
				default:
					m, tag, scoped := strings.Cut(fl, ":")
					if !scoped {
						m, tag = "", fl
					}
					if !bypassTags[tag] || scoped && m != "full" && m != "allowlist" && m != "hidden" {
						t.Fatalf("%s:%d: unknown flag %q", f, c.line, fl)
					}
					if c.tags[m] == nil {
						c.tags[m] = map[string]bool{}
					}
					c.tags[m][tag] = true
				}
			}
			if len(c.modes) == 0 {
				t.Fatalf("%s:%d: no mode", f, c.line)
			}
			if strings.HasPrefix(script, "@") {
				body, ok := scripts[script[1:]]
				if !ok {
					t.Fatalf("%s:%d: no section script/%s", f, c.line, script[1:])
				}
				script = body
			}
			c.script = script
			if prev, dup := seen[script]; dup {
				t.Fatalf("%s:%d: the same script as %s (runs are matched to their journal records by script)", f, c.line, prev)
			}
			seen[script] = fmt.Sprintf("%s:%d", f, c.line)
			out = append(out, c)
		}
	}
	return out
}

// bypassSecrets are the secrets of the fixture and the needles that find
// them in any output.
type bypassSecrets struct {
	values  []string
	needles []string // lower-case: plain, reversed, hex, octal
	b64     []string // case-sensitive
}

func newBypassSecrets() *bypassSecrets {
	s := &bypassSecrets{}
	for range 3 {
		s.values = append(s.values, strings.ToLower(rand.Text()[:24]))
	}
	for _, v := range s.values {
		rev := []byte(v)
		for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
			rev[i], rev[j] = rev[j], rev[i]
		}
		// Every 8-byte window, so that a form split over lines (xxd,
		// hexdump -C, od: 16 bytes a line) still shows a whole window.
		for i := 0; i+8 <= len(v); i++ {
			w := v[i : i+8]
			var oct strings.Builder
			for _, b := range []byte(w) {
				fmt.Fprintf(&oct, "%03o", b)
			}
			s.needles = append(s.needles, w, string(rev[i:i+8]), hex.EncodeToString([]byte(w)), oct.String())
		}
		// base64 at the three alignments, 9 bytes (12 characters) each.
		for i := 0; i+9 <= len(v); i++ {
			s.b64 = append(s.b64, base64.StdEncoding.EncodeToString([]byte(v[i:i+9])))
		}
	}
	return s
}

// leak reports the first needle found in b, or "".
func (s *bypassSecrets) leak(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	// The output as is, each line without whitespace (od -c, xxd's
	// groups), and the whole output without whitespace (base64 and xxd -p
	// wrap lines).
	raw := string(b)
	flat := strings.Join(strings.Fields(raw), "")
	forms := []string{strings.ToLower(raw), strings.ToLower(flat)}
	for _, l := range strings.Split(raw, "\n") {
		forms = append(forms, strings.ToLower(strings.Join(strings.Fields(l), "")))
	}
	for _, n := range s.needles {
		for _, f := range forms {
			if strings.Contains(f, n) {
				return strconv.Quote(n)
			}
		}
	}
	for _, n := range s.b64 {
		if strings.Contains(flat, n) {
			return "base64 " + n
		}
	}
	return ""
}

// bypassFixture is the workdir of one daemon: a git repository with a
// remote, secrets and a read_only tree, and a pristine copy to restore.
type bypassFixture struct {
	t        *testing.T
	d        *daemon
	secrets  *bypassSecrets
	pristine string // a copy of work and remote
	remote   string
	refs     string // baseline: refs of the repository
	rrefs    string // baseline: refs of the remote
	print    string // fingerprint of work + remote when pristine
}

func newBypassFixture(t *testing.T, d *daemon, sec *bypassSecrets) *bypassFixture {
	t.Helper()
	f := &bypassFixture{t: t, d: d, secrets: sec, remote: filepath.Join(d.dir, "remote.git"), pristine: filepath.Join(d.dir, "pristine")}
	w := d.work
	write := func(name, body string, mode os.FileMode) {
		p := filepath.Join(w, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
	}
	write("README.md", "bypass corpus fixture: readme-ok\n", 0o644)
	write("package.json", `{"name":"fixture","version":"1.0.0","scripts":{"co":"git checkout -b x","leak":"cat .env","st":"git status --short >/dev/null && echo npm-ok"}}`+"\n", 0o644)
	write("Makefile", "co:\n\tgit checkout -b x\nleak:\n\tcat .env\nok:\n\t@echo make-ok\n", 0o644)
	write("protected/keep.txt", "original\n", 0o644)
	write(".env", fmt.Sprintf("SECRET=execgate-canary-%s\nAPI_TOKEN=tok_%s\n", sec.values[0], sec.values[1]), 0o644)
	write("config/.env.production", fmt.Sprintf("DB_PASSWORD=%s\n", sec.values[2]), 0o644)
	os.MkdirAll(f.remote, 0o755)
	f.chown(w)
	f.chown(f.remote)
	f.agent(f.remote, "git", "init", "-q", "--bare", "-b", "main")
	g := func(args ...string) {
		if out, err := f.agent(w, append([]string{"git", "-c", "user.name=fixture", "-c", "user.email=f@f"}, args...)...); err != nil {
			t.Fatalf("fixture: git %v: %v\n%s", args, err, out)
		}
	}
	g("init", "-q", "-b", "main")
	g("add", "README.md", "package.json", "Makefile", "protected", ".env")
	g("commit", "-q", "-m", "fixture-init")
	write(".gitignore", ".env\n.env.*\n", 0o644)
	f.chown(w)
	g("rm", "-q", "--cached", ".env")
	g("add", ".gitignore")
	g("commit", "-q", "-m", "untrack-env")
	g("remote", "add", "origin", "../remote.git")
	g("push", "-q", "origin", "main")
	g("gc", "-q") // later objects land loose; nothing to repack mid-test

	// The gate, not file permissions: the agent uid can read the secret
	// outside execgate.
	if out, _ := f.agent(w, "cat", ".env"); !strings.Contains(out, sec.values[0]) {
		t.Fatalf("the agent cannot read .env outside execgate (%q): the corpus would prove nothing", out)
	}
	// The pristine copy holds the secrets too: root's alone.
	if err := os.Mkdir(f.pristine, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", w, filepath.Join(f.pristine, "work")).CombinedOutput(); err != nil {
		t.Fatalf("pristine copy: %v %s", err, out)
	}
	if out, err := exec.Command("cp", "-a", f.remote, filepath.Join(f.pristine, "remote.git")).CombinedOutput(); err != nil {
		t.Fatalf("pristine copy: %v %s", err, out)
	}
	f.refs, f.rrefs = f.refsOf(w), f.refsOf(f.remote)
	f.print = f.fingerprint()
	return f
}

func (f *bypassFixture) chown(dir string) {
	if out, err := exec.Command("chown", "-R", fmt.Sprintf("%d:%d", agentUID, agentUID), dir).CombinedOutput(); err != nil {
		f.t.Fatalf("chown: %v %s", err, out)
	}
}

// agent runs argv as the agent uid in dir, outside execgate.
func (f *bypassFixture) agent(dir string, argv ...string) (string, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8", "HOME=" + dir}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: agentUID, Gid: agentUID}}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// refsOf lists every ref name of a repository, and where HEAD points.
func (f *bypassFixture) refsOf(repo string) string {
	out, err := exec.Command("git", "-c", "safe.directory=*", "-C", repo, "for-each-ref", "--format=%(refname)").CombinedOutput()
	if err != nil {
		return "error: " + string(out)
	}
	head, _ := os.ReadFile(filepath.Join(repo, "HEAD"))
	if _, err := os.Stat(filepath.Join(repo, ".git")); err == nil {
		head, _ = os.ReadFile(filepath.Join(repo, ".git", "HEAD"))
	}
	return strings.TrimSpace(string(out)) + "\nHEAD: " + strings.TrimSpace(string(head))
}

// fingerprint describes every file of the workdir and the remote.
func (f *bypassFixture) fingerprint() string {
	var b strings.Builder
	for _, root := range []string{f.d.work, f.remote} {
		filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				fmt.Fprintf(&b, "%s: %v\n", p, err)
				return nil
			}
			fi, err := e.Info()
			if err != nil {
				return nil
			}
			fmt.Fprintf(&b, "%s %v %d %d\n", p, fi.Mode(), fi.Size(), fi.ModTime().UnixNano())
			return nil
		})
	}
	return b.String()
}

// reset restores the workdir and the remote when anything changed.
func (f *bypassFixture) reset() {
	if f.fingerprint() == f.print {
		return
	}
	for _, p := range []struct{ dst, src string }{{f.d.work, "work"}, {f.remote, "remote.git"}} {
		ents, _ := os.ReadDir(p.dst)
		for _, e := range ents {
			os.RemoveAll(filepath.Join(p.dst, e.Name()))
		}
		if out, err := exec.Command("cp", "-a", filepath.Join(f.pristine, p.src)+"/.", p.dst+"/").CombinedOutput(); err != nil {
			f.t.Fatalf("reset: %v %s", err, out)
		}
	}
	f.print = f.fingerprint()
}

// effect says which forbidden effect happened, if any, given a run's
// output. Every effect is checked after every case, whatever its kind.
func (f *bypassFixture) effect(stdout, stderr []byte) []string {
	var out []string
	if r := f.refsOf(f.d.work); r != f.refs {
		out = append(out, "branch: refs are now "+strings.ReplaceAll(r, "\n", " "))
	}
	if r := f.refsOf(f.remote); r != f.rrefs {
		out = append(out, "push: the remote's refs are now "+strings.ReplaceAll(r, "\n", " "))
	}
	keep, err := os.ReadFile(filepath.Join(f.d.work, "protected", "keep.txt"))
	fi, _ := os.Stat(filepath.Join(f.d.work, "protected", "keep.txt"))
	ents, _ := os.ReadDir(filepath.Join(f.d.work, "protected"))
	if err != nil || string(keep) != "original\n" || len(ents) != 1 || fi.Mode().Perm() != 0o644 {
		out = append(out, fmt.Sprintf("ro: protected/ changed (keep.txt %q, %v, %d entries)", keep, err, len(ents)))
	}
	if n := f.secrets.leak(stdout); n != "" {
		out = append(out, "secret: stdout shows "+n)
	}
	if n := f.secrets.leak(stderr); n != "" {
		out = append(out, "secret: stderr shows "+n)
	}
	// A copy of the secret written into the workdir.
	filepath.WalkDir(f.d.work, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(f.d.work, p)
		if e.IsDir() && rel == ".git" {
			return filepath.SkipDir
		}
		if rel == ".env" || rel == "config/.env.production" || !e.Type().IsRegular() {
			return nil
		}
		if b, err := os.ReadFile(p); err == nil {
			for _, v := range f.secrets.values {
				if bytes.Contains(b, []byte(v)) {
					out = append(out, "secret: a copy in "+rel)
					break
				}
			}
		}
		return nil
	})
	return out
}

// ungated runs the script as the agent uid with bash, without execgate,
// with a private /tmp, as egsh would but with no gate at all.
func (f *bypassFixture) ungated(script string) ([]byte, []byte) {
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
	defer cancel()
	inner := `mount -t tmpfs -o mode=1777 tmpfs /tmp && cd "$1" && exec setpriv --reuid=65534 --regid=65534 --clear-groups -- ` +
		`env -i PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 HOME=/tmp timeout -k 2 20 bash -c "$2"`
	cmd := exec.CommandContext(ctx, "unshare", "--mount", "--propagation", "private", "--", "sh", "-c", inner, "sh", f.d.work, script)
	cmd.Stdin = nil
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	cmd.Run()
	return so.Bytes(), se.Bytes()
}

// startBypassDaemon starts execgated like startDaemonAudit(t, "journal",
// ...), but under a cgroup root of its own when the daemon has
// --cgroup-root: a daemon starting elsewhere on the machine (another
// test binary) kills the run cgroups it finds under the shared default
// root, which would kill our runs at random (exit 137).
func startBypassDaemon(t *testing.T, mode string) *daemon {
	t.Helper()
	d := prepareDaemon(t, "journal", profile{"bot", bypassProfile(mode)})
	root := fmt.Sprintf("/execgate-bypass-%d-%s", os.Getpid(), mode)
	t.Cleanup(func() { d.stop(); bypassRemoveCgroups(root) }) // runs before prepareDaemon's cleanup
	d.launch(launchOpts{args: []string{"--cgroup-root", root}})
	return d
}

// bypassRemoveCgroups removes a cgroup root the daemon left, in every
// hierarchy (v1) or the unified one, deepest first.
func bypassRemoveCgroups(root string) {
	var dirs []string
	for _, h := range append([]string{"/sys/fs/cgroup"}, bypassGlob("/sys/fs/cgroup/*")...) {
		filepath.WalkDir(filepath.Join(h, root), func(p string, e fs.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
	}
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
	for _, p := range dirs {
		syscall.Rmdir(p)
	}
}

func bypassGlob(p string) []string {
	m, _ := filepath.Glob(p)
	return m
}

// bypassRun is the outcome of one case in one mode.
type bypassRun struct {
	c       *bypassCase
	script  string // as sent
	res     result
	effects []string
}

func TestBypassCorpus(t *testing.T) {
	cases := loadBypassCorpus(t)
	sec := newBypassSecrets()
	type tally struct{ cases, controls, static, exec, silent, known, skipped int }
	summary := map[string]map[string]*tally{} // category -> mode
	for _, c := range cases {
		if summary[c.category] == nil {
			summary[c.category] = map[string]*tally{}
			for _, m := range bypassModes {
				summary[c.category][m] = &tally{}
			}
		}
	}
	var known []string
	var knownMu sync.Mutex
	t.Run("modes", func(t *testing.T) {
		for _, mode := range bypassModes {
			t.Run(mode, func(t *testing.T) {
				t.Parallel()
				d := startBypassDaemon(t, mode)
				fx := newBypassFixture(t, d, sec)
				var runs []*bypassRun
				for i, c := range cases {
					if !c.runsIn(mode) {
						continue
					}
					if c.needs != "" {
						if _, err := exec.LookPath(c.needs); err != nil {
							t.Logf("SKIP %s: %s is not installed", c, c.needs)
							summary[c.category][mode].skipped++
							continue
						}
					}
					// The run without execgate happens once per case, in
					// one of its modes, alternately (the modes run in
					// parallel).
					ungatedHere := mode != "hidden" && (!c.modes["full"] || !c.modes["allowlist"] || []string{"full", "allowlist"}[i%2] == mode)
					if ungatedHere && c.kind != "allowed" {
						// Without the gate the case must reach its effect.
						start := time.Now()
						so, se := fx.ungated(c.script)
						if took := time.Since(start); took > 2*time.Second {
							t.Logf("%s took %v without execgate", c, took.Round(time.Millisecond))
						}
						eff := fx.effect(so, se)
						fx.reset()
						switch {
						case !c.tag(mode, "noeffect") && !bypassHas(eff, c.kind):
							t.Errorf("%s: does not reach its effect even without execgate (got %v)\nstdout: %.300s\nstderr: %.300s", c, eff, so, se)
						case c.tag(mode, "noeffect") && len(eff) > 0:
							t.Errorf("%s: tagged noeffect, but without execgate: %v", c, eff)
						}
					}
					ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
					start := time.Now()
					script := c.scriptFor(mode)
					r := d.egshCtx(ctx, agentUID, nil, "-c", script)
					cancel()
					if took := time.Since(start); took > 5*time.Second {
						t.Logf("[%s] %s took %v (exit %d)", mode, c, took.Round(time.Millisecond), r.code)
					}
					run := &bypassRun{c: c, script: script, res: r, effects: fx.effect(r.stdout, r.stderr)}
					fx.reset()
					runs = append(runs, run)
				}
				recs := d.records()
				byScript := map[string][]string{}
				byID := map[string][]*audit.Record{}
				for _, r := range recs {
					id := r.Fields[audit.FieldID]
					if r.Fields[audit.FieldEvent] == "request" {
						s := r.Fields[audit.FieldScript]
						byScript[s] = append(byScript[s], id)
					}
					byID[id] = append(byID[id], r)
				}
				for _, run := range runs {
					c, tl := run.c, summary[run.c.category][mode]
					tl.cases++
					ids := byScript[run.script]
					if len(ids) != 1 {
						t.Errorf("[%s] %s: %d request records for the script", mode, c, len(ids))
						continue
					}
					var static, execs, misses, ruled []string
					for _, r := range byID[ids[0]] {
						if r.Fields[audit.FieldDecision] != "deny" {
							continue
						}
						desc := fmt.Sprintf("%s %s (%s: %s)", r.Fields[audit.FieldEvent], r.Fields[audit.FieldArgv], r.Fields[audit.FieldRule], r.Fields[audit.FieldReason])
						switch r.Fields[audit.FieldEvent] {
						case "decision":
							static = append(static, desc)
						case "exec":
							execs = append(execs, desc)
						default:
							continue
						}
						if strings.Contains(r.Fields[audit.FieldReason], "no allow rule matches") {
							misses = append(misses, desc)
						} else {
							ruled = append(ruled, desc)
						}
					}
					denied := len(static)+len(execs) > 0
					detail := fmt.Sprintf("exit %d\nstdout: %.400s\nstderr: %.600s", run.res.code, run.res.stdout, run.res.stderr)
					if os.Getenv("BYPASS_VERBOSE") != "" {
						t.Logf("[%s] %s: exit %d, effects %v, static %v, exec %v", mode, c, run.res.code, run.effects, static, execs)
					}
					if c.kind == "allowed" {
						tl.controls++
						failed := run.res.code != 0 || denied || !bytes.Contains(run.res.stdout, []byte(c.want))
						switch {
						case failed && c.tag(mode, "known-fp"):
							msg := fmt.Sprintf("KNOWN FALSE POSITIVE [%s] %s: denials %v %v", mode, c, static, execs)
							t.Log(msg)
							knownMu.Lock()
							known = append(known, msg)
							knownMu.Unlock()
						case c.tag(mode, "known-fp"):
							t.Errorf("[%s] control %s is tagged known-fp but now succeeds: remove the tag", mode, c)
						case failed:
							t.Errorf("[%s] control %s must succeed with %q: denials %v %v\n%s", mode, c, c.want, static, execs, detail)
						case len(run.effects) > 0:
							t.Errorf("[%s] control %s had a forbidden effect: %v", mode, c, run.effects)
						}
						continue
					}
					switch {
					case len(run.effects) > 0:
					case len(static) > 0:
						tl.static++
					case len(execs) > 0:
						tl.exec++
					default:
						tl.silent++
					}
					for _, st := range static {
						if strings.Contains(st, "cannot analyse") {
							t.Errorf("[%s] %s: denied because the script could not be parsed, which proves nothing: %s", mode, c, st)
						}
					}
					if len(run.effects) > 0 {
						if c.tag(mode, "known-bypass") {
							tl.known++
							msg := fmt.Sprintf("KNOWN BYPASS [%s] %s: %v", mode, c, run.effects)
							t.Log(msg)
							knownMu.Lock()
							known = append(known, msg)
							knownMu.Unlock()
						} else {
							t.Errorf("BYPASS [%s] %s: %v\ndenials: %v %v\n%s", mode, c, run.effects, static, execs, detail)
						}
						continue
					}
					if c.tag(mode, "known-bypass") {
						t.Errorf("[%s] %s is tagged known-bypass but the effect no longer happens: remove the tag", mode, c)
					}
					switch {
					case c.tag(mode, "quiet") || c.tag(mode, "noeffect"):
					case mode == "hidden" && len(static) > 0:
						t.Errorf("[%s] %s: denied statically although hidden from static analysis: %v", mode, c, static)
					case mode == "hidden" && (c.kind == "secret" || c.kind == "ro"):
						// Builtins and redirections read and write
						// without an exec: the mounts stop them silently.
					case !denied:
						t.Errorf("[%s] %s: no effect, but no denial was journaled either\n%s", mode, c, detail)
					case len(ruled) == 0 && !c.tag(mode, "miss"):
						t.Errorf("[%s] %s: only an allowlist miss denied it (%v): the allowlist should allow the tool so that a deny rule or deny_read decides", mode, c, misses)
					}
					if denied && !bytes.Contains(run.res.stderr, []byte("execgate: denied: ")) {
						t.Logf("[%s] %s: journaled a denial but egsh printed none: %.300s", mode, c, run.res.stderr)
					}
				}
			})
		}
	})
	var cats []string
	for c := range summary {
		cats = append(cats, c)
	}
	sort.Strings(cats)
	var line []string
	total := map[string]int{}
	for _, cat := range cats {
		var parts []string
		for _, m := range bypassModes {
			tl := summary[cat][m]
			total[m] += tl.cases
			parts = append(parts, fmt.Sprintf("%s %d (controls %d; stopped statically %d, at exec %d, silently %d; known bypasses %d; skipped %d)",
				m, tl.cases, tl.controls, tl.static, tl.exec, tl.silent, tl.known, tl.skipped))
		}
		line = append(line, cat+": "+strings.Join(parts, "; "))
	}
	t.Logf("bypass corpus: %d cases; runs: %d in full, %d in allowlist, %d in full hidden from static analysis\n  %s",
		len(cases), total["full"], total["allowlist"], total["hidden"], strings.Join(line, "\n  "))
	for _, k := range known {
		t.Log(k)
	}
}

// bypassHas reports whether an effect of the kind is among effs.
func bypassHas(effs []string, kind string) bool {
	for _, e := range effs {
		if strings.HasPrefix(e, kind+":") {
			return true
		}
	}
	return false
}
