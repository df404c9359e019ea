// Package journal is execgate's journald side of the audit trail: a sink
// that writes audit records to systemd-journald, the choice between
// journald and the JSONL file (OpenSink), and a reader that runs
// `journalctl -o json` with field matches and streams parsed records.
//
// Records go to journald over its native protocol with
// github.com/coreos/go-systemd/v22/journal: one datagram per record on
// /run/systemd/journal/socket, or, for records too large for a datagram,
// an unlinked temporary file in /dev/shm whose descriptor is passed to
// journald (the library's fallback; journald accepts it from root). A
// field is never cut: a 2 MiB script is stored whole.
//
// Write returns when journald's socket has accepted the datagram, which
// is as far as the protocol confirms: a record still queued in the socket
// when journald crashes is lost although Write returned nil. Write fails
// when journald is not running (no socket, or nobody behind it), and
// gives up with an error wrapping ErrTimeout after the timeout (default
// 5s, WithTimeout) when journald stops reading and its socket queue is
// full. journald's rate limit must be off for execgated
// (LogRateLimitIntervalSec=0 in its unit), or a burst beyond it is
// dropped by journald without any error reaching the sender. Records too
// big for a datagram (about 200 KiB) need a writable /dev/shm.
//
// The reader always passes --all, so journalctl prints large fields in
// full instead of as null, and -q, so it prints nothing but records.
// Filters are applied twice: as journalctl matches (so journald does the
// work) and again in Go (so both the journal and the file give exactly
// the same answer, and --since is exact below the second).
//
// Following (-f) is not one journalctl --follow: over several journal
// files (a collector's, one per host, from systemd-journal-remote) it
// prints one merged time order and never shows a record stored after a
// newer one of another host was printed (a lagging host's; systemd
// issues #359 and #14911), and it implies --boot: only the boot of the
// journal's newest record, one host's. Read reads the stored records
// with one journalctl, then runs one journalctl --merge --follow
// _MACHINE_ID=ID per machine (listed with --field=_MACHINE_ID, again
// every second for hosts that come later), each starting after the
// cursor of the last record of its machine already read (see Read).
// Each takes an inotify instance: a collector of more hosts than
// fs.inotify.max_user_instances allows (128 by default) fails the
// follow with journalctl's error.
package journal
