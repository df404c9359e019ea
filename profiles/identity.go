package profiles

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/execgate/execgate/pathglob"
)

// ErrUnknownAccount means the profile's user or uid has no account on this
// host. `execgate check` and `lint` report it as a warning; the daemon cannot
// match such a profile to any caller.
var ErrUnknownAccount = errors.New("no such account on this host")

// Identity is an agent's account.
type Identity struct {
	UID, GID uint32
	Groups   []uint32 // every group of the account, for the write check
	User     string
	Home     string
}

// Accounts finds an agent's account: by name, or by uid when name is "".
// An account that does not exist is an error wrapping ErrUnknownAccount.
// HostAccounts asks this host; tests give FixedAccounts, so that what they
// decide does not depend on the accounts of the machine they run on.
type Accounts func(name string, uid int64) (*Identity, error)

// FixedAccounts is an account database given in full: it knows exactly
// ids, and, like HostAccounts, takes a bare uid that has no entry as a
// service identity of its own (its own group, no home).
func FixedAccounts(ids ...Identity) Accounts {
	return func(name string, uid int64) (*Identity, error) {
		for _, id := range ids {
			if name != "" && id.User == name || name == "" && int64(id.UID) == uid {
				c := id
				c.Groups = slices.Clone(id.Groups)
				if len(c.Groups) == 0 {
					c.Groups = []uint32{id.GID}
				}
				return &c, nil
			}
		}
		if name == "" {
			return bareUID(uid), nil
		}
		return nil, fmt.Errorf("account %s: %w", name, ErrUnknownAccount)
	}
}

// Resolve is ResolveWith(HostAccounts).
func (p *Profile) Resolve() (*Identity, error) { return p.ResolveWith(nil) }

// ResolveWith looks up the profile's account in acc (nil: HostAccounts),
// fills UID and Home, and compiles the [files] patterns against that home.
// On ErrUnknownAccount the patterns are still compiled (with a home that
// matches nothing) so the profile stays usable for checks.
func (p *Profile) ResolveWith(acc Accounts) (*Identity, error) {
	if acc == nil {
		acc = HostAccounts
	}
	id, err := acc(p.User, p.UID)
	// Without a known home, ~ stands for a path that matches nothing real
	// but still lets checks see that ~/.ssh/x is under ~/.ssh.
	home := "/nonexistent/home/of/" + p.Name
	if err == nil {
		p.UID, p.GID = int64(id.UID), int64(id.GID)
		p.User = id.User
		if id.Home != "" && filepath.IsAbs(id.Home) {
			home = id.Home
		}
	}
	p.Home = home
	var cerr error
	if p.DenyRead.Set, cerr = pathglob.NewSet(p.DenyRead.Patterns, home); cerr != nil {
		return nil, &Error{Loc: Loc{File: p.File}, Msg: "deny_read: " + cerr.Error()}
	}
	if p.ReadOnly.Set, cerr = pathglob.NewSet(p.ReadOnly.Patterns, home); cerr != nil {
		return nil, &Error{Loc: Loc{File: p.File}, Msg: "read_only: " + cerr.Error()}
	}
	if p.Changes.Protect.Set, cerr = pathglob.NewSet(p.Changes.Protect.Patterns, home); cerr != nil {
		return nil, &Error{Loc: Loc{File: p.File}, Msg: "changes.protect: " + cerr.Error()}
	}
	if err != nil {
		return nil, err
	}
	if id.UID == 0 {
		return nil, &Error{Loc: Loc{File: p.File}, Msg: "an agent may not run as root: give it its own account"}
	}
	return id, nil
}

// HostAccounts looks accounts up on this host, with os/user (the passwd
// and group databases through NSS).
func HostAccounts(name string, uid int64) (*Identity, error) {
	var u *user.User
	var err error
	if name != "" {
		u, err = user.Lookup(name)
	} else {
		u, err = user.LookupId(strconv.FormatInt(uid, 10))
		if errors.As(err, new(user.UnknownUserIdError)) {
			return bareUID(uid), nil
		}
	}
	if err != nil {
		who := name
		if who == "" {
			who = "uid " + strconv.FormatInt(uid, 10)
		}
		return nil, fmt.Errorf("account %s: %w", who, ErrUnknownAccount)
	}
	id := &Identity{User: u.Username, Home: u.HomeDir}
	n, _ := strconv.ParseUint(u.Uid, 10, 32)
	g, _ := strconv.ParseUint(u.Gid, 10, 32)
	id.UID, id.GID = uint32(n), uint32(g)
	gids, _ := u.GroupIds()
	seen := map[uint32]bool{}
	for _, s := range append(gids, u.Gid) {
		if v, err := strconv.ParseUint(s, 10, 32); err == nil && !seen[uint32(v)] {
			seen[uint32(v)] = true
			id.Groups = append(id.Groups, uint32(v))
		}
	}
	sort.Slice(id.Groups, func(i, j int) bool { return id.Groups[i] < id.Groups[j] })
	return id, nil
}

