package shellparse

import (
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// lookCache keeps lookups for a short while: the decision path resolves the
// same few programs again and again, and a stale answer is harmless because
// the kernel-side exec check resolves the real path again.
// It is bounded: names come from agents.
var (
	lookMu    sync.Mutex
	lookCache = map[string]lookEntry{}
)

const lookMax = 4096

type lookEntry struct {
	prog Program
	at   time.Time
}

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

const lookTTL = 2 * time.Second

// LookPath resolves name as the shell would: a PATH search for bare names,
// relative to dir otherwise.
func LookPath(name, dir, path string) Program {
	if name == "" || strings.ContainsRune(name, 0) {
		return Program{}
	}
	key := name + "\x00" + path
	if strings.Contains(name, "/") || strings.Contains(":"+path+":", "::") || strings.Contains(":"+path+":", ":.") {
		key += "\x00" + dir
	}
	lookMu.Lock()
	e, ok := lookCache[key]
	lookMu.Unlock()
	if ok && time.Since(e.at) < lookTTL {
		return e.prog
	}
	r := lookPath(name, dir, path)
	lookMu.Lock()
	if len(lookCache) >= lookMax {
		clear(lookCache)
	}
	lookCache[key] = lookEntry{prog: r, at: time.Now()}
	lookMu.Unlock()
	return r
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
