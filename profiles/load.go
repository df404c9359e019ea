package profiles

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"

	"github.com/execgate/execgate/pathglob"
)

// maxFileSize bounds a profile or config file; a profile is a few KiB.
const maxFileSize = 1 << 20

// rawProfile mirrors the TOML. Pointers and nil slices mean "not set here",
// so a profile can inherit from [defaults] key by key.
type rawProfile struct {
	User     *string      `toml:"user"`
	UID      *int64       `toml:"uid"`
	Security *string      `toml:"security"`
	Ask      *string      `toml:"ask"`
	Workdirs *[]string    `toml:"workdirs"`
	Shell    *string      `toml:"shell"`
	Rule     []rawRule    `toml:"rule"`
	Connect  []rawConnect `toml:"connect"`
	// NestedAllow lists patterns, added up from defaults and profile.
	NestedAllow []string `toml:"nested_allow"`
	Files       struct {
		DenyRead []string `toml:"deny_read"`
		ReadOnly []string `toml:"read_only"`
	} `toml:"files"`
	Limits struct {
		Timeout        *string `toml:"timeout"`
		Memory         any     `toml:"memory"`
		Pids           *int64  `toml:"pids"`
		CPU            any     `toml:"cpu"`
		Output         any     `toml:"output"`
		Concurrent     *int64  `toml:"concurrent"`
		PerMinute      *int64  `toml:"per_minute"`
		PerDay         *int64  `toml:"per_day"`
		ExecsPerMinute *int64  `toml:"execs_per_minute"`
		ExecsPerDay    *int64  `toml:"execs_per_day"`
		Connections    *int64  `toml:"connections"`
		EgressBytes    any     `toml:"egress_bytes"`
	} `toml:"limits"`
	Env struct {
		Pass *[]string `toml:"pass"`
	} `toml:"env"`
	Network struct {
		Mode *string `toml:"mode"`
	} `toml:"network"`
	Schedule struct {
		Windows  *[]string `toml:"windows"`
		Timezone *string   `toml:"timezone"`
	} `toml:"schedule"`
	Audit struct {
		Script *string `toml:"script"`
	} `toml:"audit"`
	Changes struct {
		Mode       *string  `toml:"mode"`
		MaxFiles   *int64   `toml:"max_files"`
		MaxDeleted *int64   `toml:"max_deleted"`
		MaxBytes   any      `toml:"max_bytes"`
		Protect    []string `toml:"protect"`
	} `toml:"changes"`
}

type rawRule struct {
	Match  *string `toml:"match"`
	Action *string `toml:"action"`
	Reason string  `toml:"reason"`
	Nested *string `toml:"nested"`
	Cwd    *string `toml:"cwd"` // remembered approvals only
}

type rawConnect struct {
	Match  *string `toml:"match"`
	Action *string `toml:"action"`
	Reason string  `toml:"reason"`
}

// Error is one problem in a file, located at file:line.
type Error struct {
	Loc Loc
	Msg string
	Err error // the cause, when there is one
}

func (e *Error) Unwrap() error { return e.Err }

func (e *Error) Error() string {
	if e.Loc.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.Loc.File, e.Loc.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.Loc.File, e.Msg)
}

// Errors is every problem found in one file. Loading reports them all, so an
// admin fixes a profile in one pass.
type Errors []*Error

