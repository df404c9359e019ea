package shellparse

import (
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Program is a resolved program.
type Program struct {
	// Path is the real path, symlinks resolved; "" when not found.
	Path string
	// Alias is the name the program was found under when that differs from
	// the real file's name and the link sits in a directory only root can
	// write (/usr/bin/npm -> npm-cli.js, /usr/bin/python3 -> python3.11).
	// Allow rules may match it; a link the agent made itself never counts.
	Alias string
}

// LookPath resolves name as the shell would: a PATH search for bare names,
// relative to dir otherwise. It asks the file system every time; a caller
// that resolves the same names again and again holds a Resolver.
func LookPath(name, dir, path string) Program {
	if name == "" || strings.ContainsRune(name, 0) {
		return Program{}
	}
	return lookPath(name, dir, path)
}

// DefaultLookTTL is how long a Resolver keeps an answer unless told.
const DefaultLookTTL = 2 * time.Second

// resolverMax bounds a Resolver's cache: names come from agents.
const resolverMax = 4096

// Resolver is LookPath with a short-lived cache, for the decision path,
// which resolves the same few programs again and again. A stale answer is
// harmless there because the kernel-side exec check resolves the real path
// again. Its user owns it (the daemon's registry, one policy caller); the
// zero value is ready to use, with DefaultLookTTL and the real clock. It
// is safe for concurrent use.
type Resolver struct {
	// TTL is how long an answer is kept: DefaultLookTTL when 0, no caching
	// when negative.
	TTL time.Duration
	// Now is the clock (time.Now when nil).
	Now func() time.Time

	mu    sync.Mutex
	cache map[string]lookEntry
}

type lookEntry struct {
	prog Program
	at   time.Time
}

// NewResolver returns a Resolver that keeps answers for ttl, reading the
// time from now (nil: time.Now).
func NewResolver(ttl time.Duration, now func() time.Time) *Resolver {
	return &Resolver{TTL: ttl, Now: now}
}

// LookPath is the package's LookPath, answered from the cache while an
// answer is younger than the TTL. Pass it as Options.LookPath.
func (r *Resolver) LookPath(name, dir, path string) Program {
	if name == "" || strings.ContainsRune(name, 0) {
		return Program{}
	}
	ttl := r.TTL
	if ttl == 0 {
		ttl = DefaultLookTTL
	}
	if ttl < 0 {
		return lookPath(name, dir, path)
	}
	now := time.Now
	if r.Now != nil {
		now = r.Now
	}
	key := name + "\x00" + path
	if strings.Contains(name, "/") || strings.Contains(":"+path+":", "::") || strings.Contains(":"+path+":", ":.") {
		key += "\x00" + dir
	}
	r.mu.Lock()
	e, ok := r.cache[key]
	r.mu.Unlock()
	if ok && now().Sub(e.at) < ttl {
		return e.prog
	}
	prog := lookPath(name, dir, path)
	r.mu.Lock()
	if r.cache == nil || len(r.cache) >= resolverMax {
		r.cache = map[string]lookEntry{}
	}
	r.cache[key] = lookEntry{prog: prog, at: now()}
	r.mu.Unlock()
	return prog
}

func lookPath(name, dir, path string) Program {
	try := func(p string) Program {
		if !filepath.IsAbs(p) {
			if dir == "" {
				return Program{}
			}
			p = filepath.Join(dir, p)
		}
		if !isExec(p) {
			return Program{}
		}
		real, err := filepath.EvalSymlinks(p)
		if err != nil {
			return Program{}
		}
		r := Program{Path: real}
		if b := filepath.Base(p); b != filepath.Base(real) && rootOnlyDir(filepath.Dir(p)) {
			r.Alias = b
		}
		return r
	}
	if strings.Contains(name, "/") {
		return try(name)
	}
	for _, d := range filepath.SplitList(path) {
		if d == "" {
			d = "."
		}
		if r := try(filepath.Join(d, name)); r.Path != "" {
			return r
		}
	}
	return Program{}
}
