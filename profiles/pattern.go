package profiles

import (
	"fmt"
	"path"
	"strings"

	"github.com/execgate/execgate/pathglob"
)

// Tri is a three-valued match result.
type Tri uint8

const (
	No    Tri = iota
	Maybe     // depends on words only known at run time
	Yes
)

func (t Tri) String() string { return [...]string{"no", "maybe", "yes"}[t] }

// Word is one argument of an invocation as the matcher sees it.
type Word struct {
	Text string
	// Dynamic: exactly one word whose value is unknown ("$X" quoted).
	Dynamic bool
	// Multi: zero or more words whose values are unknown ($X unquoted,
	// $(cmd), the arguments xargs appends, "$@").
	Multi bool
}

// Argv is a normalised invocation.
type Argv struct {
	// Path is the program's resolved real path, "" when it could not be
	// resolved (not found, or not knowable before running).
	Path string
	// Name is the program word as written; "" when it is dynamic.
	Name string
	// Alias is a trusted name the program was found under (a package's
	// /usr/bin/npm link to npm-cli.js); allow rules may match it.
	Alias string
	// Unresolvable: Name is known but the file it runs is not (the script
	// changed PATH). Any program could run, so no rule can say No for sure
	// and no allow rule can say Yes.
	Unresolvable bool
	// Identity is the name of a program a rule names whose file content
	// this one has: a copy of /usr/bin/git under another name is git.
	Identity string
	Args     []Word // argv[1:]
}

// Pattern is a compiled rule pattern.
type Pattern struct {
	anyCommand bool // the pattern is "**"
	prog       wordMatcher
	words      []wordMatcher
}

type wordKind uint8

const (
	wLit wordKind = iota
	wGlob
	wOne  // *
	wRest // **
)

type wordMatcher struct {
	kind  wordKind
	alts  []string // literal or glob alternatives ({a,b})
	globs []glob   // wGlob: alts compiled
	abs   bool     // program word containing '/': matched against paths
}

// maxPatternWords bounds a pattern; argv length is bounded by the caller.
const maxPatternWords = 64

// CompilePattern parses a rule's match string.
func CompilePattern(src string) (*Pattern, error) {
	if strings.TrimSpace(src) == "" {
		return nil, fmt.Errorf("empty match pattern")
	}
	words, err := splitPattern(src)
	if err != nil {
		return nil, fmt.Errorf("match %q: %w", src, err)
	}
	if len(words) > maxPatternWords {
		return nil, fmt.Errorf("match %q: more than %d words", src, maxPatternWords)
	}
	p := &Pattern{}
	for i, w := range words {
		m, err := compileWord(w)
		if err != nil {
			return nil, fmt.Errorf("match %q: word %d: %w", src, i+1, err)
		}
		if i == 0 {
			switch m.kind {
			case wRest:
				if len(words) > 1 {
					return nil, fmt.Errorf("match %q: ** as the program matches every command and must stand alone", src)
				}
				p.anyCommand = true
				return p, nil
			case wLit, wGlob:
				for _, a := range m.alts {
					if strings.Contains(a, "/") {
						m.abs = true
						if !strings.HasPrefix(a, "/") {
							return nil, fmt.Errorf("match %q: a program path must be absolute", src)
						}
					}
				}
			}
			p.prog = m
			continue
		}
		// Collapse runs of ** (they mean the same and cost time).
		if m.kind == wRest && len(p.words) > 0 && p.words[len(p.words)-1].kind == wRest {
			continue
		}
		p.words = append(p.words, m)
	}
	return p, nil
}

func compileWord(w string) (wordMatcher, error) {
	switch w {
	case "**":
		return wordMatcher{kind: wRest}, nil
	case "*":
		return wordMatcher{kind: wOne}, nil
	}
	alts, err := pathglob.ExpandBraces(w)
	if err != nil {
		return wordMatcher{}, err
	}
	m := wordMatcher{kind: wLit}
	for _, a := range alts {
		if strings.Contains(a, "**") && a != "**" {
			// "**" inside a word is just "*" twice; say so rather than guess.
			return wordMatcher{}, fmt.Errorf("%q: ** must be a whole word", w)
		}
		if pathglob.HasMeta(a) {
			if err := checkGlob(a); err != nil {
				return wordMatcher{}, fmt.Errorf("%q: %w", w, err)
			}
			m.kind = wGlob
		}
	}
	if m.kind == wLit {
		for i, a := range alts {
			alts[i] = pathglob.Unescape(a)
		}
	} else {
		for _, a := range alts {
			m.globs = append(m.globs, compileGlob(a))
		}
	}
	m.alts = alts
	return m, nil
}