func (es Errors) Error() string {
	var b strings.Builder
	for i, e := range es {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// file holds what one document's decoding needs: bytes, the line of every
// key path, and the errors found so far.
type file struct {
	name   string
	prefix string // "defaults." for the [defaults] table of execgate.toml
	data   []byte
	lines  map[string]int // "limits.memory", "rule.2", "rule.2.match", "files.deny_read"
	errs   Errors
}

func (f *file) loc(key string) Loc {
	// Fall back to the enclosing table when the key itself is absent.
	for k := f.prefix + key; k != ""; {
		if l, ok := f.lines[k]; ok {
			return Loc{File: f.name, Line: l}
		}
		i := strings.LastIndexByte(k, '.')
		if i < 0 {
			break
		}
		k = k[:i]
	}
	return Loc{File: f.name}
}

func (f *file) errorf(key, format string, args ...any) {
	f.errs = append(f.errs, &Error{Loc: f.loc(key), Msg: fmt.Sprintf(format, args...)})
}

// decode strictly decodes data into v and indexes key lines.
func (f *file) decode(v any) bool {
	if bytes.IndexByte(f.data, 0) >= 0 {
		f.errorf("", "file contains a NUL byte")
		return false
	}
	if err := f.index(); err != nil {
		var pe *unstable.ParserError
		if errors.As(err, &pe) {
			f.errs = append(f.errs, &Error{Loc: Loc{File: f.name, Line: f.lineAt(pe.Highlight)}, Msg: "TOML syntax: " + pe.Message})
		} else {
			f.errorf("", "TOML syntax: %v", err)
		}
		return false
	}
	dec := toml.NewDecoder(bytes.NewReader(f.data)).DisallowUnknownFields()
	err := dec.Decode(v)
	var sm *toml.StrictMissingError
	var de *toml.DecodeError
	switch {
	case err == nil:
		return true
	case errors.As(err, &sm):
		for _, e := range sm.Errors {
			row, _ := e.Position()
			f.errs = append(f.errs, &Error{Loc: Loc{File: f.name, Line: row}, Msg: "unknown key " + strings.Join(e.Key(), ".")})
		}
		// Decode again without strictness so the known keys are still
		// validated and every error is reported in one pass.
		if err := toml.NewDecoder(bytes.NewReader(f.data)).Decode(v); err == nil {
			return true
		}
	case errors.As(err, &de):
		row, _ := de.Position()
		msg := de.Error()
		if k := de.Key(); len(k) > 0 {
			msg = strings.Join(k, ".") + ": " + msg
		}
		f.errs = append(f.errs, &Error{Loc: Loc{File: f.name, Line: row}, Msg: msg})
	default:
		f.errorf("", "%v", err)
	}
	return false
}

// lineAt returns the 1-based line of a subslice of f.data, or 0.
func (f *file) lineAt(b []byte) int {
	if len(b) == 0 && cap(b) == 0 {
		return 0
	}
	off := cap(f.data) - cap(b)
	if off < 0 || off > len(f.data) {
		return 0
	}
	return bytes.Count(f.data[:off], []byte{'\n'}) + 1
}

// index walks the document with go-toml's parser to learn the line of every
// key, including the n-th [[rule]] table, since decoding alone loses them.
func (f *file) index() error {
	f.lines = map[string]int{}
	nl := newlineIndex(f.data)
	line := func(r unstable.Range) int { return sort.SearchInts(nl, int(r.Offset)) + 1 }
	var p unstable.Parser
	p.Reset(f.data)
	arrays := map[string]int{}
	prefix := ""
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			name, first := dottedKey(e)
			if e.Kind == unstable.ArrayTable {
				n := arrays[name]
				arrays[name] = n + 1
				name = name + "." + strconv.Itoa(n)
			}
			prefix = name + "."
			f.lines[name] = line(first)
		case unstable.KeyValue:
			name, first := dottedKey(e)
			f.lines[prefix+name] = line(first)
		}
	}
	return p.Error()
}

// dottedKey joins a table header's or key-value's key parts, and returns
// where the first part is.
func dottedKey(e *unstable.Node) (string, unstable.Range) {
	var parts []string
	var first unstable.Range
	for it := e.Key(); it.Next(); {
		if len(parts) == 0 {
			first = it.Node().Raw
		}
		parts = append(parts, string(it.Node().Data))
	}
	return strings.Join(parts, "."), first
}

func newlineIndex(b []byte) []int {
	var nl []int
	for i, c := range b {
		if c == '\n' {
			nl = append(nl, i)
		}
	}
	return nl
}

func readFile(name string) ([]byte, error) {
	fh, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", name)
	}
	if st.Size() > maxFileSize {
		return nil, fmt.Errorf("%s: %d bytes is larger than the %d-byte limit", name, st.Size(), maxFileSize)
	}
	b := make([]byte, st.Size()+1)
	n, err := fh.Read(b)
	if err != nil && n == 0 && st.Size() > 0 {
		return nil, err
	}
	return b[:n], nil
}

