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
	"time"

	"github.com/coreos/go-systemd/v22/activation"

	"github.com/execgate/execgate/audit"
	"github.com/execgate/execgate/profiles"
	"github.com/execgate/execgate/supervisor"
	"github.com/execgate/execgate/supervisor/execwatch"
	"github.com/execgate/execgate/supervisor/sandbox"
	"github.com/execgate/execgate/systemd/delegate"
	"github.com/execgate/execgate/systemd/journal"
	"github.com/execgate/execgate/systemd/notify"
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
	grace := flag.Duration("shutdown-grace", supervisor.DefaultShutdownGrace, "on SIGTERM, how long running runs may go on before they are killed")
	cgroupRoot := flag.String("cgroup-root", "auto", "cgroup under which runs are placed: auto (the delegated service cgroup on v2, else /execgate) or a path")
	flag.Parse()
	if *grace < 0 {
		return fmt.Errorf("--shutdown-grace %s: want a duration of 0 or more", *grace)
	}

	// Signals first: a SIGHUP before its handler would end the process,
	// and a SIGTERM during start-up must still stop it cleanly.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	sd := notify.New()

	err := serve(ctx, sd, hup, daemonFlags{config: *configPath, configSet: isSet("config"), agents: *agents, runDir: *runDir,
		stateDir: *stateDir, audit: *auditSpec, grace: *grace, cgroupRoot: *cgroupRoot})
	if err != nil {
		sd.Failed(err)
	}
	return err
}

type daemonFlags struct {
	config                          string
	configSet                       bool
	agents, runDir, stateDir, audit string
	grace                           time.Duration
	cgroupRoot                      string
}

func serve(ctx context.Context, sd *notify.Notifier, hup <-chan os.Signal, f daemonFlags) error {
	cfg, err := configure(f)
	if err != nil {
		return err
	}
	sink, sinkName, err := openSink(cfg.Audit)
	if err != nil {
		return fmt.Errorf("audit sink %q: %w", cfg.Audit, err)
	}
	defer sink.Close()

	root, err := runCgroupRoot(f.cgroupRoot)
	if err != nil {
		return err
	}
	runner, err := sandbox.NewRunner(sandbox.WithCgroupRoot(root))
	if err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	defer runner.Close()
	ledger, err := newLedger(filepath.Join(cfg.StateDir, "runs"))
	if err != nil {
		return err
	}
	if err := cleanLeftovers(runner, ledger, sink); err != nil {
		return err
	}

	execCheck, err := execCheckMode(cfg, sink)
	if err != nil {
		return err
	}
	srv, err := supervisor.NewServer(cfg, ledgerRunner{Runner: runner, l: ledger}, ledgerSink{Sink: sink, l: ledger},
		supervisor.WithAuditName(sinkName), supervisor.WithCgroupVersion(runner.CgroupVersion()), supervisor.WithExecCheck(execCheck))
	if err != nil {
		return err
	}
	srv.RecoverChanges()
	agentLn, adminLn, err := listeners(cfg)
	if err != nil {
		return err
	}

	// Profiles reload on SIGHUP and when the agents dir changes; the
	// watch is in place before READY=1, so no edit after it is missed.
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	watcher, err := srv.WatchProfiles(wctx, supervisor.ReloadOptions{
		Signals: hup,
		Before:  func(trigger string) { sd.Reloading("reloading profiles (" + trigger + ")") },
		After:   func(string, error) { sd.Ready(srv.Summary()) },
	})
	if err != nil {
		return err
	}
	defer func() { stopWatch(); <-watcher.Done() }()

	// Both sockets listen and the profiles are loaded: ready. The watchdog
	// and STATUS= lines run until the daemon exits, through the shutdown.
	sd.Ready(srv.Summary())
	pctx, stopPings := context.WithCancel(context.Background())
	pinged := make(chan struct{})
	go func() { sd.Run(pctx, srv.Summary, time.Second); close(pinged) }()
	defer func() { stopPings(); <-pinged }()

	fmt.Fprintf(os.Stderr, "execgated: serving %s (agents) and %s (admins); audit %s; runs under cgroup %s (v%d)\n",
		addrOf(agentLn, cfg.AgentSocket), addrOf(adminLn, cfg.AdminSocket), sinkName, root, runner.CgroupVersion())
	return srv.ServeWith(ctx, agentLn, adminLn, supervisor.ServeOptions{
		Grace:    graceOrNone(f.grace),
		Stopping: func(status string) { sd.Stopping(status) },
	})
}