// splitPattern splits like the shell: blanks separate words, quotes group,
// and quoted glob characters are escaped so they match literally.
func splitPattern(s string) ([]string, error) {
	var words []string
	var b strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			if inWord {
				words = append(words, b.String())
				b.Reset()
				inWord = false
			}
		case c == '\\':
			if i+1 >= len(s) {
				return nil, fmt.Errorf("trailing backslash")
			}
			i++
			b.WriteByte('\\')
			b.WriteByte(s[i])
			inWord = true
		case c == '\'' || c == '"':
			end := strings.IndexByte(s[i+1:], c)
			if end < 0 {
				return nil, fmt.Errorf("unterminated %c quote", c)
			}
			for _, q := range []byte(s[i+1 : i+1+end]) {
				if strings.IndexByte(`*?[]{}\,`, q) >= 0 {
					b.WriteByte('\\')
				}
				b.WriteByte(q)
			}
			i += end + 1
			inWord = true
		case c == 0:
			return nil, fmt.Errorf("NUL byte in pattern")
		default:
			b.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, b.String())
	}
	return words, nil
}

func checkGlob(g string) error {
	for i := 0; i < len(g); i++ {
		switch g[i] {
		case '\\':
			i++
		case '[':
			j := classEnd(g, i)
			if j < 0 {
				return fmt.Errorf("unterminated [ in glob")
			}
			i = j
		}
	}
	return nil
}

// classEnd returns the index of the ']' closing the class opened at g[i].
func classEnd(g string, i int) int {
	j := i + 1
	if j < len(g) && (g[j] == '!' || g[j] == '^') {
		j++
	}
	if j < len(g) && g[j] == ']' {
		j++
	}
	for ; j < len(g); j++ {
		if g[j] == '\\' {
			j++
			continue
		}
		if g[j] == ']' {
			return j
		}
	}
	return -1
}

// glob is a compiled argument glob. Unlike path.Match, '*' also matches
// '/', since arguments are not paths. The glob is split at runs of '*' into
// segments of fixed-width tokens; the first segment is an anchored prefix,
// the last an anchored suffix (when there is a star), and the ones between
// are found leftmost in turn, which is exact because each segment has a
// fixed width. Matching costs O(len(text) * len(glob)), never exponential:
// the text is an argument the agent chooses.
type glob struct {
	segs  []globSeg // stars+1 segments; only the first and last may be empty
	never bool      // unterminated class or trailing backslash: matches nothing
}

// globSeg is a run of tokens between stars; each token matches one byte.
type globSeg struct {
	lit  string    // every token is a literal byte: these bytes
	toks []byteSet // otherwise: the bytes each position accepts
	// masks drive a bit-parallel (shift-and) search for a segment with
	// toks between stars: bit k of masks[c*words+k/64] is set when toks[k]
	// accepts c.
	masks []uint64
	words int
}

type byteSet [4]uint64

func (b *byteSet) add(c byte)      { b[c>>6] |= 1 << (c & 63) }
func (b *byteSet) has(c byte) bool { return b[c>>6]&(1<<(c&63)) != 0 }

func (sg *globSeg) width() int { return max(len(sg.lit), len(sg.toks)) }

