package supervisor

import (
	"errors"
	"fmt"
	"path/filepath"
	"sort"

	"github.com/execgate/execgate/profiles"
)

// registry is one loaded set of profiles, replaced whole on reload.
type registry struct {
	byUID  map[uint32]*profiles.Profile
	byName map[string]*profiles.Profile
	errs   []error
	kept   []string // agents whose broken profile left the last good one in force
	bins   *binIndex
}

// loadRegistry loads every profile in the agents dir. A profile that fails
// to load keeps its last good version from prev, if there is one, so a
// half-saved edit never drops an agent's rules. Two profiles for one uid
// are both left out, since the caller could not be told which one applies.
func loadRegistry(cfg *profiles.Config, prev *registry) *registry {
	ps, errs := profiles.LoadDir(cfg.AgentsDir, cfg.Defaults)
	// Remembered approvals are a lower layer under each profile.
	for name, p := range ps {
		if err := p.AddApproved(filepath.Join(cfg.StateDir, "approved", name+".toml"), nil); err != nil {
			errs[name] = err
			delete(ps, name)
		}
	}
	r := &registry{byUID: map[uint32]*profiles.Profile{}, byName: map[string]*profiles.Profile{}}
	if ps == nil {
		ps = map[string]*profiles.Profile{}
	}
	names := make([]string, 0, len(errs))
	for n := range errs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		r.errs = append(r.errs, errs[n])
		if prev != nil && prev.byName[n] != nil && !unknownAccount(errs[n]) {
			ps[n] = prev.byName[n]
			r.kept = append(r.kept, n)
		}
	}
	names = names[:0]
	for n := range ps {
		names = append(names, n)
	}
	sort.Strings(names)
	dup := map[uint32]bool{}
	for _, n := range names {
		p := ps[n]
		uid := uint32(p.UID)
		if other, ok := r.byUID[uid]; ok {
			r.errs = append(r.errs, fmt.Errorf("%s and %s both name uid %d: neither is used", other.File, p.File, uid))
			dup[uid] = true
			continue
		}
		r.byUID[uid] = p
	}
	for uid := range dup {
		delete(r.byUID, uid)
	}
	for _, p := range r.byUID {
		r.byName[p.Name] = p
	}
	r.bins = newBinIndex(r.byName)
	return r
}

// unknownAccount reports errors that only say an account is missing.
func unknownAccount(err error) bool { return errors.Is(err, profiles.ErrUnknownAccount) }
