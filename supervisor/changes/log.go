package changes

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// On-disk names.
const (
	changesDir   = "changes"           // <stateDir>/changes/<run>/
	rootDirName  = ".execgate-changes" // <mount root>/.execgate-changes/<run>/
	manifestName = "manifest.json"     // in the run's directory (and, as the owner's mark, in a root's run directory)
	logName      = "apply.log"         // the apply's intent log, in the run's directory
	besidePrefix = ".execgate-"        // copy mode: <dir>/.execgate-<run>-<n>.new, .old
	upperName    = "upper"             // <layer dir>/<n>-upper
	workName     = "work"              // <layer dir>/<n>-work
	backupName   = "backup"            // <layer dir>/<n>-backup/<op>
	manifestV    = 1
)

var runIDRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

func checkID(id string) error {
	if !runIDRe.MatchString(id) {
		return fmt.Errorf("changes: run id %q: want 1 to 128 of [A-Za-z0-9._-], not starting with a dot or dash", id)
	}
	return nil
}

// manifest is what Recover needs to find and clean a run.
type manifest struct {
	Version  int       `json:"version"`
	Run      string    `json:"run"`
	StateDir string    `json:"state_dir"`
	Created  time.Time `json:"created"`
	Layers   []Layer   `json:"layers"`
}

func parseManifest(b []byte) (*manifest, error) {
	var m manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	if m.Version != manifestV {
		return nil, fmt.Errorf("manifest: version %d, want %d", m.Version, manifestV)
	}
	if err := checkID(m.Run); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	for i, l := range m.Layers {
		for _, p := range []string{l.Lower, l.Upper, l.Work, l.Dir} {
			if !cleanAbs(p) {
				return nil, fmt.Errorf("manifest: layer %d: %q is not a clean absolute path", i, p)
			}
		}
		if filepath.Dir(l.Upper) != l.Dir || filepath.Dir(l.Work) != l.Dir || !strings.HasSuffix(l.Upper, "-"+upperName) {
			return nil, fmt.Errorf("manifest: layer %d: upper and work are not in %s", i, l.Dir)
		}
	}
	return &m, nil
}

func cleanAbs(p string) bool { return filepath.IsAbs(p) && filepath.Clean(p) == p && p != "/" }

func cleanRel(p string) bool {
	return p == "." || (p != "" && !filepath.IsAbs(p) && filepath.Clean(p) == p && p != ".." && !strings.HasPrefix(p, "../"))
}

// op is one step of an apply. New and Backup are absolute paths in the
// run's own directories, or with Beside (copy mode) names in Rel's parent.
type op struct {
	Op      string `json:"op"` // opSwap, opDelete or opAttr
	Layer   int    `json:"layer"`
	Rel     string `json:"rel"`
	OldType Type   `json:"old_type,omitempty"` // empty: nothing was there
	New     string `json:"new,omitempty"`      // swap: the entry that moves in
	Src     string `json:"src,omitempty"`      // copy mode: the upper entry New is copied from
	Backup  string `json:"backup,omitempty"`   // swap, delete: where the old entry goes
	Beside  bool   `json:"beside,omitempty"`
	Mode    uint32 `json:"mode,omitempty"` // attr
	UID     uint32 `json:"uid,omitempty"`
	GID     uint32 `json:"gid,omitempty"`
	OldMode uint32 `json:"old_mode,omitempty"`
	OldUID  uint32 `json:"old_uid,omitempty"`
	OldGID  uint32 `json:"old_gid,omitempty"`
	// NewIno identifies New once it moved in (same-fs layers; copy mode
	// has it from the staged record).
	NewIno uint64 `json:"new_ino,omitempty"`
}

const (
	opSwap   = "swap"   // the old entry (if any) to Backup, then New in
	opDelete = "delete" // the old entry to Backup
	opAttr   = "attr"   // mode and owner in place
)

func (o *op) valid() error {
	switch {
	case o.Op != opSwap && o.Op != opDelete && o.Op != opAttr:
		return fmt.Errorf("unknown op %q", o.Op)
	case o.Layer < 0 || !cleanRel(o.Rel):
		return fmt.Errorf("bad path %d:%q", o.Layer, o.Rel)
	case o.Op == opSwap && o.New == "", o.Op == opDelete && o.Backup == "":
		return fmt.Errorf("%s %s: missing paths", o.Op, o.Rel)
	case o.Rel == "." && o.Op != opAttr:
		return fmt.Errorf("%s of the workdir itself", o.Op)
	}
	for _, p := range []string{o.New, o.Backup} {
		if p == "" {
			continue
		}
		if o.Beside && (strings.ContainsRune(p, '/') || !strings.HasPrefix(p, besidePrefix)) {
			return fmt.Errorf("%s %s: bad name %q", o.Op, o.Rel, p)
		}
		if !o.Beside && !cleanAbs(p) {
			return fmt.Errorf("%s %s: bad path %q", o.Op, o.Rel, p)
		}
	}
	if o.Src != "" && !cleanAbs(o.Src) {
		return fmt.Errorf("%s %s: bad source %q", o.Op, o.Rel, o.Src)
	}
	return nil
}

