package supervisor

import (
	"crypto/sha256"
	"io"
	"os"
	"path"
	"strconv"
	"sync"
	"syscall"

	"github.com/execgate/execgate/profiles"
	"github.com/execgate/execgate/shellparse"
)

// binIndex knows, by content, the programs that deny and ask rules name,
// so that a copy under another name (cp /usr/bin/git ./g) is still that
// program. Sizes are compared first: a file is hashed only when its size
// is one of theirs, and each file once (by device, inode and mtime).
type binIndex struct {
	bySize map[int64][]binID

	mu    sync.Mutex
	cache map[fileKey]string
}

type binID struct {
	name string
	sum  [sha256.Size]byte
}

type fileKey struct {
	dev, ino     uint64
	size, mtimeN int64
}

// maxHashed bounds what is read to compare a file.
const maxHashed = 512 << 20

func newBinIndex(ps map[string]*profiles.Profile) *binIndex {
	ix := &binIndex{bySize: map[int64][]binID{}, cache: map[fileKey]string{}}
	seen := map[string]bool{}
	for _, p := range ps {
		for _, r := range p.Rules {
			if r.Action == profiles.Allow {
				continue
			}
			for _, name := range r.Pattern.Programs() {
				if seen[name] {
					continue
				}
				seen[name] = true
				prog := shellparse.LookPath(name, "/", shellparse.DefaultPath)
				if prog.Path == "" {
					continue
				}
				if sum, size, ok := hashFile(prog.Path); ok {
					ix.bySize[size] = append(ix.bySize[size], binID{name: name, sum: sum})
				}
			}
		}
	}
	return ix
}

func hashFile(p string) ([sha256.Size]byte, int64, bool) {
	var sum [sha256.Size]byte
	f, err := os.Open(p)
	if err != nil {
		return sum, 0, false
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() || st.Size() > maxHashed {
		return sum, 0, false
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return sum, 0, false
	}
	copy(sum[:], h.Sum(nil))
	return sum, st.Size(), true
}

// identify returns the name of the known program whose content the file
// resolved for pid has, or "". The file is read through the caller's own
// root, so a copy in the run's private /tmp is found too.
func (ix *binIndex) identify(pid int, resolved string) string {
	if ix == nil || len(ix.bySize) == 0 || resolved == "" {
		return ""
	}
	p := "/proc/" + strconv.Itoa(pid) + "/root" + resolved
	st, err := os.Stat(p)
	if err != nil {
		return ""
	}
	cands := ix.bySize[st.Size()]
	if len(cands) == 0 {
		return ""
	}
	sys, _ := st.Sys().(*syscall.Stat_t)
	var key fileKey
	if sys != nil {
		key = fileKey{dev: sys.Dev, ino: sys.Ino, size: st.Size(), mtimeN: st.ModTime().UnixNano()}
		ix.mu.Lock()
		name, ok := ix.cache[key]
		ix.mu.Unlock()
		if ok {
			return name
		}
	}
	sum, _, ok := hashFile(p)
	name := ""
	if ok {
		for _, c := range cands {
			if c.sum == sum && c.name != path.Base(resolved) {
				name = c.name
			}
		}
	}
	if sys != nil {
		ix.mu.Lock()
		if len(ix.cache) > 4096 {
			clear(ix.cache)
		}
		ix.cache[key] = name
		ix.mu.Unlock()
	}
	return name
}
