// Package audit defines execgate's audit record and the sinks that keep
// it: journald (package systemd/journal) and an fsync'd JSONL file
// (FileSink, this package).
//
// A record is a flat set of journal fields (EXECGATE_EVENT, EXECGATE_ID,
// ...) plus MESSAGE and PRIORITY. Both sinks store exactly those names, so
// `execgate journal` reads either with the same code, and ops can query the
// journal directly with journalctl field matches.
//
// The file holds one JSON object per line in journalctl -o json's form:
// string values, or arrays of byte numbers for values that are not UTF-8,
// and __REALTIME_TIMESTAMP in microseconds. ParseLine, Decoder and
// ReadFile (with tail -f following) read both it and journalctl's output;
// Filter selects records the same way for both.
//
// # Tamper evidence
//
// The file is a hash chain. Every line FileSink writes starts with
//
//	{"EXECGATE_PREV":"<hex>","EXECGATE_SEQ":"<n>",
//
// where <hex> is the lowercase hex SHA-256 of the exact bytes of the
// previous record line, without its newline, and <n> counts the chain's
// records from 1. The first record of a chain has EXECGATE_PREV Genesis
// (64 zeros) and EXECGATE_SEQ 1. A record line is a line that is a JSON
// object; the chain skips other lines, but only when the next record
// accounts for them:
//
//   - A daemon that starts on an existing file chains to its last record
//     line (it reads the file backwards from the end, once, at open).
//   - A crash can leave the last line torn. At the next open the sink
//     ends it with a newline, and the next record chains to the last
//     record before it and carries EXECGATE_TORN right after
//     EXECGATE_SEQ: the SHA-256 of the bytes between that record and
//     itself (the torn lines, each with its newline). A record cut just
//     before its newline is whole once the newline is added: it stays in
//     the chain.
//   - A daemon that starts on a new or empty file starts at Genesis; a
//     file that replaces the open one while the daemon runs (rotation,
//     removal) continues the chain: its first EXECGATE_PREV is the head
//     of the file before.
//
// The sink keeps the chain's end in memory: each Write hashes only its
// own line, under the sink's lock, after building the rest of the line
// outside it. Lines longer than DefaultMaxLine are refused, so every
// record the sink writes is one the readers and the verifier read whole.
//
// VerifyFiles (`execgate journal --verify`) checks the chain from the
// first line to the last, across rotated files given oldest first, and
// says for each break which line and why: changed, deleted (EXECGATE_SEQ
// says how many records are missing), inserted, duplicated, reordered,
// not JSON, or without the chain fields. Its head, the hash of the last
// record line, is what the next record will link to.
//
// The chain has no key: it shows an edit, a deletion or an insertion
// before the last record, but not records cut from the end, nor a chain
// rewritten from the edit onwards by someone who can write the file. A
// head noted earlier and kept where they cannot reach it
// (VerifyOptions.Head, --head) shows both. journald's own files are
// sealed with a key instead: Forward Secure Sealing (journalctl
// --setup-keys, journalctl --verify --verify-key=KEY).
//
// Sinks are synchronous: Write returns only when the record is stored (the
// datagram accepted by journald, or the line fsync'd). The supervisor
// refuses to run anything whose request record could not be written.
package audit
