// Package journaltest runs tests against a real systemd-journald without
// systemd as PID 1 and without touching the host's journal.
//
// go-systemd (and so execgated) sends to the fixed path
// /run/systemd/journal/socket, so the test process has to live in a
// private mount namespace with its own /run. The harness re-executes the
// test binary in a new mount namespace (clone with CLONE_NEWNS; mount
// propagation made private first, so nothing leaks to the host), and
// there:
//   - mounts a tmpfs on /run;
//   - mounts an empty tmpfs over /var/log/journal and over
//     /etc/systemd/journald.conf.d when they exist, and adds the drop-in
//     /run/systemd/journald.conf.d/zz-execgate-journaltest.conf with
//     Storage=volatile, no rate limit, no kmsg reading and no forwarding,
//     so journald keeps everything in /run/log/journal on that tmpfs;
//   - starts /lib/systemd/systemd-journald (or $EXECGATE_JOURNALD) with
//     its own log on a buffer (Logs), and waits until a probe record sent
//     through the socket can be read back with journalctl.
//
// Everything the test process starts (the daemon under test, journalctl)
// inherits the namespace, so it sees that journald and nothing else.
// journald is stopped when the tests end, and is started with
// PR_SET_PDEATHSIG=SIGKILL from a thread that lives as long as the
// process, so a crashed or killed test binary takes it along; the mounts
// die with the namespace. Nothing is left on the host.
//
// # Whole package: Main
//
// A package whose tests all may run inside (the usual case) calls Main
// from TestMain:
//
//	func TestMain(m *testing.M) { journaltest.Main(m) }
//
//	func TestSomething(t *testing.T) {
//		journaltest.Require(t)
//		... write to journald (journal.NewSink, or run execgated) ...
//		recs := journaltest.WaitFor(t, 1, "EXECGATE_ID=abc")
//	}
//
// # One test: Isolate
//
// A package whose TestMain belongs to something else (testscript, say)
// isolates single top-level tests instead. Isolate re-runs the test in a
// child process (-test.run=^Name$) inside a fresh namespace with its own
// journald and reports the child's result; in the child it returns true
// and the test body runs:
//
//	func TestJournalCLI(t *testing.T) {
//		if !journaltest.Isolate(t) {
//			return // the child ran the test; its output is logged here
//		}
//		... as above ...
//	}
//
// IsolateMounts does the same without journald, for tests that only need
// to mount things (a tiny tmpfs, say) without the host seeing them.
//
// # Controlling journald
//
// Stop (SIGTERM) and Kill (SIGKILL) end journald; its socket file stays
// with nobody behind it (senders get ECONNREFUSED; remove Socket to test
// a missing journald). Pause and Resume
// (SIGSTOP/SIGCONT: the socket queue fills and senders block) and Start
// let fail-closed tests take journald away mid-run. Query and WaitFor
// read records back with journalctl after `journalctl --sync`, which
// returns once journald has written everything queued before it.
//
// The harness needs root (mount namespaces) and fails, rather than
// skips, without it: the project's tests run as root and do not skip.
// Inside, /run is empty apart from journald's files: tests must not
// expect the host's /run (sockets of other services, resolv.conf links).
package journaltest
