package profiles

import (
	"strings"
	"testing"
)

func TestChangesParse(t *testing.T) {
	const head = "uid = 4242\nworkdirs = [\"/srv/app\"]\n"
	for _, tc := range []struct {
		name, doc string
		want      Changes // Protect compared by Patterns only
	}{
		{"unset", "", Changes{Mode: ChangesDirect}},
		{"review", "[changes]\nmode = \"review\"\nmax_files = 200\nmax_deleted = 20\nmax_bytes = \"50MiB\"\n",
			Changes{Mode: ChangesReview, MaxFiles: 200, MaxDeleted: 20, HasMaxDeleted: true, MaxBytes: 50 << 20}},
		{"dry-run", "[changes]\nmode = \"dry-run\"\n", Changes{Mode: ChangesDryRun}},
		{"direct", "[changes]\nmode = \"direct\"\nprotect = [\"backups/**\"]\n",
			Changes{Mode: ChangesDirect, Protect: PathList{Patterns: []string{"backups/**"}}}},
		{"no deletions", "[changes]\nmode = \"review\"\nmax_deleted = 0\n",
			Changes{Mode: ChangesReview, HasMaxDeleted: true}},
		{"bytes as a number", "[changes]\nmax_bytes = 4096\n", Changes{Mode: ChangesDirect, MaxBytes: 4096}},
		{"dotted keys", "changes.mode = \"review\"\nchanges.max_files = 1\n", Changes{Mode: ChangesReview, MaxFiles: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := ParseProfile("/agents/c.toml", []byte(head+tc.doc), nil)
			if err != nil {
				t.Fatal(err)
			}
			c := p.Changes
			if c.Mode != tc.want.Mode || c.MaxFiles != tc.want.MaxFiles || c.MaxDeleted != tc.want.MaxDeleted ||
				c.HasMaxDeleted != tc.want.HasMaxDeleted || c.MaxBytes != tc.want.MaxBytes ||
				strings.Join(c.Protect.Patterns, ",") != strings.Join(tc.want.Protect.Patterns, ",") {
				t.Errorf("got %+v, want %+v", c, tc.want)
			}
			if c.Capped() != tc.want.Capped() {
				t.Errorf("Capped() = %v", c.Capped())
			}
		})
	}
}

func TestChangesErrors(t *testing.T) {
	const head = "uid = 4242\nworkdirs = [\"/srv/app\"]\n[changes]\n"
	for _, tc := range []struct{ name, body, want string }{
		{"unknown key", "max_file = 3\n", "c.toml:4: unknown key changes.max_file"},
		{"bad mode", "mode = \"staged\"\n", "c.toml:4: mode = \"staged\": want direct, review or dry-run"},
		{"mode type", "mode = 1\n", "c.toml:4:"},
		{"max_files 0", "max_files = 0\n", "c.toml:4: max_files = 0: want a whole number from 1"},
		{"max_files negative", "max_files = -5\n", "c.toml:4: max_files = -5: want a whole number from 1"},
		{"max_deleted negative", "max_deleted = -1\n", "c.toml:4: max_deleted = -1: want a whole number from 0"},
		{"max_bytes unit", "max_bytes = \"5 parsecs\"\n", "c.toml:4: max_bytes: \"5 parsecs\": unknown unit"},
		{"max_bytes negative", "max_bytes = -1\n", "c.toml:4: max_bytes: -1: want a positive size"},
		{"max_bytes type", "max_bytes = true\n", "c.toml:4: max_bytes: want a size"},
		{"bad pattern", "protect = [\"ok/**\", \"a/[b\"]\n", "c.toml:4: protect:"},
		{"bad braces", "protect = [\"{a,b\"]\n", "c.toml:4: protect:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseProfile("/agents/c.toml", []byte(head+tc.body), nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want %q", err, tc.want)
			}
		})
	}
}

