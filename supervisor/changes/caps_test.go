package changes

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// synthetic builds a set of n created 4 KiB files under dir and d deleted
// paths under old/.
func synthetic(dir string, n, d int) *Set {
	var cs []Change
	for i := 0; i < n; i++ {
		p := fmt.Sprintf("%s/f%04d", dir, i)
		cs = append(cs, Change{Path: p, Abs: "/srv/app/" + p, Kind: Created, Type: File, Size: 4096})
	}
	for i := 0; i < d; i++ {
		p := fmt.Sprintf("old/f%04d", i)
		cs = append(cs, Change{Path: p, Abs: "/srv/app/" + p, Kind: Deleted, OldType: File, OldSize: 10})
	}
	sortChanges(cs)
	return &Set{Changes: cs, Totals: totals(cs)}
}

func gitProtect(abs string) (string, bool) {
	if strings.Contains(abs+"/", "/.git/") {
		return "**/.git/**", true
	}
	if strings.HasPrefix(abs, "/srv/app/backups/") {
		return "backups/**", true
	}
	return "", false
}

func TestCheck(t *testing.T) {
	cases := []struct {
		name string
		set  *Set
		caps Caps
		want []string // "cap: message"
	}{
		{"within every cap", synthetic("src", 10, 2), Caps{MaxFiles: 200, MaxDeleted: 20, MaxBytes: 1 << 20, Protect: gitProtect}, nil},
		{"no caps", synthetic("src", 3612, 50), Caps{}, nil},
		{"max_files", synthetic("src", 3612, 0), Caps{MaxFiles: 200},
			[]string{"max_files: 3612 files, over max_files = 200"}},
		{"max_deleted", synthetic("src", 1, 25), Caps{MaxDeleted: 20},
			[]string{"max_deleted: 25 deleted, over max_deleted = 20"}},
		{"max_bytes", synthetic("src", 12800, 0), Caps{MaxBytes: 48 << 20},
			[]string{"max_bytes: 50 MiB written, over max_bytes = 48 MiB"}},
		{"protect", synthetic(".git/objects", 3, 0), Caps{Protect: gitProtect},
			[]string{"protect: writes under protected **/.git/**: .git/objects/f0000, .git/objects/f0001, .git/objects/f0002 (3 paths)"}},
		{"protect, many paths and two patterns", merge(synthetic("backups", 1, 0), synthetic(".git", 300, 0)), Caps{MaxFiles: 200, Protect: gitProtect},
			[]string{"max_files: 301 files, over max_files = 200",
				"protect: writes under protected **/.git/**: .git/f0000, .git/f0001, .git/f0002, ... (300 paths)",
				"protect: writes under protected backups/**: backups/f0000"}},
		{"protect sees deletions", synthetic("x", 0, 0).with(Change{Path: ".git", Abs: "/srv/app/.git", Kind: Deleted, OldType: Dir}), Caps{Protect: gitProtect},
			[]string{"protect: writes under protected **/.git/**: .git"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, v := range tc.set.Check(tc.caps) {
				got = append(got, v.Cap+": "+v.Message)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("violations:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

func merge(a, b *Set) *Set {
	cs := append(append([]Change{}, a.Changes...), b.Changes...)
	sortChanges(cs)
	return &Set{Changes: cs, Totals: totals(cs)}
}

func (s *Set) with(c Change) *Set { return merge(s, &Set{Changes: []Change{c}}) }

func TestSummary(t *testing.T) {
	s := synthetic("src", 3612, 0)
	s.Totals.Bytes = 48 << 20
	if got, want := s.Summary(), "3612 files (3612 created, 0 modified, 0 deleted), 48 MiB"; got != want {
		t.Errorf("Summary %q, want %q", got, want)
	}
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1 KiB", 1536: "1.5 KiB", 10*1024 + 512: "10 KiB", 200 << 20: "200 MiB", 3 << 30: "3 GiB"} {
		if got := FormatBytes(n); got != want {
			t.Errorf("FormatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestTotals(t *testing.T) {
	cs := []Change{
		{Kind: Created, Type: File, Size: 10}, {Kind: Created, Type: Dir, Size: 4096},
		{Kind: Modified, Type: File, Size: 5}, {Kind: Replaced, Type: File, Size: 7},
		{Kind: Metadata, Type: File, Size: 100}, {Kind: Deleted, OldType: File, OldSize: 9},
	}
	want := Totals{Created: 2, Modified: 3, Deleted: 1, Paths: 6, Bytes: 22}
	if got := totals(cs); got != want {
		t.Errorf("totals %+v, want %+v", got, want)
	}
}

func TestLessPath(t *testing.T) {
	in := []string{"a.txt", "b", "a/b/c", ".", "a", "a/b", "a-b", "a/b.c"}
	cs := make([]Change, len(in))
	for i, p := range in {
		cs[i] = Change{Path: p}
	}
	sortChanges(cs)
	var got []string
	for _, c := range cs {
		got = append(got, c.Path)
	}
	want := []string{".", "a", "a/b", "a/b/c", "a/b.c", "a-b", "a.txt", "b"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("order %v, want %v", got, want)
	}
}
