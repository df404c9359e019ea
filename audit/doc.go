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
// Sinks are synchronous: Write returns only when the record is stored (the
// datagram accepted by journald, or the line fsync'd). The supervisor
// refuses to run anything whose request record could not be written.
package audit
