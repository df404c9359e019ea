// Command egsh is a drop-in for `bash -c` that runs scripts through
// execgated: `egsh -c 'SCRIPT' [ARG0 [ARGS...]]` (also -lc, -ec, -o
// pipefail, a script file, or a script on stdin). It streams stdin, stdout
// and stderr, forwards SIGINT and SIGTERM as a cancel, and exits with the
// script's status.
//
// Exit codes: the script's own; 126 denied or approval refused; 124 timed
// out; 125 execgate itself failed (no daemon, bad request); 128+N when the
// script was killed by signal N.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/execgate/execgate/api"
	"github.com/execgate/execgate/client"
)

const (
	exitDenied  = 126
	exitTimeout = 124
	exitFailed  = 125
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// invocation is a parsed egsh command line.
type invocation struct {
	script        string
	args          []string // $0, $1, ...
	prelude       []string // set -e, set -o pipefail, ... from the flags
	stdinIsScript bool
}

// parseArgs reads bash's command line: option clusters and -o NAME before
// the script; -c takes the script from the first non-option word.
func parseArgs(args []string) (*invocation, error) {
	inv := &invocation{}
	hasC := false
	i := 0
	for ; i < len(args); i++ {
		a := args[i]
		if a == "--" || a == "-" {
			i++
			break
		}
		if strings.HasPrefix(a, "--") {
			switch a {
			case "--login", "--norc", "--noprofile", "--posix", "--noediting":
				continue
			case "--rcfile", "--init-file":
				i++
				continue
			}
			return nil, fmt.Errorf("unsupported option %s", a)
		}
		if len(a) < 2 || (a[0] != '-' && a[0] != '+') {
			break
		}
		on := a[0] == '-'
		for _, c := range a[1:] {
			switch c {
			case 'c':
				hasC = true
			case 'l', 's':
				// login shells and explicit stdin change nothing here
			case 'i':
				return nil, errors.New("egsh runs scripts, not interactive shells")
			case 'o', 'O':
				if i+1 >= len(args) {
					return nil, fmt.Errorf("-%c needs an option name", c)
				}
				i++
				inv.prelude = append(inv.prelude, setLine(on, "-o "+args[i]))
			case 'e', 'u', 'x', 'v', 'f', 'n', 'a', 'b', 'h', 'k', 'm', 'p', 't', 'B', 'C', 'E', 'H', 'P', 'T':
				inv.prelude = append(inv.prelude, setLine(on, "-"+string(c)))
			default:
				return nil, fmt.Errorf("unsupported option -%c", c)
			}
		}
	}
	rest := args[i:]
	switch {
	case hasC:
		if len(rest) == 0 {
			return nil, errors.New("-c: option requires an argument")
		}
		inv.script, inv.args = rest[0], rest[1:]
	case len(rest) > 0:
		b, err := os.ReadFile(rest[0])
		if err != nil {
			return nil, err
		}
		inv.script, inv.args = string(b), rest
	default:
		inv.stdinIsScript = true
	}
	return inv, nil
}

func setLine(on bool, opt string) string {
	if on {
		return "set " + opt
	}
	return "set " + strings.Replace(opt, "-", "+", 1)
}

func run(argv []string, stdin io.Reader, stdout, stderr io.Writer) int {
	inv, err := parseArgs(argv)
	if err != nil {
		fmt.Fprintf(stderr, "egsh: %v\nusage: egsh -c 'SCRIPT' [ARG0 [ARGS...]]\n", err)
		return 2
	}
	req, stdin, code := request(inv, stdin, stderr)
	if code != 0 {
		return code
	}

	// SIGINT and SIGTERM cancel the request, which kills the whole run;
	// egsh then exits 128+N like a shell killed by N.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM)
	var got atomic.Int32
	go func() {
		s := <-sigc
		got.Store(int32(s.(syscall.Signal)))
		cancel()
	}()

	var c client.Client
	exit, err := c.Exec(ctx, req, client.Streams{
		Stdin: stdin, Stdout: stdout, Stderr: stderr,
		Event: func(ev api.Event) {
			if ev.Event == api.EventDenied {
				fmt.Fprintf(stderr, "execgate: denied: %s: %s (%s)\n", ev.Invocation, ev.Reason, ev.Rule)
			}
			switch {
			case ev.Event == api.EventPending && ev.Invocation == "changes":
				fmt.Fprintf(stderr, "execgate: %s (request %s)\n", ev.Reason, ev.ID)
			case ev.Event == api.EventPending:
				fmt.Fprintf(stderr, "execgate: waiting for approval (request %s)\n", ev.ID)
			case ev.Event == api.EventChanges:
				fmt.Fprintf(stderr, "execgate: %s\n", ev.Reason)
			}
		},
	})
	if n := got.Load(); n != 0 {
		return 128 + int(n)
	}
	return exitCode(exit, err, stderr)
}

// request builds the request: the script (read from stdin when no -c or
// file named it) with its prelude, the cwd and the environment. A non-zero
// code means egsh must exit with it.
func request(inv *invocation, stdin io.Reader, stderr io.Writer) (api.ExecRequest, io.Reader, int) {
	if inv.stdinIsScript {
		if f, ok := stdin.(*os.File); ok && isTerminal(f) {
			fmt.Fprintln(stderr, "egsh: runs scripts, not interactive shells: use egsh -c 'SCRIPT'")
			return api.ExecRequest{}, nil, 2
		}
		b, err := io.ReadAll(stdin)
		if err != nil {
			fmt.Fprintf(stderr, "egsh: read script from stdin: %v\n", err)
			return api.ExecRequest{}, nil, exitFailed
		}
		inv.script, stdin = string(b), nil
	}
	script := inv.script
	if len(inv.prelude) > 0 {
		script = strings.Join(inv.prelude, "\n") + "\n" + script
	}
	cwd, err := os.Getwd()
	if err != nil {
		fmt.Fprintf(stderr, "egsh: the working directory is gone: %v\n", err)
		return api.ExecRequest{}, nil, exitFailed
	}
	env := map[string]string{}
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	if f, ok := stdin.(*os.File); ok && isTerminal(f) {
		stdin = nil // an agent's terminal is not the script's input
	}
	return api.ExecRequest{Script: script, Args: inv.args, Cwd: cwd, Env: env}, stdin, 0
}

// exitCode is egsh's exit for how the run ended, saying why on stderr
// when it did not run or timed out.
func exitCode(exit *api.Event, err error, stderr io.Writer) int {
	var denied *client.AccessDeniedError
	var conn *client.ConnectError
	switch {
	case errors.As(err, &denied):
		if denied.Invocation != "" || denied.Rule != "" {
			verb := "denied"
			if denied.Decision == "ask" {
				verb = "denied (needs approval)"
			}
			fmt.Fprintf(stderr, "execgate: %s: %s: %s (%s)\n", verb, denied.Invocation, denied.Reason, denied.Rule)
		} else {
			fmt.Fprintf(stderr, "execgate: denied: %s\n", denied.Message)
		}
		return exitDenied
	case errors.As(err, &conn):
		fmt.Fprintf(stderr, "execgate: %v\n", conn)
		return exitFailed
	case err != nil:
		fmt.Fprintf(stderr, "execgate: %v\n", err)
		return exitFailed
	}
	switch {
	case exit.TimedOut:
		fmt.Fprintln(stderr, "execgate: timed out")
		return exitTimeout
	case exit.Signal != 0:
		return 128 + exit.Signal
	case exit.Code != nil:
		return *exit.Code
	}
	return exitFailed
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
