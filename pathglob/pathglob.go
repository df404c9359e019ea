package pathglob

import (
	"fmt"
	"path"
	"strings"
)

// Set is a compiled list of patterns. The zero value matches nothing.
type Set struct {
	pats []pattern
}

type pattern struct {
	src      string // as written in the profile
	segs     []seg  // after ~ and brace expansion
	anchored bool
}

// seg is one path segment of a pattern. Literal segments compare as
// strings: matching runs for every word of every command, so it must be
// cheap.
type seg struct {
	text string
	any  bool // "**"
	glob bool // has *, ? or [
}

// maxAlternatives bounds brace expansion so a hostile profile cannot make a
// pattern list explode.
const maxAlternatives = 256

// NewSet compiles patterns. home replaces a leading "~"; it must be absolute
// when any pattern uses "~".
func NewSet(patterns []string, home string) (*Set, error) {
	s := &Set{}
	for _, src := range patterns {
		if err := Validate(src); err != nil {
			return nil, err
		}
		p := src
		anchored := false
		switch {
		case p == "~" || strings.HasPrefix(p, "~/"):
			if !path.IsAbs(home) {
				return nil, fmt.Errorf("pattern %q: home directory %q is not absolute", src, home)
			}
			p = home + p[1:]
			anchored = true
		case strings.HasPrefix(p, "/"):
			anchored = true
		case !strings.HasPrefix(p, "**/") && p != "**":
			p = "**/" + p
		}
		alts, err := ExpandBraces(p)
		if err != nil {
			return nil, fmt.Errorf("pattern %q: %w", src, err)
		}
		for _, a := range alts {
			var segs []seg
			for _, t := range split(a) {
				sg := seg{text: t, any: t == "**", glob: t != "**" && HasMeta(t)}
				if !sg.glob && !sg.any {
					sg.text = Unescape(t)
				}
				segs = append(segs, sg)
			}
			s.pats = append(s.pats, pattern{src: src, segs: segs, anchored: anchored})
		}
	}
	return s, nil
}

// Validate reports whether src is a usable pattern, without needing a home.
func Validate(src string) error {
	switch {
	case src == "":
		return fmt.Errorf("empty path pattern")
	case strings.ContainsRune(src, 0):
		return fmt.Errorf("path pattern %q contains a NUL byte", src)
	case strings.HasPrefix(src, "~") && src != "~" && !strings.HasPrefix(src, "~/"):
		return fmt.Errorf("path pattern %q: only ~ and ~/... are supported, not ~user", src)
	}
	alts, err := ExpandBraces(src)
	if err != nil {
		return fmt.Errorf("path pattern %q: %w", src, err)
	}
	for _, a := range alts {
		for _, seg := range split(a) {
			if seg == "**" {
				continue
			}
			if strings.Contains(seg, "**") {
				return fmt.Errorf("path pattern %q: ** must be a whole path segment", src)
			}
			if _, err := path.Match(seg, ""); err != nil {
				return fmt.Errorf("path pattern %q: bad glob in %q", src, seg)
			}
			if seg == ".." {
				return fmt.Errorf("path pattern %q: .. is not allowed", src)
			}
		}
	}
	return nil
}

// Match reports whether abs, or one of its ancestors, matches a pattern, and
// returns the pattern as written. Relative paths never match: callers join
// them with the working directory first.
func (s *Set) Match(abs string) (string, bool) {
	if s == nil || !path.IsAbs(abs) {
		return "", false
	}
	segs := splitAbs(path.Clean(abs))
	for _, p := range s.pats {
		if matchPrefix(p.segs, segs) {
			return p.src, true
		}
	}
	return "", false
}

// Empty reports whether the set has no patterns.
func (s *Set) Empty() bool { return s == nil || len(s.pats) == 0 }

// Floating reports whether some pattern can match at any depth anywhere, so
// that masking it needs a walk of the directories the agent can reach.
func (s *Set) Floating() bool {
	if s == nil {
		return false
	}
	for _, p := range s.pats {
		if !p.anchored {
			return true
		}
	}
	return false
}

