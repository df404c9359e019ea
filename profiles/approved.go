package profiles

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Remembered approvals live in /var/lib/execgate/approved/AGENT.toml, a
// file only the daemon writes. Its [[rule]] tables are allow rules added
// after the profile's own: a deny rule anywhere still wins.

type rawApproved struct {
	Rule []rawRule `toml:"rule"`
}

// AddApproved loads the remembered approvals at path, if the file exists,
// and appends them to p's rules. Only allow rules are accepted.
func (p *Profile) AddApproved(path string, id *Identity) error {
	data, err := readFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read remembered approvals: %w", err)
	}
	if id != nil {
		if err := CheckNotWritable(path, id); err != nil {
			return &Error{Loc: Loc{File: path}, Msg: err.Error()}
		}
	}
	f := &file{name: path, data: data}
	var raw rawApproved
	if !f.decode(&raw) {
		return f.errs
	}
	var rules []Rule
	for i, r := range raw.Rule {
		key := "rule." + strconv.Itoa(i)
		if r.Match == nil || r.Action == nil || Action(*r.Action) != Allow || r.Nested != nil {
			f.errorf(key, "a remembered approval must be an allow rule with a match and nothing else")
			continue
		}
		pat, err := CompilePattern(*r.Match)
		if err != nil {
			f.errorf(key+".match", "%v", err)
			continue
		}
		rule := Rule{Match: *r.Match, Action: Allow, Reason: r.Reason, Loc: f.loc(key + ".match"), Pattern: pat, Remembered: true}
		if r.Cwd != nil {
			rule.Cwd = *r.Cwd
		}
		rules = append(rules, rule)
	}
	if len(f.errs) > 0 {
		return f.errs
	}
	p.Rules = append(p.Rules, rules...)
	return nil
}

// ExactPattern renders an argv as a pattern that matches exactly that argv:
// every word quoted, so glob and brace characters are literal. program, if
// not empty, replaces argv[0] (use the resolved absolute path: a remembered
// rule should not follow a name to another file).
func ExactPattern(program string, argv []string) string {
	words := append([]string(nil), argv...)
	if program != "" && len(words) > 0 {
		words[0] = program
	}
	var b strings.Builder
	for i, w := range words {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(quotePatternWord(w))
	}
	return b.String()
}

func quotePatternWord(w string) string {
	switch {
	case !strings.Contains(w, "'"):
		return "'" + w + "'"
	case !strings.Contains(w, `"`):
		return `"` + w + `"`
	}
	var b bytes.Buffer
	for i := 0; i < len(w); i++ {
		if strings.IndexByte(" \t\n'\"\\*?[]{},", w[i]) >= 0 {
			b.WriteByte('\\')
		}
		b.WriteByte(w[i])
	}
	return b.String()
}

// AppendApproved adds one remembered allow rule, bound to cwd, to the file
// at path, creating it (0644, in a 0700 directory) when needed.
func AppendApproved(path, match, cwd, reason string) error {
	if _, err := CompilePattern(match); err != nil {
		return err
	}
	if err := os.MkdirAll(dirOf(path), 0o700); err != nil {
		return err
	}
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer fh.Close()
	st, _ := fh.Stat()
	var b strings.Builder
	if st != nil && st.Size() == 0 {
		b.WriteString("# Rules remembered from approvals (execgate approve --remember).\n# Written by execgated; a deny rule in the profile always wins.\n")
	}
	fmt.Fprintf(&b, "\n[[rule]]\nmatch = %s\naction = \"allow\"\ncwd = %s\nreason = %s\n", strconv.Quote(match), strconv.Quote(cwd), strconv.Quote(reason))
	if _, err := fh.WriteString(b.String()); err != nil {
		return err
	}
	return fh.Sync()
}

func dirOf(p string) string {
	if i := strings.LastIndexByte(p, '/'); i > 0 {
		return p[:i]
	}
	return "."
}
