// Command execgated is the execgate daemon: it serves the agent and admin
// sockets, decides every script against its agent's profile, runs what is
// allowed in the sandbox and journals every step.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/coreos/go-systemd/v22/activation"
	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/execgate/execgate/audit"
	"github.com/execgate/execgate/profiles"
	"github.com/execgate/execgate/supervisor"
	"github.com/execgate/execgate/supervisor/execwatch"
	"github.com/execgate/execgate/supervisor/sandbox"
	"github.com/execgate/execgate/systemd/journal"
)

func main() {
	// The sandbox's init stage re-executes this binary: it must take over
	// before anything else runs.
	sandbox.MaybeInit()
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "execgated: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	configPath := flag.String("config", profiles.DefaultConfigFile, "daemon config file")
	agents := flag.String("agents", "", "profiles directory (overrides agents_dir)")
	runDir := flag.String("run-dir", "", "directory of the sockets (overrides run_dir)")
	stateDir := flag.String("state-dir", "", "state directory (overrides state_dir)")
	auditSpec := flag.String("audit", "", "audit sink: journal, file:PATH or auto (overrides audit)")
	flag.Parse()

	cfg, err := loadConfig(*configPath, isSet("config"))
	if err != nil {
		return err
	}
	if *agents != "" {
		cfg.AgentsDir = abs(*agents)
	}
	if *runDir != "" {
		cfg.RunDir = abs(*runDir)
		cfg.AgentSocket = filepath.Join(cfg.RunDir, "agent.sock")
		cfg.AdminSocket = filepath.Join(cfg.RunDir, "admin.sock")
	}
	if *stateDir != "" {
		cfg.StateDir = abs(*stateDir)
	}
	if *auditSpec != "" {
		if err := profiles.ValidateAudit(*auditSpec); err != nil {
			return err
		}
		cfg.Audit = *auditSpec
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}

	sink, sinkName, err := openSink(cfg.Audit)
	if err != nil {
		return fmt.Errorf("audit sink %q: %w", cfg.Audit, err)
	}
	defer sink.Close()

	runner, err := sandbox.NewRunner()
	if err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	defer runner.Close()
	if err := cleanLeftovers(runner, sink); err != nil {
		return err
	}

	// The kernel exec check is the layer that sees what static analysis
	// cannot. Without it the daemon refuses to start, unless the config
	// accepts degraded mode, which it then says everywhere.
	execCheck := true
	if err := execwatch.Supported(); err != nil {
		if !cfg.AllowDegraded {
			return fmt.Errorf("the runtime exec check is unavailable (%v); set allow_degraded = true in %s to run without it", err, cfg.File)
		}
		execCheck = false
		msg := fmt.Sprintf("DEGRADED: the runtime exec check is unavailable (%v): only static decisions and the sandbox stand", err)
		fmt.Fprintln(os.Stderr, "execgated: "+msg)
		if err := sink.Write(audit.New(audit.EventError, audit.PriErr, msg).Set(audit.FieldReason, msg)); err != nil {
			return fmt.Errorf("audit: %w", err)
		}
	}
	srv, err := supervisor.NewServer(cfg, runner, sink, supervisor.WithAuditName(sinkName),
		supervisor.WithCgroupVersion(runner.CgroupVersion()), supervisor.WithExecCheck(execCheck))
	if err != nil {
		return err
	}
	agentLn, adminLn, err := listeners(cfg)
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for range hup {
			daemon.SdNotify(false, daemon.SdNotifyReloading)
			if err := srv.Reload(); err != nil {
				fmt.Fprintf(os.Stderr, "execgated: reload: %v\n", err)
			}
			daemon.SdNotify(false, daemon.SdNotifyReady)
		}
	}()
	daemon.SdNotify(false, daemon.SdNotifyReady)
	fmt.Fprintf(os.Stderr, "execgated: serving %s (agents) and %s (admins); audit %s\n", cfg.AgentSocket, cfg.AdminSocket, sinkName)
	err = srv.Serve(ctx, agentLn, adminLn)
	daemon.SdNotify(false, daemon.SdNotifyStopping)
	return err
}

func isSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func abs(p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		return p
	}
	return a
}

// loadConfig reads execgate.toml; the default path may be absent.
func loadConfig(path string, explicit bool) (*profiles.Config, error) {
	if _, err := os.Stat(path); !explicit && errors.Is(err, os.ErrNotExist) {
		return profiles.DefaultConfig(), nil
	}
	return profiles.LoadConfig(path)
}

// cleanLeftovers kills and removes run cgroups a previous daemon left, and
// journals an end record for each: every run ends with an end record.
func cleanLeftovers(r *sandbox.Runner, sink audit.Sink) error {
	left, err := r.RemoveLeftovers()
	if err != nil {
		return fmt.Errorf("remove leftover runs: %w", err)
	}
	for _, l := range left {
		rec := audit.New(audit.EventEnd, audit.PriWarning, l.Agent+" END aborted: run found at startup, killed").
			Set(audit.FieldID, l.ID).Set(audit.FieldAgent, l.Agent).Set(audit.FieldCgroup, l.Cgroup).
			Set(audit.FieldAborted, "1").SetInt(audit.FieldSignal, int64(syscall.SIGKILL)).
			SetInt(audit.FieldExit, 128+int64(syscall.SIGKILL)).Set(audit.FieldReason, "the daemon stopped during the run")
		if err := sink.Write(rec); err != nil {
			return fmt.Errorf("audit: %w", err)
		}
	}
	return nil
}

// listeners takes the sockets from systemd when it passes them (names
// "agent" and "admin"), and otherwise creates them: the agent socket 0666
// (access is decided by peer credentials), the admin socket 0660 for root
// and the execgate-admin group.
func listeners(cfg *profiles.Config) (agent, admin net.Listener, err error) {
	if named, err := activation.ListenersWithNames(); err == nil && len(named) > 0 {
		if a, b := named["agent"], named["admin"]; len(a) == 1 && len(b) == 1 {
			return a[0], b[0], nil
		}
		return nil, nil, fmt.Errorf("socket activation passed %d sockets; want one named agent and one named admin", len(named))
	}
	if err := os.MkdirAll(cfg.RunDir, 0o755); err != nil {
		return nil, nil, fmt.Errorf("run dir: %w", err)
	}
	gid := 0
	for _, g := range cfg.AdminGroups {
		if grp, err := user.LookupGroup(g); err == nil {
			gid, _ = strconv.Atoi(grp.Gid)
			break
		}
	}
	if agent, err = listenUnix(cfg.AgentSocket, 0o666, 0); err != nil {
		return nil, nil, err
	}
	if admin, err = listenUnix(cfg.AdminSocket, 0o660, gid); err != nil {
		agent.Close()
		return nil, nil, err
	}
	return agent, admin, nil
}

func listenUnix(path string, mode os.FileMode, gid int) (net.Listener, error) {
	if st, err := os.Lstat(path); err == nil {
		if st.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket", path)
		}
		os.Remove(path) // a stale socket from a previous run
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	if err := os.Chown(path, 0, gid); err != nil {
		ln.Close()
		return nil, fmt.Errorf("chown %s: %w", path, err)
	}
	if err := os.Chmod(path, mode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("chmod %s: %w", path, err)
	}
	return ln, nil
}

// openSink opens journald, a JSONL file, or whichever of the two "auto"
// finds, and names it for /v1/status.
func openSink(spec string) (audit.Sink, string, error) {
	s, err := journal.OpenSink(spec)
	if err != nil {
		return nil, "", err
	}
	name := "journal"
	if f, ok := s.(*audit.FileSink); ok {
		name = "file:" + f.Path()
	}
	return s, name, nil
}
