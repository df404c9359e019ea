//go:build linux

package changes

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"unicode/utf8"

	udiff "github.com/aymanbagabas/go-udiff"
	"golang.org/x/sys/unix"
)

// MaxDiffInput is the most of one side of one file Diff compares; a
// larger file is shown by size and hash.
const MaxDiffInput = 1 << 20

// Diff writes the changes of the given paths (relative or absolute; a
// directory selects what it holds; none selects all): a "diff a/P b/P"
// line, the mode, owner and type changes, then for text files a unified
// diff (created files against /dev/null, deleted ones to it), for binary
// files (a NUL byte in the first 8 KiB, or not UTF-8) "binary: SIZE bytes
// sha256 HASH -> ...", for symlinks "symlink: OLD -> NEW". Call it before
// the run is applied or discarded: it reads the upper layers.
func (s *Set) Diff(w io.Writer, paths ...string) error {
	trees := make([]*tree, len(s.Layers))
	defer func() {
		for _, t := range trees {
			if t != nil {
				t.close()
			}
		}
	}()
	for i := range s.Changes {
		c := &s.Changes[i]
		if !selected(c, paths) {
			continue
		}
		if trees[c.Layer] == nil {
			t, err := openTree(s.Layers[c.Layer])
			if err != nil {
				return fmt.Errorf("changes: diff: %w", err)
			}
			trees[c.Layer] = t
		}
		if err := s.diffOne(w, trees[c.Layer], c); err != nil {
			return fmt.Errorf("changes: diff %s: %w", c.Abs, err)
		}
	}
	return nil
}

func selected(c *Change, paths []string) bool {
	if len(paths) == 0 {
		return true
	}
	for _, p := range paths {
		p = strings.TrimSuffix(p, "/")
		if filepath.IsAbs(p) && within(c.Abs, p) || !filepath.IsAbs(p) && (p == "." || within(c.Path, p)) {
			return true
		}
	}
	return false
}

// side is one version of a path: absent, or a type and where to read it.
type side struct {
	typ    Type
	target string
	size   int64
	open   func() (io.ReadCloser, error)
}

func (s *Set) diffOne(w io.Writer, t *tree, c *Change) error {
	var hdr strings.Builder
	fmt.Fprintf(&hdr, "diff a/%s b/%s\n", c.Path, c.Path)
	header(&hdr, c)
	if _, err := io.WriteString(w, hdr.String()); err != nil {
		return err
	}
	oldS, newS := s.sides(t, c)
	switch {
	case oldS.typ == Symlink || newS.typ == Symlink:
		_, err := fmt.Fprintf(w, "symlink: %s -> %s\n", oldS.describeLink(), newS.describeLink())
		return err
	case c.Kind != Metadata && (oldS.typ == File || newS.typ == File): // another type reads as absent
		return contentDiff(w, c, oldS, newS)
	}
	return nil
}

// header writes what changed besides the content.
func header(b *strings.Builder, c *Change) {
	switch c.Kind {
	case Created:
		fmt.Fprintf(b, "new %s mode %04o owner %d:%d\n", c.Type, c.Mode, c.UID, c.GID)
	case Deleted:
		fmt.Fprintf(b, "deleted %s mode %04o owner %d:%d\n", c.OldType, c.OldMode, c.OldUID, c.OldGID)
	default:
		if c.OldType != c.Type {
			fmt.Fprintf(b, "old type %s\nnew type %s\n", c.OldType, c.Type)
		}
		if c.Kind == Replaced && c.OldType == Dir && c.Type == Dir {
			b.WriteString("replaced directory: what it held is deleted\n")
		}
		if c.OldMode != c.Mode {
			fmt.Fprintf(b, "old mode %04o\nnew mode %04o\n", c.OldMode, c.Mode)
		}
		if c.OldUID != c.UID || c.OldGID != c.GID {
			fmt.Fprintf(b, "old owner %d:%d\nnew owner %d:%d\n", c.OldUID, c.OldGID, c.UID, c.GID)
		}
		if c.Xattrs {
			b.WriteString("extended attributes differ\n")
		}
	}
}

func (s *Set) sides(t *tree, c *Change) (oldS, newS side) {
	if c.Kind != Created {
		oldS = side{typ: c.OldType, target: c.OldTgt, size: c.OldSize,
			open: func() (io.ReadCloser, error) { return t.openFile(c.Path) }}
	}
	if c.Kind != Deleted {
		up := filepath.Join(s.Layers[c.Layer].Upper, c.Path)
		newS = side{typ: c.Type, target: c.Target, size: c.Size,
			open: func() (io.ReadCloser, error) { return os.OpenFile(up, os.O_RDONLY|unix.O_NOFOLLOW, 0) }}
	}
	return oldS, newS
}

func (sd side) describeLink() string {
	switch sd.typ {
	case "":
		return "/dev/null"
	case Symlink:
		return sd.target
	}
	return "(" + string(sd.typ) + ")"
}

// content is one side read for a diff: text (up to MaxDiffInput) or a
// size and hash.
type content struct {
	present bool
	text    string
	binary  bool
	large   bool
	size    int64
	sum     string
}

func readSide(sd side) (content, error) {
	if sd.typ != File {
		return content{}, nil
	}
	f, err := sd.open()
	if err != nil {
		return content{}, err
	}
	defer f.Close()
	h := sha256.New()
	head, err := io.ReadAll(io.LimitReader(f, MaxDiffInput+1))
	if err != nil {
		return content{}, err
	}
	h.Write(head)
	n, err := io.Copy(h, f)
	if err != nil {
		return content{}, err
	}
	c := content{present: true, size: int64(len(head)) + n, sum: hex.EncodeToString(h.Sum(nil))}
	c.large = c.size > MaxDiffInput
	c.binary = bytes.IndexByte(head[:min(len(head), 8<<10)], 0) >= 0 || !c.large && !utf8.Valid(head)
	if !c.large && !c.binary {
		c.text = string(head)
	}
	return c, nil
}

func (c content) describe() string {
	if !c.present {
		return "/dev/null"
	}
	return fmt.Sprintf("%d bytes sha256 %s", c.size, c.sum)
}

func contentDiff(w io.Writer, c *Change, oldS, newS side) error {
	oldC, err := readSide(oldS)
	if err != nil {
		return err
	}
	newC, err := readSide(newS)
	if err != nil {
		return err
	}
	switch {
	case oldC.large || newC.large:
		_, err = fmt.Fprintf(w, "diff too large (over %s): %s -> %s\n", FormatBytes(MaxDiffInput), oldC.describe(), newC.describe())
		return err
	case oldC.binary || newC.binary:
		_, err = fmt.Fprintf(w, "binary: %s -> %s\n", oldC.describe(), newC.describe())
		return err
	}
	oldL, newL := "a/"+c.Path, "b/"+c.Path
	if !oldC.present {
		oldL = "/dev/null"
	}
	if !newC.present {
		newL = "/dev/null"
	}
	u, err := udiff.ToUnified(oldL, newL, oldC.text, udiff.Lines(oldC.text, newC.text), udiff.DefaultContextLines)
	if err != nil {
		return err
	}
	_, err = io.WriteString(w, u)
	return err
}