var agentName = regexp.MustCompile(`^[a-z_][a-z0-9_.-]{0,63}$`)

// ParseProfile validates data as the profile NAME.toml at path name, with
// defaults applied from d (nil for none). Identity (user, home) is resolved
// separately by Resolve.
func ParseProfile(name string, data []byte, d *Defaults) (*Profile, error) {
	f := &file{name: name, data: data}
	agent := strings.TrimSuffix(filepath.Base(name), ".toml")
	if !agentName.MatchString(agent) {
		f.errorf("", "agent name %q (the file's base name) must match %s", agent, agentName)
	}
	var raw rawProfile
	if !f.decode(&raw) {
		return nil, f.errs
	}
	sum := sha256.Sum256(data)
	p := &Profile{Name: agent, File: name, SHA256: hex.EncodeToString(sum[:]), UID: -1, GID: -1, Locs: map[string]Loc{}}
	switch {
	case raw.User != nil && raw.UID != nil:
		f.errorf("uid", "set user or uid, not both")
	case raw.User != nil:
		if !agentName.MatchString(*raw.User) {
			f.errorf("user", "user %q is not a valid account name", *raw.User)
		}
		p.User = *raw.User
	case raw.UID != nil:
		if *raw.UID < 0 || *raw.UID > math.MaxUint32-1 {
			f.errorf("uid", "uid %d out of range", *raw.UID)
		}
		p.UID = *raw.UID
	default:
		f.errorf("", "the profile must name its agent's account: user = \"NAME\" or uid = N")
	}
	if p.UID == 0 || p.User == "root" {
		f.errorf(firstSet(raw.UID != nil, "uid", "user"), "an agent may not run as root: give it its own account")
	}
	// Errors in inherited values are reported at their place in
	// execgate.toml; bf is a per-call copy so profiles loaded in parallel
	// do not share an error list.
	var base rawProfile
	bf := &file{name: name}
	if d != nil {
		base, bf = d.raw, &file{name: d.f.name, prefix: "defaults.", data: d.f.data, lines: d.f.lines}
	}
	applyModes(p, f, bf, &raw, &base)
	applyRules(p, f, bf, &raw, &base)
	applyFiles(p, f, bf, &raw, &base)
	applyLimits(p, f, bf, &raw, &base)
	applyRest(p, f, bf, &raw, &base)
	applyConnect(p, f, bf, &raw, &base)
	applyChanges(p, f, bf, &raw, &base)
	f.errs = append(f.errs, bf.errs...)
	if len(f.errs) > 0 {
		return nil, f.errs
	}
	return p, nil
}

func firstSet(cond bool, a, b string) string {
	if cond {
		return a
	}
	return b
}

// pick returns the profile's value when set, else the default's, with the
// file that set it (for error locations).
func pick[T any](own *T, def *T, f, bf *file) (*T, *file) {
	if own != nil {
		return own, f
	}
	return def, bf
}

func applyModes(p *Profile, f, bf *file, raw, base *rawProfile) {
	sec, sf := pick(raw.Security, base.Security, f, bf)
	p.Security = SecurityAllowlist // the safe default: nothing unlisted runs
	if sec != nil {
		p.SecurityLoc = sf.loc("security")
		switch s := Security(*sec); s {
		case SecurityDeny, SecurityAllowlist, SecurityFull:
			p.Security = s
		default:
			sf.errorf("security", "security = %q: want deny, allowlist or full", *sec)
		}
	} else {
		p.SecurityLoc = Loc{File: f.name}
	}
	ask, af := pick(raw.Ask, base.Ask, f, bf)
	p.Ask = AskOff
	if ask != nil {
		p.AskLoc = af.loc("ask")
		switch a := AskMode(*ask); a {
		case AskOff, AskOnMiss, AskAlways:
			p.Ask = a
		default:
			af.errorf("ask", "ask = %q: want off, on-miss or always", *ask)
		}
	}
	wd, wf := pick(raw.Workdirs, base.Workdirs, f, bf)
	if wd == nil || len(*wd) == 0 {
		f.errorf("workdirs", "workdirs must list at least one directory the agent may work in")
	} else {
		for _, w := range *wd {
			if !filepath.IsAbs(w) || strings.ContainsRune(w, 0) {
				wf.errorf("workdirs", "workdir %q must be an absolute path", w)
				continue
			}
			p.Workdirs = append(p.Workdirs, filepath.Clean(w))
		}
	}
	// egsh is a drop-in for `bash -c`, and agents write bash.
	p.Shell = "/bin/bash"
	if sh, shf := pick(raw.Shell, base.Shell, f, bf); sh != nil {
		if !filepath.IsAbs(*sh) {
			shf.errorf("shell", "shell %q must be an absolute path", *sh)
		}
		p.Shell = *sh
	}
}

