package audit

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Event is the kind of a record (EXECGATE_EVENT).
type Event string

const (
	EventRequest  Event = "request"
	EventDecision Event = "decision"
	EventApproval Event = "approval"
	EventStart    Event = "start"
	EventExec     Event = "exec"
	// A connection of a run with network.mode = "proxy": connect when it
	// is decided, disconnect when an established one closes.
	EventConnect    Event = "connect"
	EventDisconnect Event = "disconnect"
	// What a review or dry-run run wrote, and what became of it.
	EventChanges Event = "changes"
	EventEnd     Event = "end"
	EventAdmin   Event = "admin"
	EventReload  Event = "reload"
	EventError   Event = "error"
)

// Journal priorities used by execgate.
const (
	PriErr     = 3 // errors
	PriWarning = 4 // deny and ask
	PriInfo    = 6 // allow and everything else
)

// Field names. Every record carries Event, ID (when it belongs to a run),
// Agent, UID and ProfileSHA256 when known.
const (
	FieldMessage       = "MESSAGE"
	FieldPriority      = "PRIORITY"
	FieldIdentifier    = "SYSLOG_IDENTIFIER"
	FieldEvent         = "EXECGATE_EVENT"
	FieldID            = "EXECGATE_ID"
	FieldAgent         = "EXECGATE_AGENT"
	FieldUID           = "EXECGATE_UID"
	FieldPeerPID       = "EXECGATE_PEER_PID"
	FieldScript        = "EXECGATE_SCRIPT"
	FieldScriptSHA256  = "EXECGATE_SCRIPT_SHA256"
	FieldArgv          = "EXECGATE_ARGV" // a JSON array
	FieldCwd           = "EXECGATE_CWD"
	FieldDecision      = "EXECGATE_DECISION"
	FieldRule          = "EXECGATE_RULE" // file:line
	FieldReason        = "EXECGATE_REASON"
	FieldReviewerUID   = "EXECGATE_REVIEWER_UID"
	FieldProfileSHA256 = "EXECGATE_PROFILE_SHA256"
	FieldEnvNames      = "EXECGATE_ENV_NAMES" // names only, never values
	FieldVia           = "EXECGATE_VIA"
	FieldPid           = "EXECGATE_PID"
	FieldPPid          = "EXECGATE_PPID"
	FieldParents       = "EXECGATE_PARENTS" // a denied exec's ancestry: "412 find < 410 bash"
	FieldProgram       = "EXECGATE_PROGRAM" // an exec's resolved real path
	FieldCgroup        = "EXECGATE_CGROUP"
	FieldMasked        = "EXECGATE_MASKED"   // start: deny_read paths masked
	FieldMaskCut       = "EXECGATE_MASK_CUT" // start: 1 if the deny_read walk was cut (such a run is refused)
	FieldExit          = "EXECGATE_EXIT"
	FieldSignal        = "EXECGATE_SIGNAL"
	FieldDurationMS    = "EXECGATE_DURATION_MS"
	FieldCPUMS         = "EXECGATE_CPU_MS"
	FieldMemPeak       = "EXECGATE_MEM_PEAK"
	FieldStdoutBytes   = "EXECGATE_STDOUT_BYTES"
	FieldStderrBytes   = "EXECGATE_STDERR_BYTES"
	FieldTimedOut      = "EXECGATE_TIMED_OUT"
	FieldTruncated     = "EXECGATE_TRUNCATED"
	FieldOOMKilled     = "EXECGATE_OOM_KILLED" // end: 1 if the run's memory limit killed a process of it
	FieldAborted       = "EXECGATE_ABORTED"    // end records written for runs a restart found
	FieldAdminAction   = "EXECGATE_ADMIN_ACTION"
	// Connections (connect, disconnect).
	FieldHost     = "EXECGATE_HOST"      // the name decided, or the IP literal
	FieldPort     = "EXECGATE_PORT"      // its port
	FieldAddr     = "EXECGATE_ADDR"      // what was dialled: IP:PORT
	FieldProto    = "EXECGATE_PROTO"     // how the run came: http, socks5 or transparent
	FieldClient   = "EXECGATE_CLIENT"    // the run's end, inside its namespace
	FieldBytesOut = "EXECGATE_BYTES_OUT" // run to destination
	FieldBytesIn  = "EXECGATE_BYTES_IN"  // destination to run
	FieldError    = "EXECGATE_ERROR"     // why an allowed connection failed or ended early
	// Change sets (changes).
	FieldFilesCreated  = "EXECGATE_FILES_CREATED"
	FieldFilesModified = "EXECGATE_FILES_MODIFIED"
	FieldFilesDeleted  = "EXECGATE_FILES_DELETED"
	FieldChangeBytes   = "EXECGATE_CHANGE_BYTES"
	FieldPaths         = "EXECGATE_PATHS"      // a JSON array of the first 100 paths
	FieldLost          = "EXECGATE_AUDIT_LOST" // how many records a failing sink lost before this one
)

