package supervisor

import (
	"crypto/sha256"
	"io"
	"os"
	"path"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/execgate/execgate/profiles"
	"github.com/execgate/execgate/shellparse"
)

// binIndex knows, by content, the programs that deny and ask rules name,
// so that a copy under another name (cp /usr/bin/git ./g) is still that
// program. Sizes are compared first: a file is hashed only when its size
// is one of theirs, and each version of a file once.
//
// A version is told apart by what fstat says of the descriptor the file
// is hashed from: device, inode, size and ctime. Unlike mtime, ctime
// cannot be set back (touch -r, utimensat): every write and every change
// of the times moves it. It moves in clock ticks, though, so a file whose
// ctime is recent (within settle) is hashed every time and not cached: a
// second write in the same tick would keep its ctime.
type binIndex struct {
	bySize map[int64][]binID
	settle time.Duration

	mu    sync.Mutex
	cache map[fileKey][]string
}

type binID struct {
	name string
	sum  [sha256.Size]byte
}

type fileKey struct {
	dev, ino uint64
	size     int64
	ctime    unix.Timespec
}

func keyOf(st *unix.Stat_t) fileKey {
	return fileKey{dev: st.Dev, ino: st.Ino, size: st.Size, ctime: st.Ctim}
}

// maxHashed bounds what is read to compare a file.
const maxHashed = 512 << 20

// settleTime is how old a ctime must be for the version to be cached:
// far more than a clock tick.
const settleTime = 2 * time.Second

func newBinIndex(ps map[string]*profiles.Profile) *binIndex {
	ix := &binIndex{bySize: map[int64][]binID{}, settle: settleTime, cache: map[fileKey][]string{}}
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

// closeRead closes a file only read, and closeFd a descriptor only read
// or held (O_PATH): a failed close loses nothing.
func closeRead(f *os.File) { _ = f.Close() }
func closeFd(fd int)       { _ = unix.Close(fd) }

func hashFile(p string) ([sha256.Size]byte, int64, bool) {
	var sum [sha256.Size]byte
	f, err := os.Open(p)
	if err != nil {
		return sum, 0, false
	}
	defer closeRead(f)
	var st unix.Stat_t
	if unix.Fstat(int(f.Fd()), &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size > maxHashed {
		return sum, 0, false
	}
	sum, ok := hashFd(f, st.Size)
	return sum, st.Size, ok
}

// hashFd hashes an open file of the given size; a file that turns out
// longer or shorter is not that version.
func hashFd(f *os.File, size int64) ([sha256.Size]byte, bool) {
	var sum [sha256.Size]byte
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(f, size+1))
	if err != nil || n != size {
		return sum, false
	}
	copy(sum[:], h.Sum(nil))
	return sum, true
}

// identify returns the name of the known program whose content the file
// resolved for pid has, or "" (also when the file already has that name).
// The file is opened inside the caller's own root (RESOLVE_IN_ROOT), so a
// copy in the run's private /tmp is found too.
func (ix *binIndex) identify(pid int, resolved string) string {
	if ix == nil || len(ix.bySize) == 0 || resolved == "" {
		return ""
	}
	root, err := unix.Open("/proc/"+strconv.Itoa(pid)+"/root", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return ""
	}
	defer closeFd(root)
	how := unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS}
	fd, err := unix.Openat2(root, resolved, &how)
	if err != nil {
		return ""
	}
	defer closeFd(fd)
	return pick(ix.matchFd(fd), path.Base(resolved))
}

// identifyFile is identify for a file the daemon names itself: p is
// opened as the daemon sees it, following links, magic ones too. With
// p = "/proc/PID/exe" it is the image PID runs. A name equal to base does
// not count (base "" counts every name).
func (ix *binIndex) identifyFile(p, base string) string {
	if ix == nil || len(ix.bySize) == 0 || p == "" {
		return ""
	}
	fd, err := unix.Open(p, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return ""
	}
	defer closeFd(fd)
	return pick(ix.matchFd(fd), base)
}

// identifyPath returns the name of the known program whose content the
// file at p has, even when p has that name: identifyFile(p, "").
func (ix *binIndex) identifyPath(p string) string { return ix.identifyFile(p, "") }

func pick(names []string, base string) string {
	name := ""
	for _, n := range names {
		if n != base {
			name = n
		}
	}
	return name
}

// matchFd returns the names of the known programs with the content of the
// file that fd (an O_PATH descriptor) is. What is hashed is that file,
// reopened through the descriptor: no name is looked up twice.
func (ix *binIndex) matchFd(fd int) []string {
	now := time.Now()
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil
	}
	cands := ix.bySize[st.Size]
	if len(cands) == 0 {
		return nil
	}
	key := keyOf(&st)
	ix.mu.Lock()
	names, ok := ix.cache[key]
	ix.mu.Unlock()
	if ok {
		return names
	}
	// A regular file (checked above, on this very inode): opening it has
	// no side effect. It is not O_NONBLOCK: a lease the caller holds on
	// its copy delays the open until the kernel breaks the lease, where
	// O_NONBLOCK would fail it and let the copy go unrecognised.
	f, err := os.OpenFile("/proc/self/fd/"+strconv.Itoa(fd), os.O_RDONLY|unix.O_NOCTTY, 0)
	if err != nil {
		return nil
	}
	defer closeRead(f)
	// What is compared is the content read, whatever the times did
	// meanwhile (a caller touching the file cannot hide a copy); the
	// times only decide whether the answer is cached.
	sum, ok := hashFd(f, st.Size)
	if !ok {
		return nil
	}
	for _, c := range cands {
		if c.sum == sum {
			names = append(names, c.name)
		}
	}
	ix.cacheIfSettled(f, &st, names, now)
	return names
}

// cacheIfSettled caches the names of the version st says f had, only when
// it did not change while it was read and its ctime is old enough that no
// later write can share it.
func (ix *binIndex) cacheIfSettled(f *os.File, st *unix.Stat_t, names []string, now time.Time) {
	key := keyOf(st)
	ctime := time.Unix(st.Ctim.Unix())
	var fst unix.Stat_t
	if unix.Fstat(int(f.Fd()), &fst) != nil || keyOf(&fst) != key || !ctime.Before(now.Add(-ix.settle)) {
		return
	}
	ix.mu.Lock()
	if len(ix.cache) > 4096 {
		clear(ix.cache)
	}
	ix.cache[key] = names
	ix.mu.Unlock()
}