// Roots returns, for the anchored patterns, the longest literal leading
// directory: everything such a pattern matches lies at or under one of them.
func (s *Set) Roots() []string {
	if s == nil {
		return nil
	}
	seen := map[string]bool{}
	var roots []string
	for _, p := range s.pats {
		if !p.anchored {
			continue
		}
		var lit []string
		for _, sg := range p.segs {
			if sg.any || sg.glob {
				break
			}
			lit = append(lit, sg.text)
		}
		r := "/" + strings.Join(lit, "/")
		if !seen[r] {
			seen[r] = true
			roots = append(roots, r)
		}
	}
	return roots
}

// matchPrefix reports whether pat matches segs[:k] for some k, i.e. whether
// the path or one of its ancestors matches. "**" stands for zero or more
// segments and every other pattern segment for exactly one, so the runs
// between "**" have fixed lengths: the first is anchored at the root and
// each later one is placed leftmost after the one before, since a later
// placement never leaves more room for what follows. No backtracking: the
// cost is O(len(pat) * len(segs)) segment matches, however many "**" there
// are (the path may come from a tree the agent built).
func matchPrefix(pat []seg, segs []string) bool {
	n := runLen(pat)
	if !matchRun(pat[:n], segs) {
		return false
	}
	pat, segs = pat[n:], segs[n:]
	for len(pat) > 0 {
		for len(pat) > 0 && pat[0].any { // collapse runs of "**"
			pat = pat[1:]
		}
		n = runLen(pat)
		if n == 0 {
			return true // a trailing "**" matches zero segments
		}
		j := 0
		for ; !matchRun(pat[:n], segs[j:]); j++ {
			if j+n >= len(segs) {
				return false
			}
		}
		pat, segs = pat[n:], segs[j+n:]
	}
	return true
}

// runLen returns the number of leading segments of pat that are not "**".
func runLen(pat []seg) int {
	n := 0
	for n < len(pat) && !pat[n].any {
		n++
	}
	return n
}

// matchRun reports whether run, which has no "**", matches the first
// len(run) segments of segs.
func matchRun(run []seg, segs []string) bool {
	if len(segs) < len(run) {
		return false
	}
	for i := range run {
		if !run[i].match(segs[i]) {
			return false
		}
	}
	return true
}

// match matches one segment. path.Match places each chunk between stars
// leftmost without backtracking: O(len(text) * len(pattern)).
func (s *seg) match(name string) bool {
	if !s.glob {
		return s.text == name
	}
	ok, _ := path.Match(s.text, name)
	return ok
}

// Unescape removes the backslashes that escape glob characters.
func Unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func split(p string) []string {
	var out []string
	for _, s := range strings.Split(p, "/") {
		if s != "" && s != "." {
			out = append(out, s)
		}
	}
	return out
}

// splitAbs splits a clean absolute path without allocating a builder.
func splitAbs(p string) []string {
	if p == "/" {
		return nil
	}
	return strings.Split(p[1:], "/")
}

// HasMeta reports whether s has an unescaped glob character: *, ? or [.
func HasMeta(s string) bool {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '*', '?', '[':
			return true
		}
	}
	return false
}

// ExpandBraces turns "a{b,c}d" into ["abd", "acd"]. Nested braces work and
// a backslash escapes the next byte. Rule patterns in profiles use it too.
func ExpandBraces(s string) ([]string, error) {
	open := -1
	depth := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '{':
			if depth == 0 {
				open = i
			}
			depth++
		case '}':
			if depth == 0 {
				return nil, fmt.Errorf("unmatched }")
			}
			depth--
			if depth == 0 {
				var out []string
				for _, alt := range splitTop(s[open+1 : i]) {
					rest, err := ExpandBraces(s[:open] + alt + s[i+1:])
					if err != nil {
						return nil, err
					}
					out = append(out, rest...)
					if len(out) > maxAlternatives {
						return nil, fmt.Errorf("more than %d brace alternatives", maxAlternatives)
					}
				}
				return out, nil
			}
		}
	}
	if depth != 0 {
		return nil, fmt.Errorf("unmatched {")
	}
	return []string{s}, nil
}

// splitTop splits on commas that are not inside nested braces.
func splitTop(s string) []string {
	var out []string
	depth, start := 0, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '{':
			depth++
		case '}':
			depth--
		case ',':
			if depth == 0 {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	return append(out, s[start:])
}