// The intent log: a header line, one line per op and an end line,
// synced together before the real tree is touched; then, appended, a
// done line every 256 ops and after the last (not synced, progress for
// the report only: recovery reads the tree itself), a synced staged line once copy mode's copies are made, and a synced committed
// line once every op is done and durable.
type logHeader struct {
	V   int    `json:"v"`
	Run string `json:"run"`
	Ops int    `json:"ops"`
}

type logRecord struct {
	End       bool     `json:"end,omitempty"`
	Done      *int     `json:"done,omitempty"`
	Staged    bool     `json:"staged,omitempty"`
	Inos      []uint64 `json:"inos,omitempty"` // with Staged: the copies' inode numbers, per op
	Committed bool     `json:"committed,omitempty"`
}

// applyLog is a parsed intent log. Without Complete no op ran.
type applyLog struct {
	Run       string
	Ops       []op
	Complete  bool
	Done      int // ops recorded done
	Staged    bool
	Committed bool
}

func encodeIntent(run string, ops []op) []byte {
	var b bytes.Buffer
	line := func(v any) {
		j, _ := json.Marshal(v) // plain structs: cannot fail
		b.Write(j)
		b.WriteByte('\n')
	}
	line(logHeader{V: manifestV, Run: run, Ops: len(ops)})
	for i := range ops {
		line(&ops[i])
	}
	line(logRecord{End: true})
	return b.Bytes()
}

func encodeRecord(r logRecord) []byte {
	j, _ := json.Marshal(r)
	return append(j, '\n')
}

// parseLog reads an intent log. A torn or garbled intent is an apply
// that never started (the intent is synced before the first op); a torn
// record at the end is a crash while appending it.
func parseLog(b []byte) (*applyLog, error) {
	lines := bytes.Split(b, []byte("\n"))
	var h logHeader
	if err := strictUnmarshal(lines[0], &h); err != nil || h.V != manifestV || h.Ops < 0 || h.Ops > len(lines) {
		return &applyLog{}, nil
	}
	if err := checkID(h.Run); err != nil {
		return nil, fmt.Errorf("apply log: %w", err)
	}
	lg := &applyLog{Run: h.Run}
	if len(lines) < h.Ops+2 {
		return lg, nil
	}
	ops := make([]op, h.Ops)
	for i := range ops {
		if err := strictUnmarshal(lines[1+i], &ops[i]); err != nil {
			return lg, nil
		}
		if err := ops[i].valid(); err != nil {
			return nil, fmt.Errorf("apply log: op %d: %w", i, err)
		}
	}
	var end logRecord
	if strictUnmarshal(lines[1+h.Ops], &end) != nil || !end.End {
		return lg, nil
	}
	lg.Ops, lg.Complete = ops, true
	lg.records(lines[2+h.Ops:])
	return lg, nil
}

// records reads the lines after the intent, up to a torn one.
func (lg *applyLog) records(lines [][]byte) {
	for _, l := range lines {
		var r logRecord
		if strictUnmarshal(l, &r) != nil {
			return
		}
		switch {
		case r.Done != nil && *r.Done >= 0 && *r.Done < len(lg.Ops):
			lg.Done = max(lg.Done, *r.Done+1)
		case r.Staged && len(r.Inos) == len(lg.Ops):
			lg.Staged = true
			for i, ino := range r.Inos {
				if lg.Ops[i].Src != "" {
					lg.Ops[i].NewIno = ino
				}
			}
		case r.Committed:
			lg.Committed = true
		}
	}
}

func strictUnmarshal(b []byte, v any) error {
	if len(b) == 0 {
		return errors.New("empty line")
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return err
	}
	if d.More() {
		return errors.New("trailing data")
	}
	return nil
}

// mountEntry is one line of /proc/self/mountinfo.
type mountEntry struct {
	ID     uint64
	Point  string
	FSType string
}

// parseMountinfo reads proc(5)'s mountinfo format, skipping lines it
// cannot read.
func parseMountinfo(b []byte) []mountEntry {
	var out []mountEntry
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		sep := -1
		for i := 6; i < len(f); i++ {
			if f[i] == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || sep+1 >= len(f) {
			continue
		}
		id, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			continue
		}
		out = append(out, mountEntry{ID: id, Point: unescapeOctal(f[4]), FSType: f[sep+1]})
	}
	return out
}

// unescapeOctal undoes the kernel's \NNN escapes of space, tab, newline
// and backslash.
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// within says whether p is dir or lies under it.
func within(p, dir string) bool {
	return p == dir || dir == "/" || strings.HasPrefix(p, dir+"/")
}
