package supervisor

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/execgate/execgate/internal/durable"
)

// Switch is an admin's hold on one agent.
type Switch struct {
	Killed bool      `json:"killed,omitempty"`
	Frozen bool      `json:"frozen,omitempty"`
	By     uint32    `json:"by"`
	Since  time.Time `json:"since"`
}

// switchState is what the kill switches say, kept in the state dir so that
// it survives restarts and crashes.
type switchState struct {
	Lockdown   bool              `json:"lockdown"`
	LockdownBy uint32            `json:"lockdown_by,omitempty"`
	LockdownAt time.Time         `json:"lockdown_since,omitempty"`
	Agents     map[string]Switch `json:"agents"`
}

// switches persists switchState as one JSON file, replaced atomically.
type switches struct {
	path    string
	syncDir func(dir string) error // durable.SyncDir; tests fail it
	mu      sync.Mutex
	st      switchState
}

func loadSwitches(dir string) (*switches, error) {
	s := &switches{path: filepath.Join(dir, "switches.json"), st: switchState{Agents: map[string]Switch{}}}
	b, err := os.ReadFile(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read kill switches: %w", err)
	}
	if err := json.Unmarshal(b, &s.st); err != nil {
		// A corrupt file must not silently revive killed agents.
		return nil, fmt.Errorf("kill switch state %s is corrupt (%v): fix or remove it", s.path, err)
	}
	if s.st.Agents == nil {
		s.st.Agents = map[string]Switch{}
	}
	return s, nil
}

// update changes the state under the lock and writes it before returning:
// a switch an admin was told is on, is on after a crash or a power cut.
// The new state goes to a temporary file, which is synced, renamed over
// the old one, and the rename synced in the directory. Any failure is
// returned, so the admin's command fails rather than pretend. Once the
// rename is done the file says the new state, so the daemon does too,
// even when the directory sync then fails.
func (s *switches) update(f func(*switchState)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	next := s.st
	next.Agents = make(map[string]Switch, len(s.st.Agents))
	for k, v := range s.st.Agents {
		next.Agents[k] = v
	}
	f(&next)
	b, err := json.MarshalIndent(next, "", "  ")
	if err != nil {
		return err
	}
	tmp := s.path + ".tmp"
	err = durable.WriteFile(tmp, b)
	if err == nil {
		err = os.Rename(tmp, s.path)
	}
	if err != nil {
		_ = os.Remove(tmp) // best effort: the error returned is the one that matters
		return fmt.Errorf("save kill switches: %w", err)
	}
	s.st = next
	syncDir := s.syncDir
	if syncDir == nil {
		syncDir = durable.SyncDir
	}
	if err := syncDir(filepath.Dir(s.path)); err != nil {
		return fmt.Errorf("save kill switches: %s may not survive a power cut: %w", s.path, err)
	}
	return nil
}

func (s *switches) get() switchState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st
}

// refusal says why an agent may not start anything now, or "".
func (s *switches) refusal(agent string) string {
	st := s.get()
	if st.Lockdown {
		return fmt.Sprintf("execgate is in lockdown (since %s, by uid %d): every request is refused until `execgate lockdown off`", st.LockdownAt.Format(time.RFC3339), st.LockdownBy)
	}
	sw := st.Agents[agent]
	switch {
	case sw.Killed:
		return fmt.Sprintf("agent %s was killed by uid %d at %s: `execgate revive %s` restores it", agent, sw.By, sw.Since.Format(time.RFC3339), agent)
	case sw.Frozen:
		return fmt.Sprintf("agent %s is frozen by uid %d since %s: `execgate thaw %s` resumes it", agent, sw.By, sw.Since.Format(time.RFC3339), agent)
	}
	return ""
}