// compileGlob parses g with the token rules of the recursive matcher it
// replaces (kept as the oracle in patternlinear_test.go): '?' is any byte,
// "[...]" a class (see classEnd and classMatch), `\x` the byte x. A glob the
// old matcher could never match (unterminated class, trailing backslash;
// checkGlob rejects both) compiles to one that matches nothing.
func compileGlob(g string) glob {
	var out glob
	var lit []byte     // the segment so far, while it is all literal bytes
	var toks []byteSet // the segment so far, once it is not
	add := func(b byteSet) {
		if toks == nil {
			for _, c := range lit {
				var t byteSet
				t.add(c)
				toks = append(toks, t)
			}
		}
		toks = append(toks, b)
	}
	one := func(c byte) {
		if toks == nil {
			lit = append(lit, c)
			return
		}
		var b byteSet
		b.add(c)
		toks = append(toks, b)
	}
	flush := func() {
		if toks != nil {
			out.segs = append(out.segs, globSeg{toks: toks})
		} else {
			out.segs = append(out.segs, globSeg{lit: string(lit)})
		}
		lit, toks = nil, nil
	}
	for i := 0; i < len(g); i++ {
		switch g[i] {
		case '*':
			for i+1 < len(g) && g[i+1] == '*' {
				i++
			}
			flush()
		case '?':
			add(byteSet{^uint64(0), ^uint64(0), ^uint64(0), ^uint64(0)})
		case '[':
			end := classEnd(g, i)
			if end < 0 {
				return glob{never: true}
			}
			var b byteSet
			for c := 0; c < 256; c++ {
				if classMatch(g[i+1:end], byte(c)) {
					b.add(byte(c))
				}
			}
			add(b)
			i = end
		case '\\':
			if i+1 >= len(g) {
				return glob{never: true}
			}
			i++
			one(g[i])
		default:
			one(g[i])
		}
	}
	flush()
	// Only the segments between stars are searched for; the first and the
	// last are compared in place.
	for i := 1; i < len(out.segs)-1; i++ {
		if sg := &out.segs[i]; sg.toks != nil {
			sg.words = (len(sg.toks) + 63) / 64
			sg.masks = make([]uint64, 256*sg.words)
			for k := range sg.toks {
				for c := 0; c < 256; c++ {
					if sg.toks[k].has(byte(c)) {
						sg.masks[c*sg.words+k/64] |= 1 << (k % 64)
					}
				}
			}
		}
	}
	return out
}

// at reports whether sg matches s[:sg.width()]; len(s) >= sg.width().
func (sg *globSeg) at(s string) bool {
	if sg.toks == nil {
		return s[:len(sg.lit)] == sg.lit
	}
	for i := range sg.toks {
		if !sg.toks[i].has(s[i]) {
			return false
		}
	}
	return true
}

// index returns the leftmost position where sg matches in s, or -1.
func (sg *globSeg) index(s string) int {
	if sg.toks == nil {
		return strings.Index(s, sg.lit)
	}
	// Bit k of d is set when toks[:k+1] matches the text ending at s[i]:
	// one pass over s, len(toks)/64 words of work per byte.
	n, nw := len(sg.toks), sg.words
	last, lastBit := (n-1)/64, uint64(1)<<((n-1)%64)
	if nw == 1 {
		var d uint64
		for i := 0; i < len(s); i++ {
			d = (d<<1 | 1) & sg.masks[s[i]]
			if d&lastBit != 0 {
				return i - n + 1
			}
		}
		return -1
	}
	d := make([]uint64, nw)
	for i := 0; i < len(s); i++ {
		m := sg.masks[int(s[i])*nw:]
		carry := uint64(1)
		for w := range d {
			next := d[w] >> 63
			d[w] = (d[w]<<1 | carry) & m[w]
			carry = next
		}
		if d[last]&lastBit != 0 {
			return i - n + 1
		}
	}
	return -1
}

func (g *glob) match(s string) bool {
	if g.never {
		return false
	}
	head := &g.segs[0]
	if len(g.segs) == 1 {
		return len(s) == head.width() && head.at(s)
	}
	tail := &g.segs[len(g.segs)-1]
	hn, tn := head.width(), tail.width()
	if len(s) < hn+tn || !head.at(s) || !tail.at(s[len(s)-tn:]) {
		return false
	}
	s = s[hn : len(s)-tn]
	for i := 1; i < len(g.segs)-1; i++ {
		sg := &g.segs[i]
		j := sg.index(s)
		if j < 0 {
			return false
		}
		s = s[j+sg.width():]
	}
	return true
}

func classMatch(class string, c byte) bool {
	neg := false
	if len(class) > 0 && (class[0] == '!' || class[0] == '^') {
		neg, class = true, class[1:]
	}
	in := false
	for i := 0; i < len(class); i++ {
		lo := class[i]
		if lo == '\\' && i+1 < len(class) {
			i++
			lo = class[i]
		}
		hi := lo
		if i+2 < len(class) && class[i+1] == '-' {
			hi = class[i+2]
			i += 2
		}
		if lo <= c && c <= hi {
			in = true
		}
	}
	return in != neg
}

func (m *wordMatcher) matchText(s string) bool {
	switch m.kind {
	case wOne, wRest:
		return true
	case wLit:
		for _, a := range m.alts {
			if a == s {
				return true
			}
		}
		return false
	}
	for i := range m.globs {
		if m.globs[i].match(s) {
			return true
		}
	}
	return false
}