func applyRules(p *Profile, f, bf *file, raw, base *rawProfile) {
	add := func(rf *file, rules []rawRule) {
		for i, r := range rules {
			key := "rule." + strconv.Itoa(i)
			rule := Rule{Reason: r.Reason, Loc: rf.loc(key)}
			if r.Cwd != nil {
				rf.errorf(key+".cwd", "cwd is only for remembered approvals")
				continue
			}
			if r.Match == nil {
				rf.errorf(key, "rule without match")
				continue
			}
			rule.Match = *r.Match
			rule.Loc = rf.loc(key + ".match")
			a, ok := rf.ruleAction(key, "rule", *r.Match, r.Action)
			if !ok {
				continue
			}
			rule.Action = a
			pat, err := CompilePattern(*r.Match)
			if err != nil {
				rf.errorf(key+".match", "%v", err)
				continue
			}
			if r.Nested != nil {
				switch NestedMode(*r.Nested) {
				case NestedAny:
					rule.NestedAny = true
				case NestedRules:
				default:
					rf.errorf(key+".nested", "nested = %q: want any or rules", *r.Nested)
					continue
				}
				if rule.NestedAny && rule.Action != Allow {
					rf.errorf(key+".nested", "nested = \"any\" only makes sense on an allow rule")
					continue
				}
			}
			rule.Pattern = pat
			p.Rules = append(p.Rules, rule)
		}
	}
	add(bf, base.Rule)
	add(f, raw.Rule)
	for _, src := range []struct {
		f    *file
		pats []string
	}{{bf, base.NestedAllow}, {f, raw.NestedAllow}} {
		for _, m := range src.pats {
			pat, err := CompilePattern(m)
			if err != nil {
				src.f.errorf("nested_allow", "%v", err)
				continue
			}
			p.NestedAllow = append(p.NestedAllow, Rule{Match: m, Action: Allow, Loc: src.f.loc("nested_allow"), Pattern: pat})
		}
	}
}

func applyFiles(p *Profile, f, bf *file, raw, base *rawProfile) {
	// Lists from defaults and profile add up: a profile cannot drop a
	// site-wide deny_read.
	for _, l := range []struct {
		key      string
		own, def []string
		dst      *PathList
	}{
		{"files.deny_read", raw.Files.DenyRead, base.Files.DenyRead, &p.DenyRead},
		{"files.read_only", raw.Files.ReadOnly, base.Files.ReadOnly, &p.ReadOnly},
	} {
		for _, src := range []struct {
			f    *file
			pats []string
		}{{bf, l.def}, {f, l.own}} {
			for _, pat := range src.pats {
				if err := pathglob.Validate(pat); err != nil {
					src.f.errorf(l.key, "%v", err)
					continue
				}
				if l.key == "files.read_only" && (pathglob.HasMeta(pat) || strings.Contains(pat, "{") || !(strings.HasPrefix(pat, "/") || pat == "~" || strings.HasPrefix(pat, "~/"))) {
					// Read-only binds need real paths: a pattern would
					// have to be widened to its literal directory.
					src.f.errorf(l.key, "read_only %q: give an absolute path or ~/path, not a pattern", pat)
					continue
				}
				l.dst.Patterns = append(l.dst.Patterns, pat)
				l.dst.Locs = append(l.dst.Locs, src.f.loc(l.key))
			}
		}
	}
}