// FieldHostname is journald's trusted field for the host a record was
// logged on. The sinks never write it; journalctl's output has it.
const FieldHostname = "_HOSTNAME"

// Identifier is SYSLOG_IDENTIFIER on every record.
const Identifier = "execgated"

// Record is one audit entry: a MESSAGE line, a PRIORITY and fields.
type Record struct {
	Time     time.Time // set by the sink when zero
	Priority int
	Message  string
	Fields   map[string]string
}

// New starts a record for an event.
func New(ev Event, priority int, message string) *Record {
	return &Record{Priority: priority, Message: message, Fields: map[string]string{FieldEvent: string(ev)}}
}

// Set adds a field; empty values are left out.
func (r *Record) Set(key, value string) *Record {
	if value != "" {
		r.Fields[key] = value
	}
	return r
}

// SetInt adds an integer field.
func (r *Record) SetInt(key string, v int64) *Record {
	r.Fields[key] = strconv.FormatInt(v, 10)
	return r
}

// Event returns the record's event.
func (r *Record) Event() Event { return Event(r.Fields[FieldEvent]) }

// Sink stores records. Write is synchronous and safe for concurrent use; an
// error means the record is not stored.
type Sink interface {
	Write(r *Record) error
	Close() error
}

// MaxFieldNameLen is journald's limit on field names.
const MaxFieldNameLen = 64

// ValidFieldName reports whether name is a field name journald accepts
// from a client: upper-case ASCII letters, digits and underscores, not
// starting with an underscore (those are journald's trusted fields) or a
// digit, at most 64 bytes.
func ValidFieldName(name string) bool {
	if name == "" || len(name) > MaxFieldNameLen || name[0] == '_' || (name[0] >= '0' && name[0] <= '9') {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if (c < 'A' || c > 'Z') && (c < '0' || c > '9') && c != '_' {
			return false
		}
	}
	return true
}

// Validate checks what both sinks need before storing a record: a
// priority journald knows (0-7) and valid field names. MESSAGE, PRIORITY
// and SYSLOG_IDENTIFIER in Fields are ignored by the sinks (Message,
// Priority and Identifier win), so they are not errors.
func (r *Record) Validate() error {
	if r == nil {
		return errors.New("audit: nil record")
	}
	if r.Priority < 0 || r.Priority > 7 {
		return fmt.Errorf("audit: priority %d out of range 0-7", r.Priority)
	}
	for k := range r.Fields {
		if !ValidFieldName(k) {
			return fmt.Errorf("audit: invalid field name %q (want A-Z, 0-9 and _, not starting with _ or a digit, at most %d bytes)", k, MaxFieldNameLen)
		}
	}
	return nil
}

// Argv decodes EXECGATE_ARGV (a JSON array of strings). It returns nil
// and no error when the field is absent.
func (r *Record) Argv() ([]string, error) {
	s, ok := r.Fields[FieldArgv]
	if !ok {
		return nil, nil
	}
	var argv []string
	if err := json.Unmarshal([]byte(s), &argv); err != nil {
		return nil, fmt.Errorf("audit: %s is not a JSON array of strings: %w", FieldArgv, err)
	}
	return argv, nil
}

// SetArgv stores argv as EXECGATE_ARGV, a JSON array (without HTML
// escaping, so journalctl shows `<` as `<`). JSON strings are UTF-8: a
// word with invalid UTF-8 keeps U+FFFD in place of the bad bytes.
func (r *Record) SetArgv(argv []string) *Record {
	if argv == nil {
		argv = []string{}
	}
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(argv) // a []string always encodes
	r.Fields[FieldArgv] = strings.TrimSuffix(b.String(), "\n")
	return r
}
