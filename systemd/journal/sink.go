package journal

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"time"

	"github.com/coreos/go-systemd/v22/journal"

	"github.com/execgate/execgate/audit"
)

// SocketPath is journald's native socket. go-systemd sends to this fixed
// path; tests give it a private /run (see internal/journaltest).
const SocketPath = "/run/systemd/journal/socket"

// DefaultTimeout bounds one Write when journald does not read its socket.
const DefaultTimeout = 5 * time.Second

// maxInFlight bounds the sends still blocked after their Write timed out.
const maxInFlight = 64

var (
	// ErrUnavailable: journald's socket is missing or nobody listens on it.
	ErrUnavailable = errors.New("journald is not available")
	// ErrTimeout: journald did not take the record within the timeout.
	ErrTimeout = errors.New("journald did not take the record in time")
)

// Option configures NewSink and OpenSink.
type Option func(*options)

type options struct {
	timeout     time.Duration
	defaultFile string
}

func buildOptions(opts []Option) options {
	o := options{timeout: DefaultTimeout, defaultFile: audit.DefaultFile}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// WithTimeout sets how long a Write waits for journald to take a record
// (default DefaultTimeout). A timed-out Write returns an error wrapping
// ErrTimeout; the record may still reach journald later.
func WithTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.timeout = d
		}
	}
}

// WithDefaultFile sets the JSONL file OpenSink("auto") uses when there is
// no journald (default audit.DefaultFile).
func WithDefaultFile(path string) Option {
	return func(o *options) { o.defaultFile = path }
}

// Sink writes audit records to journald with SYSLOG_IDENTIFIER=execgated.
// It is safe for concurrent use.
type Sink struct {
	timeout time.Duration
	slots   chan struct{}
	closed  atomic.Bool
}

var _ audit.Sink = (*Sink)(nil)

// NewSink checks that journald listens on SocketPath and returns a sink
// writing to it. Without journald it fails with an error wrapping
// ErrUnavailable that names the socket.
func NewSink(opts ...Option) (*Sink, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	o := buildOptions(opts)
	return &Sink{timeout: o.timeout, slots: make(chan struct{}, maxInFlight)}, nil
}

// Available returns nil when journald listens on SocketPath, else an
// error wrapping ErrUnavailable that says what is wrong.
func Available() error {
	st, err := os.Stat(SocketPath)
	if err != nil {
		return fmt.Errorf("%w: %w (is systemd-journald running?)", ErrUnavailable, err)
	}
	if st.Mode().Type() != os.ModeSocket {
		return fmt.Errorf("%w: %s is not a socket", ErrUnavailable, SocketPath)
	}
	c, err := net.Dial("unixgram", SocketPath)
	if err != nil {
		return fmt.Errorf("%w: %w (is systemd-journald running?)", ErrUnavailable, err)
	}
	_ = c.Close() // a probe: the dial was the check
	return nil
}

// socketExists reports whether journald's socket file exists.
func socketExists() bool {
	st, err := os.Stat(SocketPath)
	return err == nil && st.Mode().Type() == os.ModeSocket
}

// Write sends r to journald: MESSAGE, PRIORITY, SYSLOG_IDENTIFIER=execgated
// and every field of r. A zero r.Time is set to now (journald stamps
// its own receive time as __REALTIME_TIMESTAMP). Write fails when the
// record has an invalid field name, when journald is gone, and after the
// sink's timeout when journald does not read its socket.
func (s *Sink) Write(r *audit.Record) error {
	if err := r.Validate(); err != nil {
		return err
	}
	if s.closed.Load() {
		return audit.ErrClosed
	}
	if r.Time.IsZero() {
		r.Time = time.Now()
	}
	vars := make(map[string]string, len(r.Fields)+1)
	for k, v := range r.Fields {
		switch k {
		case audit.FieldMessage, audit.FieldPriority:
			continue // go-systemd sends these from the arguments
		}
		vars[k] = v
	}
	vars[audit.FieldIdentifier] = audit.Identifier

	timer := time.NewTimer(s.timeout)
	defer timer.Stop()
	select {
	case s.slots <- struct{}{}:
	case <-timer.C:
		return fmt.Errorf("journald: write %s record: %w (%d earlier writes still blocked)", r.Event(), ErrTimeout, maxInFlight)
	}
	done := make(chan error, 1)
	go func() {
		defer func() { <-s.slots }()
		done <- journal.Send(r.Message, journal.Priority(r.Priority), vars)
	}()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("journald: write %s record to %s: %w", r.Event(), SocketPath, err)
		}
		return nil
	case <-timer.C:
		return fmt.Errorf("journald: write %s record: %w (%v)", r.Event(), ErrTimeout, s.timeout)
	}
}

// Close makes later Writes fail with audit.ErrClosed. The socket is
// shared by the process (go-systemd keeps one) and stays open.
func (s *Sink) Close() error {
	s.closed.Store(true)
	return nil
}