func applyLimits(p *Profile, f, bf *file, raw, base *rawProfile) {
	rl, bl := &raw.Limits, &base.Limits
	if v, vf := pick(rl.Timeout, bl.Timeout, f, bf); v != nil {
		p.Locs[KeyTimeout] = vf.loc(KeyTimeout)
		d, err := time.ParseDuration(*v)
		if err != nil || d <= 0 {
			vf.errorf(KeyTimeout, "timeout = %q: want a positive duration like \"10m\" or \"90s\"", *v)
		}
		p.Limits.Timeout = d
	}
	size := func(key string, own, def any, dst *int64) {
		v, vf := own, f
		if v == nil {
			v, vf = def, bf
		}
		if v == nil {
			return
		}
		if KnownKey(key) {
			p.Locs[key] = vf.loc(key)
		}
		n, err := ParseSize(v)
		if err != nil {
			vf.errorf(key, "%s: %v", key[len("limits."):], err)
		}
		*dst = n
	}
	size("limits.memory", rl.Memory, bl.Memory, &p.Limits.Memory)
	size("limits.output", rl.Output, bl.Output, &p.Limits.Output)
	// The egress limits load in every network mode, so [defaults] can set
	// them for all agents; they apply in network.mode = "proxy".
	size(KeyEgressBytes, rl.EgressBytes, bl.EgressBytes, &p.Limits.EgressBytes)
	if v, vf := rl.CPU, f; v != nil || bl.CPU != nil {
		if v == nil {
			v, vf = bl.CPU, bf
		}
		var c float64
		switch x := v.(type) {
		case int64:
			c = float64(x)
		case float64:
			c = x
		default:
			vf.errorf("limits.cpu", "cpu must be a number of cores, like 1.5")
		}
		if c <= 0 || c > 4096 || math.IsNaN(c) {
			vf.errorf("limits.cpu", "cpu = %v: want cores between 0 and 4096", v)
		}
		p.Limits.CPU = c
	}
	ints := []struct {
		key      string
		own, def *int64
		dst      func(int64)
		min      int64
	}{
		{KeyPids, rl.Pids, bl.Pids, func(n int64) { p.Limits.Pids = n }, 1},
		{KeyConcurrent, rl.Concurrent, bl.Concurrent, func(n int64) { p.Limits.Concurrent = int(n) }, 1},
		{KeyPerMinute, rl.PerMinute, bl.PerMinute, func(n int64) { p.Limits.PerMinute = int(n) }, 1},
		{KeyPerDay, rl.PerDay, bl.PerDay, func(n int64) { p.Limits.PerDay = int(n) }, 1},
		{KeyExecsPerMinute, rl.ExecsPerMinute, bl.ExecsPerMinute, func(n int64) { p.Limits.ExecsPerMinute = int(n) }, 1},
		{KeyExecsPerDay, rl.ExecsPerDay, bl.ExecsPerDay, func(n int64) { p.Limits.ExecsPerDay = int(n) }, 1},
		{KeyConnections, rl.Connections, bl.Connections, func(n int64) { p.Limits.Connections = int(n) }, 1},
	}
	for _, l := range ints {
		v, vf := pick(l.own, l.def, f, bf)
		if v == nil {
			continue
		}
		p.Locs[l.key] = vf.loc(l.key)
		if *v < l.min || *v > math.MaxInt32 {
			vf.errorf(l.key, "%s = %d: want a whole number from %d", l.key[len("limits."):], *v, l.min)
			continue
		}
		l.dst(*v)
	}
}

