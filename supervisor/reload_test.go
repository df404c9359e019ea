package supervisor

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/execgate/execgate/audit"
	"github.com/execgate/execgate/profiles"
	"github.com/execgate/execgate/supervisor/sandbox"
)

// reloadSink keeps records in memory.
type reloadSink struct {
	mu   sync.Mutex
	recs []*audit.Record
}

func (m *reloadSink) Write(r *audit.Record) error {
	m.mu.Lock()
	m.recs = append(m.recs, r)
	m.mu.Unlock()
	return nil
}

func (m *reloadSink) Close() error { return nil }

func (m *reloadSink) reloads() []*audit.Record {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*audit.Record
	for _, r := range m.recs {
		if r.Fields[FieldReloadTrigger] != "" {
			out = append(out, r)
		}
	}
	return out
}

func reloadServer(t *testing.T) (*Server, *reloadSink, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the supervisor tests run as root (the sandbox runner needs it)")
	}
	dir := filepath.Join(t.TempDir(), "agents")
	os.Mkdir(dir, 0o755)
	writeReloadAgent(t, dir, "nobody", 65534)
	cfg := profiles.DefaultConfig()
	cfg.AgentsDir, cfg.StateDir = dir, t.TempDir()
	r, err := sandbox.NewRunner(sandbox.WithCgroupRoot(fmt.Sprintf("/execgate-reloadtest-%d", os.Getpid())))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	sink := &reloadSink{}
	s, err := NewServer(cfg, r, sink)
	if err != nil {
		t.Fatal(err)
	}
	return s, sink, dir
}

func writeReloadAgent(t *testing.T, dir, name string, uid int) {
	t.Helper()
	body := fmt.Sprintf("uid = %d\nworkdirs = [\"/var/tmp\"]\n", uid)
	if err := os.WriteFile(filepath.Join(dir, name+".toml"), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func waitReload(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestWatchProfiles(t *testing.T) {
	s, sink, dir := reloadServer(t)
	var mu sync.Mutex
	var events []string
	hup := make(chan os.Signal, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w, err := s.WatchProfiles(ctx, ReloadOptions{
		Signals: hup, Debounce: 50 * time.Millisecond, Retry: 50 * time.Millisecond,
		Before: func(tr string) { mu.Lock(); events = append(events, "before "+tr); mu.Unlock() },
		After:  func(tr string, err error) { mu.Lock(); events = append(events, "after "+tr); mu.Unlock() },
	})
	if err != nil {
		t.Fatal(err)
	}
	nReloads := func() int { return len(sink.reloads()) }
	last := func() *audit.Record { r := sink.reloads(); return r[len(r)-1] }

	// A burst of changes is one reload, once the directory is quiet.
	for range 10 {
		writeReloadAgent(t, dir, "daemon", 1)
		time.Sleep(10 * time.Millisecond)
	}
	waitReload(t, "a reload", func() bool { return nReloads() == 1 })
	time.Sleep(200 * time.Millisecond)
	if n := nReloads(); n != 1 {
		t.Errorf("%d reloads for one burst of writes", n)
	}
	if r := last(); r.Fields[FieldAgentsAdded] != "daemon" || r.Fields[FieldReloadTrigger] != TriggerFiles {
		t.Errorf("reload record: %q %v", r.Message, r.Fields)
	}
	mu.Lock()
	if strings.Join(events, "|") != "before profiles changed|after profiles changed" {
		t.Errorf("hooks: %q", events)
	}
	mu.Unlock()

	// A signal reloads at once.
	hup <- os.Interrupt
	waitReload(t, "the signal's reload", func() bool { return nReloads() == 2 })
	if r := last(); r.Fields[FieldReloadTrigger] != TriggerSignal {
		t.Errorf("signal reload: %v", r.Fields)
	}

	// A reload of another trigger (the admin socket's) runs the hooks
	// too: `systemctl reload` goes that way and must see RELOADING=1 and
	// READY=1 like a SIGHUP.
	if err := s.ReloadAndReport("admin uid 0"); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if got := strings.Join(events[len(events)-2:], "|"); got != "before admin uid 0|after admin uid 0" {
		t.Errorf("admin reload hooks: %q", events)
	}
	mu.Unlock()
	waitReload(t, "the admin reload's record", func() bool { return nReloads() == 3 })

	// The directory replaced: removed (every agent goes), then made again
	// (the watch comes back and the agents with it).
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	waitReload(t, "the removal's reload", func() bool {
		r := sink.reloads()
		return len(r) > 2 && r[len(r)-1].Fields[FieldAgentsRemoved] == "daemon,nobody"
	})
	if w.Watching() {
		t.Error("still watching a removed directory")
	}
	tmp := dir + ".new"
	os.Mkdir(tmp, 0o755)
	writeReloadAgent(t, tmp, "nobody", 65534)
	if err := os.Rename(tmp, dir); err != nil {
		t.Fatal(err)
	}
	waitReload(t, "the new directory's reload", func() bool { return last().Fields[FieldAgentsAdded] == "nobody" })
	if !w.Watching() {
		t.Error("the new directory is not watched")
	}
	n := nReloads()
	writeReloadAgent(t, dir, "daemon", 1)
	waitReload(t, "a change in the new directory", func() bool { return nReloads() == n+1 })
	if s.reg.Load().byName["daemon"] == nil {
		t.Error("the agent added in the new directory is not served")
	}

	cancel()
	select {
	case <-w.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the watcher did not stop")
	}
}

func TestSummary(t *testing.T) {
	s, _, _ := reloadServer(t)
	if got := s.Summary(); got != "1 agent, 0 runs, 0 pending approvals, DEGRADED: no runtime exec check" {
		t.Errorf("Summary = %q", got)
	}
}