// matchProg matches the program word. Allow rules see only the resolved real
// path, so a symlink named like an allowed tool cannot borrow its rule; deny
// and ask rules also see the name as written, so renaming never escapes one.
func (m *wordMatcher) matchProg(a Argv, act Action) Tri {
	if m.kind == wOne {
		return Yes
	}
	if a.Path == "" && a.Name == "" {
		return Maybe // dynamic program
	}
	if a.Unresolvable {
		if act != Allow && !m.abs && m.matchText(path.Base(a.Name)) {
			return Yes
		}
		return Maybe
	}
	var names []string
	if m.abs {
		if a.Path != "" {
			names = append(names, a.Path)
		}
		if act != Allow && path.IsAbs(a.Name) {
			names = append(names, path.Clean(a.Name))
		}
	} else {
		if a.Path != "" {
			names = append(names, path.Base(a.Path))
		}
		if a.Alias != "" {
			names = append(names, a.Alias)
		}
		if a.Identity != "" {
			names = append(names, a.Identity)
		}
		if a.Name != "" && (act != Allow || a.Path == "" && !strings.Contains(a.Name, "/")) {
			names = append(names, path.Base(a.Name))
		}
	}
	for _, n := range names {
		if m.matchText(n) {
			return Yes
		}
	}
	if a.Path == "" && strings.Contains(a.Name, "/") && act == Allow {
		// A path that does not exist yet (created by the script itself)
		// cannot be allowed before the kernel resolves it.
		return Maybe
	}
	return No
}

// Programs returns the program names the pattern's first word names
// literally (git for "git {checkout,switch} **"): not globs, not paths.
func (p *Pattern) Programs() []string {
	if p.anyCommand || p.prog.kind != wLit || p.prog.abs {
		return nil
	}
	return p.prog.alts
}

// Match reports whether the pattern covers the whole argv. act is the rule's
// action; it selects which program names count (see matchProg).
func (p *Pattern) Match(a Argv, act Action) Tri {
	if p.anyCommand {
		return Yes
	}
	r := p.prog.matchProg(a, act)
	if r == No {
		return No
	}
	return min(r, p.matchArgs(a.Args))
}

// matchArgs is a dynamic programme over (pattern word, argument) so that
// hostile argv cannot make "** x ** y" patterns take exponential time:
// cost is O(len(pattern) * len(args)).
func (p *Pattern) matchArgs(args []Word) Tri {
	P, N := len(p.words), len(args)
	if P == 0 {
		for _, w := range args {
			if !w.Multi {
				return No
			}
		}
		if N == 0 {
			return Yes
		}
		return Maybe
	}
	// dp[i*(N+1)+j] = match of words[i:] against args[j:].
	// best[i*(N+1)+j] = max over k >= j of dp[i][k] (for **).
	// anyRow[i*(N+1)+j] = max over k >= i of dp[k][j] (for unknown runs).
	W := N + 1
	var stack [3 * 8 * 8]Tri
	var buf []Tri
	if n := 3 * (P + 1) * W; n <= len(stack) {
		buf = stack[:n]
	} else {
		buf = make([]Tri, n)
	}
	dp, best, anyRow := buf[:(P+1)*W], buf[(P+1)*W:2*(P+1)*W], buf[2*(P+1)*W:]
	// fill records dp[i][j] and the running maxima that depend on it.
	fill := func(i, j int, r Tri) {
		dp[i*W+j] = r
		b, a := r, r
		if j < N {
			b = max(b, best[i*W+j+1])
		}
		if i < P {
			a = max(a, anyRow[(i+1)*W+j])
		}
		best[i*W+j], anyRow[i*W+j] = b, a
	}
	for j := N; j >= 0; j-- {
		// Row P: no pattern words left.
		switch {
		case j == N:
			fill(P, j, Yes)
		case args[j].Multi && dp[P*W+j+1] != No:
			fill(P, j, Maybe)
		default:
			fill(P, j, No)
		}
		for i := P - 1; i >= 0; i-- {
			m := &p.words[i]
			var r Tri
			switch {
			case m.kind == wRest:
				r = best[(i+1)*W+j]
			case j == N:
				r = No
			case args[j].Multi:
				// Unknown words may stand for any run of pattern words.
				if anyRow[i*W+j+1] != No {
					r = Maybe
				}
			case args[j].Dynamic:
				r = min(Maybe, dp[(i+1)*W+j+1])
			case m.matchText(args[j].Text):
				r = dp[(i+1)*W+j+1]
			}
			fill(i, j, r)
		}
	}
	return dp[0]
}