// [defaults.changes] is inherited key by key; protect lists add up, each
// pattern located where it was written.
func TestChangesDefaults(t *testing.T) {
	cfg, err := ParseConfig("/etc/execgate/execgate.toml", []byte(`[defaults.changes]
mode = "review"
max_files = 500
max_deleted = 0
protect = ["**/.git/**"]
`))
	if err != nil {
		t.Fatal(err)
	}
	p, err := ParseProfile("/agents/flow.toml", []byte(`uid = 4242
workdirs = ["/srv/app"]
[changes]
max_files = 200
max_bytes = "1GiB"
protect = ["backups/**", "/srv/app/prod.env"]
`), cfg.Defaults)
	if err != nil {
		t.Fatal(err)
	}
	c := p.Changes
	if c.Mode != ChangesReview || c.MaxFiles != 200 || !c.HasMaxDeleted || c.MaxDeleted != 0 || c.MaxBytes != 1<<30 {
		t.Errorf("merged: %+v", c)
	}
	for key, want := range map[string]string{
		KeyChangesMode: "execgate.toml:2", KeyChangesMaxFiles: "flow.toml:4", KeyChangesMaxDeleted: "execgate.toml:4",
		KeyChangesMaxBytes: "flow.toml:5", KeyChangesProtect: "flow.toml:6",
	} {
		if got := p.LocOf(key).String(); got != want {
			t.Errorf("LocOf(%s) = %s, want %s", key, got, want)
		}
	}
	if got := strings.Join(c.Protect.Patterns, " "); got != "**/.git/** backups/** /srv/app/prod.env" {
		t.Errorf("protect = %s", got)
	}
	if c.Protect.LocOf("**/.git/**").String() != "execgate.toml:5" || c.Protect.LocOf("backups/**").String() != "flow.toml:6" {
		t.Errorf("pattern locs %v", c.Protect.Locs)
	}
	// Only the defaults set protect: LocOf points there.
	p, err = ParseProfile("/agents/flow.toml", []byte("uid = 4242\nworkdirs = [\"/srv/app\"]\n"), cfg.Defaults)
	if err != nil {
		t.Fatal(err)
	}
	if got := p.LocOf(KeyChangesProtect).String(); got != "execgate.toml:5" {
		t.Errorf("inherited protect at %s", got)
	}
	// Errors in [defaults.changes] are reported at execgate.toml's lines.
	_, err = ParseConfig("/etc/execgate/execgate.toml", []byte("[defaults.changes]\nmode = \"later\"\n"))
	if err == nil || !strings.Contains(err.Error(), "execgate.toml:2: mode = \"later\"") {
		t.Errorf("defaults error: %v", err)
	}
}

func TestChangesProtected(t *testing.T) {
	p, err := ParseProfile("/agents/flow.toml", []byte(`uid = 4242
workdirs = ["/srv/app", "/srv/other"]
[changes]
mode = "review"
protect = ["**/.git/**", "backups/**", "**/.env*", "~/notes", "/srv/app/deploy/{prod,stage}.yml"]
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	check := func(stage string) {
		for _, tc := range []struct{ abs, pattern string }{
			{"/srv/app/.git/HEAD", "**/.git/**"},
			{"/srv/app/vendor/x/.git/objects/ab/cdef", "**/.git/**"},
			{"/srv/app/.git", "**/.git/**"}, // "**" is zero or more segments: the directory itself too
			{"/srv/other/backups/2024/db.sql", "backups/**"},
			{"/srv/app/sub/backups/x", "backups/**"},
			{"/srv/app/.env", "**/.env*"},
			{"/srv/app/web/.env.production", "**/.env*"},
			{"/srv/app/deploy/prod.yml", "/srv/app/deploy/{prod,stage}.yml"},
			{"/srv/app/deploy/dev.yml", ""},
			{"/srv/app/src/main.go", ""},
			{"/srv/app/backupsfoo/x", ""},
			{"srv/app/.git/HEAD", ""}, // relative: never
		} {
			pat, hit := p.Changes.Protected(tc.abs)
			if hit != (tc.pattern != "") || pat != tc.pattern {
				t.Errorf("%s: Protected(%s) = %q, %v; want %q", stage, tc.abs, pat, hit, tc.pattern)
			}
		}
	}
	check("parsed")
	if _, hit := p.Changes.Protected("/home/flow/notes/a"); hit {
		t.Error("~ before Resolve must not be a real home")
	}
	if _, err := p.ResolveWith(FixedAccounts(Identity{UID: 4242, GID: 4242, Home: "/home/flow"})); err != nil {
		t.Fatal(err)
	}
	check("resolved")
	if pat, hit := p.Changes.Protected("/home/flow/notes/a"); !hit || pat != "~/notes" {
		t.Errorf("~/notes after Resolve: %q %v", pat, hit)
	}
	var none Changes
	if _, hit := none.Protected("/srv/app/.git/HEAD"); hit {
		t.Error("the zero Changes protects nothing")
	}
}

// examples/flow.toml holds what the incident's commit would have been.
func TestChangesExample(t *testing.T) {
	cfg, err := LoadConfig("../examples/execgate.toml")
	if err != nil {
		t.Fatal(err)
	}
	known := Loader{Accounts: FixedAccounts(Identity{User: "flow", UID: 5000, GID: 5000, Home: "/home/flow"})}
	p, err := known.LoadFile("../examples/flow.toml", cfg.Defaults)
	if err != nil {
		t.Fatal(err)
	}
	c := p.Changes
	if c.Mode != ChangesReview || c.MaxFiles != 200 || c.MaxDeleted != 20 || !c.HasMaxDeleted || c.MaxBytes != 50<<20 {
		t.Errorf("changes %+v", c)
	}
	if pat, hit := c.Protected("/srv/fibreflow/backups/2024-06/index.html"); !hit || pat != "backups/**" {
		t.Errorf("the incident's backup directory: %q %v", pat, hit)
	}
	if l := p.LocOf(KeyChangesMaxFiles); l.String() != "flow.toml:66" {
		t.Errorf("max_files at %s", l)
	}
}