// bareUID is a uid with no passwd entry: a legitimate service identity,
// with its own group and no home.
func bareUID(uid int64) *Identity {
	return &Identity{UID: uint32(uid), GID: uint32(uid), Groups: []uint32{uint32(uid)}}
}

// CheckNotWritable refuses a policy file that the agent could change: the
// file itself, or any directory above it that lets the agent replace it.
func CheckNotWritable(name string, id *Identity) error {
	abs, err := filepath.Abs(name)
	if err != nil {
		return err
	}
	if w, why := writableBy(abs, id, false); w {
		return fmt.Errorf("%s is writable by agent uid %d (%s): the agent could rewrite its own policy; chown it to root and chmod go-w", name, id.UID, why)
	}
	for dir := filepath.Dir(abs); ; dir = filepath.Dir(dir) {
		if w, why := writableBy(dir, id, true); w {
			return fmt.Errorf("%s: directory %s is writable by agent uid %d (%s): the agent could replace its own policy", name, dir, id.UID, why)
		}
		if dir == "/" {
			return nil
		}
	}
}

// writableBy reports whether id may modify (or, for a directory, replace
// entries in) path, ignoring capabilities it does not have.
func writableBy(path string, id *Identity, dir bool) (bool, string) {
	st, err := statOwner(path)
	if err != nil {
		return false, ""
	}
	if st.uid == id.UID {
		return true, "owned by the agent"
	}
	// A sticky directory only lets the agent replace its own entries.
	if dir && st.mode&os.ModeSticky != 0 {
		return false, ""
	}
	if st.mode.Perm()&0o002 != 0 {
		return true, "world-writable"
	}
	if st.mode.Perm()&0o020 != 0 {
		for _, g := range id.Groups {
			if g == st.gid {
				return true, "group-writable by group " + strconv.FormatUint(uint64(g), 10)
			}
		}
	}
	return false, ""
}

// Loader loads profiles and resolves their accounts in Accounts. The zero
// value uses the host's accounts, as LoadFile and LoadDir do.
type Loader struct {
	Accounts Accounts // nil: HostAccounts
}

// LoadDir is Loader{}.LoadDir: with the host's accounts.
func LoadDir(dir string, d *Defaults) (map[string]*Profile, map[string]error) {
	return Loader{}.LoadDir(dir, d)
}

// LoadFile is Loader{}.LoadFile: with the host's accounts.
func LoadFile(name string, d *Defaults) (*Profile, error) { return Loader{}.LoadFile(name, d) }

// LoadDir loads every NAME.toml in dir. Profiles that fail keep failing alone:
// the good ones are returned, and the errors of the bad keyed by agent name
// (key "" for the directory itself).
func (l Loader) LoadDir(dir string, d *Defaults) (map[string]*Profile, map[string]error) {
	errs := map[string]error{}
	ents, err := os.ReadDir(dir)
	if err != nil {
		errs[""] = fmt.Errorf("read agents dir: %w", err)
		return nil, errs
	}
	out := map[string]*Profile{}
	for _, e := range ents {
		n := e.Name()
		if e.IsDir() || !strings.HasSuffix(n, ".toml") || strings.HasPrefix(n, ".") {
			continue
		}
		p, err := l.LoadFile(filepath.Join(dir, n), d)
		if err != nil {
			errs[strings.TrimSuffix(n, ".toml")] = err
			continue
		}
		out[p.Name] = p
	}
	return out, errs
}

// LoadFile reads, validates and resolves one profile, and refuses it when
// its own agent can write it. An unknown account is returned as a profile
// plus an error wrapping ErrUnknownAccount.
func (l Loader) LoadFile(name string, d *Defaults) (*Profile, error) {
	data, err := readFile(name)
	if err != nil {
		return nil, fmt.Errorf("read profile: %w", err)
	}
	p, err := ParseProfile(name, data, d)
	if err != nil {
		return nil, err
	}
	id, err := p.ResolveWith(l.Accounts)
	if err != nil {
		if errors.Is(err, ErrUnknownAccount) {
			return p, &Error{Loc: Loc{File: name, Line: lineOfAccount(data)}, Msg: err.Error(), Err: err}
		}
		return nil, err
	}
	if err := CheckNotWritable(name, id); err != nil {
		return nil, &Error{Loc: Loc{File: name}, Msg: err.Error()}
	}
	return p, nil
}

func lineOfAccount(data []byte) int {
	for i, l := range strings.Split(string(data), "\n") {
		t := strings.TrimSpace(l)
		if strings.HasPrefix(t, "user") || strings.HasPrefix(t, "uid") {
			return i + 1
		}
	}
	return 0
}