// envName is a variable name, or a prefix ending in * ("LC_*").
var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*\*?$`)

func applyRest(p *Profile, f, bf *file, raw, base *rawProfile) {
	p.EnvPass = []string{"PATH", "LANG", "TERM"}
	if v, vf := pick(raw.Env.Pass, base.Env.Pass, f, bf); v != nil {
		p.EnvPass = nil
		for _, n := range *v {
			if !envName.MatchString(n) {
				vf.errorf("env.pass", "%q is not an environment variable name", n)
				continue
			}
			p.EnvPass = append(p.EnvPass, n)
		}
	}
	applyNetworkMode(p, f, bf, raw, base)
	win, wf := pick(raw.Schedule.Windows, base.Schedule.Windows, f, bf)
	tz, tf := pick(raw.Schedule.Timezone, base.Schedule.Timezone, f, bf)
	if win != nil {
		p.Locs[KeyScheduleWindows] = wf.loc(KeyScheduleWindows)
		s := &Schedule{Loc: time.Local}
		if tz != nil {
			loc, err := time.LoadLocation(*tz)
			if err != nil {
				tf.errorf("schedule.timezone", "timezone %q: %v", *tz, err)
			}
			s.Loc = loc
		}
		if len(*win) == 0 {
			wf.errorf(KeyScheduleWindows, "windows is empty: that would deny every request (use security = \"deny\" for that)")
		}
		for _, w := range *win {
			pw, err := ParseWindow(w)
			if err != nil {
				wf.errorf(KeyScheduleWindows, "%v", err)
				continue
			}
			s.Windows = append(s.Windows, pw)
		}
		p.Schedule = s
	} else if tz != nil {
		tf.errorf("schedule.timezone", "timezone without windows")
	}
	p.Audit.Script = AuditScriptFull
	if v, vf := pick(raw.Audit.Script, base.Audit.Script, f, bf); v != nil {
		switch a := AuditScript(*v); a {
		case AuditScriptFull, AuditScriptSHA256:
			p.Audit.Script = a
		default:
			vf.errorf("audit.script", "script = %q: want full or sha256", *v)
		}
	}
}

// ParseSize reads a byte size: an integer, or a string such as "512MiB",
// "2GiB", "16M" (binary) or "1GB" (decimal).
func ParseSize(v any) (int64, error) {
	switch x := v.(type) {
	case int64:
		if x <= 0 {
			return 0, fmt.Errorf("%d: want a positive size", x)
		}
		return x, nil
	case string:
		s := strings.TrimSpace(x)
		i := 0
		for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
			i++
		}
		num, unit := s[:i], strings.TrimSpace(s[i:])
		n, err := strconv.ParseFloat(num, 64)
		if err != nil || num == "" {
			return 0, fmt.Errorf("%q: want a size like \"512MiB\" or \"2GiB\"", x)
		}
		mult, ok := sizeUnits[strings.ToLower(unit)]
		if !ok {
			return 0, fmt.Errorf("%q: unknown unit %q (use B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)", x, unit)
		}
		b := n * float64(mult)
		if b < 1 || b > math.MaxInt64/2 {
			return 0, fmt.Errorf("%q: out of range", x)
		}
		return int64(b), nil
	}
	return 0, fmt.Errorf("want a size like \"512MiB\" or a number of bytes")
}

var sizeUnits = map[string]int64{
	"": 1, "b": 1,
	"k": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mib": 1 << 20, "g": 1 << 30, "gib": 1 << 30, "t": 1 << 40, "tib": 1 << 40,
	"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
}

func applyNetworkMode(p *Profile, f, bf *file, raw, base *rawProfile) {
	p.Network = NetworkNone
	v, vf := pick(raw.Network.Mode, base.Network.Mode, f, bf)
	if v == nil {
		return
	}
	p.Locs[KeyNetworkMode] = vf.loc(KeyNetworkMode)
	switch m := NetworkMode(*v); m {
	case NetworkNone, NetworkProxy, NetworkHost:
		p.Network = m
	default:
		vf.errorf(KeyNetworkMode, "mode = %q: want none, proxy or host", *v)
	}
}

// applyConnect compiles the [[connect]] rules, defaults' first. With
// network.mode = "host" they would decide nothing, so they are an error
// there rather than a promise the daemon does not keep.
func applyConnect(p *Profile, f, bf *file, raw, base *rawProfile) {
	add := func(rf *file, rules []rawConnect) {
		for i, r := range rules {
			key := "connect." + strconv.Itoa(i)
			if r.Match == nil {
				rf.errorf(key, "[[connect]] without match (HOST:PORT)")
				continue
			}
			rule := ConnectRule{Match: *r.Match, Reason: r.Reason, Loc: rf.loc(key + ".match")}
			a, ok := rf.ruleAction(key, "connect rule", *r.Match, r.Action)
			if !ok {
				continue
			}
			rule.Action = a
			pat, err := CompileConnectPattern(*r.Match)
			if err != nil {
				rf.errorf(key+".match", "%v", err)
				continue
			}
			rule.Pattern = pat
			p.Connect = append(p.Connect, rule)
		}
	}
	add(bf, base.Connect)
	add(f, raw.Connect)
	if p.Network == NetworkHost && len(raw.Connect)+len(base.Connect) > 0 {
		f.errorf(firstSet(len(raw.Connect) > 0, "connect.0", KeyNetworkMode),
			"[[connect]] rules decide nothing with network.mode = \"host\" (the host's whole network): remove them or use another mode")
	}
}

// ruleAction checks a rule's action (kind is "rule" or "connect rule"),
// reporting a missing or unknown one at key.
func (rf *file) ruleAction(key, kind, match string, action *string) (Action, bool) {
	if action == nil {
		rf.errorf(key, "%s %q has no action (allow, ask or deny)", kind, match)
		return "", false
	}
	switch a := Action(*action); a {
	case Allow, Ask, Deny:
		return a, true
	}
	rf.errorf(key+".action", "action = %q: want allow, ask or deny", *action)
	return "", false
}

// applyChanges reads [changes]. mode and the caps are taken from the
// profile, else from [defaults.changes], key by key; protect lists add up
// (a profile cannot drop a site-wide protected path).
func applyChanges(p *Profile, f, bf *file, raw, base *rawProfile) {
	rc, bc := &raw.Changes, &base.Changes
	c := &p.Changes
	c.Mode = ChangesDirect
	if v, vf := pick(rc.Mode, bc.Mode, f, bf); v != nil {
		p.Locs[KeyChangesMode] = vf.loc(KeyChangesMode)
		switch m := ChangesMode(*v); m {
		case ChangesDirect, ChangesReview, ChangesDryRun:
			c.Mode = m
		default:
			vf.errorf(KeyChangesMode, "mode = %q: want direct, review or dry-run", *v)
		}
	}
	ints := []struct {
		key      string
		own, def *int64
		min      int64
		want     string
		dst      func(int)
	}{
		{KeyChangesMaxFiles, rc.MaxFiles, bc.MaxFiles, 1, "a whole number from 1", func(n int) { c.MaxFiles = n }},
		{KeyChangesMaxDeleted, rc.MaxDeleted, bc.MaxDeleted, 0, "a whole number from 0 (0: no deletion without review)",
			func(n int) { c.MaxDeleted, c.HasMaxDeleted = n, true }},
	}
	for _, l := range ints {
		v, vf := pick(l.own, l.def, f, bf)
		if v == nil {
			continue
		}
		p.Locs[l.key] = vf.loc(l.key)
		if *v < l.min || *v > math.MaxInt32 {
			vf.errorf(l.key, "%s = %d: want %s", l.key[len("changes."):], *v, l.want)
			continue
		}
		l.dst(int(*v))
	}
	if v, vf := rc.MaxBytes, f; v != nil || bc.MaxBytes != nil {
		if v == nil {
			v, vf = bc.MaxBytes, bf
		}
		p.Locs[KeyChangesMaxBytes] = vf.loc(KeyChangesMaxBytes)
		n, err := ParseSize(v)
		if err != nil {
			vf.errorf(KeyChangesMaxBytes, "max_bytes: %v", err)
		} else {
			c.MaxBytes = n
		}
	}
	// Compiled here with a stand-in home so Protected works on a parsed
	// profile; Resolve compiles again against the agent's home.
	home := "/nonexistent/home/of/" + p.Name
	for _, src := range []struct {
		f    *file
		pats []string
	}{{bf, bc.Protect}, {f, rc.Protect}} {
		if src.pats == nil {
			continue
		}
		p.Locs[KeyChangesProtect] = src.f.loc(KeyChangesProtect)
		for _, pat := range src.pats {
			if _, err := pathglob.NewSet([]string{pat}, home); err != nil {
				src.f.errorf(KeyChangesProtect, "protect: %v", err)
				continue
			}
			c.Protect.Patterns = append(c.Protect.Patterns, pat)
			c.Protect.Locs = append(c.Protect.Locs, src.f.loc(KeyChangesProtect))
		}
	}
	if set, err := pathglob.NewSet(c.Protect.Patterns, home); err == nil {
		c.Protect.Set = set
	}
}
