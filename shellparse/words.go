package shellparse

import (
	"strconv"
	"strings"
	"unicode/utf8"

	"mvdan.cc/sh/v3/syntax"

	"github.com/execgate/execgate/pathglob"
)

// word converts a parsed word. src is the text the word was parsed from,
// used for the Text of words that are not knowable.
func (f *frame) word(w *syntax.Word) Word {
	var b strings.Builder
	dyn, multi := false, false
	if f.lang != syntax.LangPOSIX {
		// bash expands {a,b} into several words; POSIX sh leaves it.
		// SplitBraces rewrites the word, so give it a copy.
		cp := &syntax.Word{Parts: append([]syntax.WordPart(nil), w.Parts...)}
		if syntax.SplitBraces(cp) {
			for _, p := range cp.Parts {
				if be, ok := p.(*syntax.BraceExp); ok && (be.Sequence || len(be.Elems) > 1) {
					multi = true
				}
			}
		}
	}
	for i, part := range w.Parts {
		switch x := part.(type) {
		case *syntax.Lit:
			v := x.Value
			if i == 0 && strings.HasPrefix(v, "~") {
				name, rest, _ := strings.Cut(v[1:], "/")
				if name != "" || f.p.opts.Home == "" {
					dyn = true // ~user, or no known home
				} else if rest != "" || strings.HasSuffix(v, "/") {
					v = f.p.opts.Home + "/" + rest
				} else {
					v = f.p.opts.Home
				}
			}
			if pathglob.HasMeta(v) {
				multi = true
			}
			b.WriteString(unescapeUnquoted(v))
		case *syntax.SglQuoted:
			if !x.Dollar {
				b.WriteString(x.Value)
				continue
			}
			s, ok := decodeANSIC(x.Value)
			if !ok {
				dyn = true
			}
			b.WriteString(s)
		case *syntax.DblQuoted:
			for _, q := range x.Parts {
				switch y := q.(type) {
				case *syntax.Lit:
					b.WriteString(unescapeDouble(y.Value))
				case *syntax.ParamExp:
					if y.Param != nil && (y.Param.Value == "@" || y.Index != nil) {
						multi = true // "$@" and "${a[@]}" are any number of words
					} else {
						dyn = true
					}
				default:
					dyn = true
				}
			}
		case *syntax.ProcSubst:
			dyn = true // becomes /dev/fd/N
		default:
			// Unquoted expansions split into fields; globs and braces expand.
			multi = true
		}
	}
	if dyn || multi {
		return Word{Text: f.source(w), Dynamic: dyn && !multi, Multi: multi}
	}
	return Word{Text: b.String()}
}

// source returns the script text of a node, bounded for messages.
func (f *frame) source(n syntax.Node) string {
	s, e := int(n.Pos().Offset()), int(n.End().Offset())
	if s < 0 || e > len(f.src) || s > e {
		return "?"
	}
	t := f.src[s:e]
	if len(t) > 256 {
		t = t[:256] + "..."
	}
	return t
}

func unescapeUnquoted(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
			if s[i] == '\n' {
				continue // line continuation
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func unescapeDouble(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			switch s[i+1] {
			case '$', '`', '"', '\\':
				i++
			case '\n':
				i++
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// decodeANSIC decodes the body of a $'...' string. ok is false for escapes
// it does not know, so the word is treated as unknowable, not misread.
func decodeANSIC(s string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 >= len(s) {
			b.WriteByte(c)
			continue
		}
		i++
		switch c = s[i]; c {
		case 'a':
			b.WriteByte(7)
		case 'b':
			b.WriteByte(8)
		case 'e', 'E':
			b.WriteByte(27)
		case 'f':
			b.WriteByte(12)
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case 'v':
			b.WriteByte(11)
		case '\\', '\'', '"', '?':
			b.WriteByte(c)
		case 'x', 'u', 'U', '0', '1', '2', '3', '4', '5', '6', '7':
			base, max := 16, map[byte]int{'x': 2, 'u': 4, 'U': 8}[c]
			start := i + 1
			if c >= '0' && c <= '7' {
				base, max, start = 8, 3, i
			}
			j := start
			for j < len(s) && j-start < max && isDigit(s[j], base) {
				j++
			}
			if j == start {
				return "", false
			}
			n, err := strconv.ParseUint(s[start:j], base, 32)
			if err != nil {
				return "", false
			}
			if c == 'u' || c == 'U' {
				if !utf8.ValidRune(rune(n)) {
					return "", false
				}
				b.WriteRune(rune(n))
			} else {
				b.WriteByte(byte(n))
			}
			i = j - 1
		case 'c':
			if i+1 >= len(s) {
				return "", false
			}
			i++
			b.WriteByte(s[i] & 0x1f)
		default:
			b.WriteByte('\\')
			b.WriteByte(c)
		}
	}
	return b.String(), true
}

func isDigit(c byte, base int) bool {
	switch {
	case c >= '0' && c <= '7':
		return true
	case c == '8' || c == '9':
		return base == 16
	case base == 16 && (c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'):
		return true
	}
	return false
}
