package supervisor

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A switch thrown is in the file when update returns: a new load (a
// restart) finds it, and no temporary file is left.
func TestSwitchesSurviveReload(t *testing.T) {
	dir := t.TempDir()
	s, err := loadSwitches(dir)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Truncate(time.Second)
	if err := s.update(func(st *switchState) {
		st.Agents["flow"] = Switch{Killed: true, By: 1000, Since: now}
		st.Agents["bot"] = Switch{Frozen: true, By: 1000, Since: now}
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.update(func(st *switchState) { st.Lockdown, st.LockdownBy, st.LockdownAt = true, 0, now }); err != nil {
		t.Fatal(err)
	}
	again, err := loadSwitches(dir)
	if err != nil {
		t.Fatal(err)
	}
	st := again.get()
	if !st.Lockdown || !st.Agents["flow"].Killed || !st.Agents["bot"].Frozen || !st.Agents["flow"].Since.Equal(now) {
		t.Errorf("reloaded: %+v", st)
	}
	if !strings.Contains(again.refusal("flow"), "lockdown") {
		t.Errorf("refusal: %q", again.refusal("flow"))
	}
	if _, err := os.Stat(filepath.Join(dir, "switches.json.tmp")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary file left: %v", err)
	}
}

// A state that cannot be saved is an error, and the switch is not on in
// memory either when nothing was written.
func TestSwitchSaveFails(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	os.Mkdir(dir, 0o700)
	s, err := loadSwitches(dir)
	if err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(dir) // root ignores permissions: a missing dir cannot be written
	if err := s.update(func(st *switchState) { st.Agents["flow"] = Switch{Killed: true} }); err == nil {
		t.Fatal("a state that was not written was reported saved")
	}
	if s.get().Agents["flow"].Killed {
		t.Error("a state that was not written is in memory")
	}
}

// A failed directory sync fails the update: the rename might not survive
// a power cut. The file and the daemon both say the new state.
func TestSwitchDirSyncFails(t *testing.T) {
	dir := t.TempDir()
	s, err := loadSwitches(dir)
	if err != nil {
		t.Fatal(err)
	}
	eio := errors.New("input/output error")
	var synced []string
	s.syncDir = func(d string) error { synced = append(synced, d); return eio }
	err = s.update(func(st *switchState) { st.Agents["flow"] = Switch{Frozen: true} })
	if !errors.Is(err, eio) || len(synced) != 1 || synced[0] != dir {
		t.Fatalf("update: %v (synced %q)", err, synced)
	}
	if !s.get().Agents["flow"].Frozen {
		t.Error("the daemon does not say what the file says")
	}
	if again, err := loadSwitches(dir); err != nil || !again.get().Agents["flow"].Frozen {
		t.Errorf("reload: %v %+v", err, again)
	}
	s.syncDir = nil
	if err := s.update(func(st *switchState) { delete(st.Agents, "flow") }); err != nil {
		t.Errorf("update with the real sync: %v", err)
	}
}
