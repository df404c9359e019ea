package changes

import (
	"fmt"
	"sort"
	"strconv"
)

// Caps bound a change set; a zero field is no cap.
type Caps struct {
	MaxFiles   int   // paths created, modified or deleted
	MaxDeleted int   // paths deleted
	MaxBytes   int64 // Totals.Bytes
	// Protect says whether a path is protected, and by which pattern.
	Protect func(absPath string) (pattern string, hit bool)
}

// Cap names, as in the profile's [changes] table.
const (
	CapMaxFiles   = "max_files"
	CapMaxDeleted = "max_deleted"
	CapMaxBytes   = "max_bytes"
	CapProtect    = "protect"
)

// Violation is one cap a change set is over: Cap is one of the Cap*
// names, Pattern the protect pattern hit, Paths the protected paths
// (relative, as in Change.Path).
type Violation struct {
	Cap     string   `json:"cap"`
	Pattern string   `json:"pattern,omitempty"`
	Message string   `json:"message"`
	Paths   []string `json:"paths,omitempty"`
}

// Check returns the caps the set is over, in the order max_files,
// max_deleted, max_bytes, then one per protect pattern hit (in the order
// of their first path).
func (s *Set) Check(c Caps) []Violation {
	var out []Violation
	t := s.Totals
	if c.MaxFiles > 0 && t.Paths > c.MaxFiles {
		out = append(out, Violation{Cap: CapMaxFiles,
			Message: fmt.Sprintf("%d files, over max_files = %d", t.Paths, c.MaxFiles)})
	}
	if c.MaxDeleted > 0 && t.Deleted > c.MaxDeleted {
		out = append(out, Violation{Cap: CapMaxDeleted,
			Message: fmt.Sprintf("%d deleted, over max_deleted = %d", t.Deleted, c.MaxDeleted)})
	}
	if c.MaxBytes > 0 && t.Bytes > c.MaxBytes {
		out = append(out, Violation{Cap: CapMaxBytes,
			Message: fmt.Sprintf("%s written, over max_bytes = %s", FormatBytes(t.Bytes), FormatBytes(c.MaxBytes))})
	}
	if c.Protect != nil {
		out = append(out, s.protected(c.Protect)...)
	}
	return out
}

// protected groups the protected paths of the set by pattern.
func (s *Set) protected(protect func(string) (string, bool)) []Violation {
	byPattern := map[string]*Violation{}
	var order []string
	for i := range s.Changes {
		c := &s.Changes[i]
		pat, hit := protect(c.Abs)
		if !hit {
			continue
		}
		v := byPattern[pat]
		if v == nil {
			v = &Violation{Cap: CapProtect, Pattern: pat}
			byPattern[pat] = v
			order = append(order, pat)
		}
		v.Paths = append(v.Paths, c.Path)
	}
	out := make([]Violation, 0, len(order))
	for _, pat := range order {
		v := byPattern[pat]
		v.Message = fmt.Sprintf("writes under protected %s: %s", pat, listPaths(v.Paths, 3))
		out = append(out, *v)
	}
	return out
}

// Summary is one line such as "3612 files (3612 created, 0 modified, 0
// deleted), 48 MiB".
func (s *Set) Summary() string {
	t := s.Totals
	files := "files"
	if t.Paths == 1 {
		files = "file"
	}
	return fmt.Sprintf("%d %s (%d created, %d modified, %d deleted), %s",
		t.Paths, files, t.Created, t.Modified, t.Deleted, FormatBytes(t.Bytes))
}

// FormatBytes writes n in binary units: "512 B", "1.5 KiB", "48 MiB".
func FormatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	v, i := float64(n), -1
	for v >= unit && i < 5 {
		v /= unit
		i++
	}
	num := strconv.FormatFloat(v, 'f', 1, 64)
	if v >= 10 || num[len(num)-1] == '0' {
		num = strconv.FormatFloat(v, 'f', 0, 64)
	}
	return num + " " + []string{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}[i]
}

// totals counts the changes.
func totals(cs []Change) Totals {
	var t Totals
	for i := range cs {
		c := &cs[i]
		t.Paths++
		switch c.Kind {
		case Created:
			t.Created++
		case Deleted:
			t.Deleted++
		default:
			t.Modified++
		}
		if c.Type == File && c.Kind != Deleted && c.Kind != Metadata {
			t.Bytes += c.Size
		}
	}
	return t
}

// sortChanges orders by layer, then path with a directory before what it
// holds; a path deleted and created again keeps that order.
func sortChanges(cs []Change) {
	sort.SliceStable(cs, func(i, j int) bool {
		if cs[i].Layer != cs[j].Layer {
			return cs[i].Layer < cs[j].Layer
		}
		return lessPath(cs[i].Path, cs[j].Path)
	})
}

// lessPath compares slash-separated paths component by component, so
// "a" < "a/b" < "a.txt"; "." is before everything.
func lessPath(a, b string) bool {
	if a == "." || b == "." {
		return a == "." && b != "."
	}
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] == b[i] {
			continue
		}
		if a[i] == '/' {
			return true
		}
		if b[i] == '/' {
			return false
		}
		return a[i] < b[i]
	}
	return len(a) < len(b)
}
