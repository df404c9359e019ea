// Package notify is execgated's side of the sd_notify(3) protocol: READY=1,
// STATUS=, RELOADING=1 (with MONOTONIC_USEC=) and STOPPING=1, and the
// WATCHDOG=1 pings that WatchdogSec= asks for.
//
// Messages go through github.com/coreos/go-systemd/v22/daemon, to the
// datagram socket named by $NOTIFY_SOCKET. Without it (the daemon run by
// hand, or by tests) every call is a no-op that reports no error, so the
// daemon never depends on a service manager being there.
//
// The watchdog is not a blind timer: each ping is sent only after a probe
// (the daemon's status summary, which takes the server's locks) returned,
// so a deadlocked daemon stops pinging and systemd restarts it.
package notify