// configure loads execgate.toml, applies the flags that override it and
// makes the state directory.
func configure(f daemonFlags) (*profiles.Config, error) {
	cfg, err := loadConfig(f.config, f.configSet)
	if err != nil {
		return nil, err
	}
	if f.agents != "" {
		cfg.AgentsDir = abs(f.agents)
	}
	if f.runDir != "" {
		cfg.RunDir = abs(f.runDir)
		cfg.AgentSocket = filepath.Join(cfg.RunDir, "agent.sock")
		cfg.AdminSocket = filepath.Join(cfg.RunDir, "admin.sock")
	}
	if f.stateDir != "" {
		cfg.StateDir = abs(f.stateDir)
	}
	if f.audit != "" {
		if err := profiles.ValidateAudit(f.audit); err != nil {
			return nil, err
		}
		cfg.Audit = f.audit
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	return cfg, nil
}

// execCheckMode says whether the kernel exec check is on. It is the layer
// that sees what static analysis cannot: without it the daemon refuses to
// start, unless the config accepts degraded mode, which it then says
// everywhere.
func execCheckMode(cfg *profiles.Config, sink audit.Sink) (bool, error) {
	err := execwatch.Supported()
	if err == nil {
		return true, nil
	}
	if !cfg.AllowDegraded {
		return false, fmt.Errorf("the runtime exec check is unavailable (%v); set allow_degraded = true in %s to run without it", err, cfg.File)
	}
	msg := fmt.Sprintf("DEGRADED: the runtime exec check is unavailable (%v): only static decisions and the sandbox stand", err)
	fmt.Fprintln(os.Stderr, "execgated: "+msg)
	if err := sink.Write(audit.New(audit.EventError, audit.PriErr, msg).Set(audit.FieldReason, msg)); err != nil {
		return false, fmt.Errorf("audit: %w", err)
	}
	return false, nil
}

// graceOrNone maps --shutdown-grace 0 (no grace) to ServeWith's "none".
func graceOrNone(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

func addrOf(ln net.Listener, fallback string) string {
	if a := ln.Addr(); a != nil && a.String() != "" {
		return a.String()
	}
	return fallback
}

// runCgroupRoot decides where runs get their cgroups: the flag's path, or
// (auto) the service's own delegated cgroup on v2, /execgate otherwise.
func runCgroupRoot(flagValue string) (string, error) {
	if flagValue != "" && flagValue != "auto" {
		if !filepath.IsAbs(flagValue) || filepath.Clean(flagValue) == "/" {
			return "", fmt.Errorf("--cgroup-root %q: want auto or an absolute path below the hierarchy root", flagValue)
		}
		return filepath.Clean(flagValue), nil
	}
	root, _, err := delegate.Root(delegate.System())
	return root, err
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

// listeners takes the sockets systemd passes (execgated.socket and
// execgated-admin.socket, named "agent" and "admin" by their
// FileDescriptorName=), and creates those it does not pass: the agent
// socket 0666 (access is decided by peer credentials), the admin socket
// 0660 for root and the execgate-admin group.
func listeners(cfg *profiles.Config) (agent, admin net.Listener, err error) {
	named, _ := activation.ListenersWithNames()
	var unexpected []string
	for name, ls := range named {
		switch {
		case name == "agent" && len(ls) == 1:
			agent = ls[0]
		case name == "admin" && len(ls) == 1:
			admin = ls[0]
		default:
			unexpected = append(unexpected, fmt.Sprintf("%d named %q", len(ls), name))
			for _, l := range ls {
				l.Close()
			}
		}
	}
	closeAll := func() {
		for _, l := range []net.Listener{agent, admin} {
			if l != nil {
				l.Close()
			}
		}
	}
	if len(unexpected) > 0 {
		closeAll()
		return nil, nil, fmt.Errorf("socket activation passed %v; want one socket named agent and one named admin (FileDescriptorName=)", unexpected)
	}
	if agent != nil && admin != nil {
		return agent, admin, nil
	}
	if err := os.MkdirAll(cfg.RunDir, 0o755); err != nil {
		closeAll()
		return nil, nil, fmt.Errorf("run dir: %w", err)
	}
	gid := 0
	for _, g := range cfg.AdminGroups {
		if grp, err := user.LookupGroup(g); err == nil {
			gid, _ = strconv.Atoi(grp.Gid)
			break
		}
	}
	if agent == nil {
		if agent, err = listenUnix(cfg.AgentSocket, 0o666, 0); err != nil {
			closeAll()
			return nil, nil, err
		}
	}
	if admin == nil {
		if admin, err = listenUnix(cfg.AdminSocket, 0o660, gid); err != nil {
			closeAll()
			return nil, nil, err
		}
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
