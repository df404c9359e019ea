package egress

import (
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// errEgressLimit ends a relay whose run used up limits.egress_bytes.
var errEgressLimit = errors.New("egress limit reached")

// egressChunk is how much of the egress budget a relay reserves at a time.
// Copying through an io.LimitedReader keeps the kernel splice path.
const egressChunk = 1 << 20

// relay copies both ways between the run's conn and up until both halves
// end, then emits the disconnect event and frees the slot. pre is data
// the run already sent past the request (read into a buffer).
func (p *Proxy) relay(client net.Conn, pre []byte, s *session) {
	defer p.release()
	up := s.up
	start := time.Now()
	if !p.track(up) {
		_ = up.Close() // the proxy is closing
		return
	}
	defer p.untrack(up)
	tuneLoopback(client)
	tuneLoopback(up)
	outc := make(chan result, 1)
	go func() { outc <- p.copyOut(up, client, pre) }()
	in, inErr := io.Copy(client, up)
	if inErr != nil {
		cut(client, up) // unblock the other half
	} else {
		closeWrite(client)
	}
	out := <-outc
	_ = up.Close()     // both halves are done
	_ = client.Close() // both halves are done
	ev := s.ev
	ev.Kind, ev.BytesOut, ev.BytesIn, ev.Duration = "disconnect", out.n, in, time.Since(start)
	switch {
	case errors.Is(out.err, errEgressLimit):
		ev.Err = fmt.Sprintf("%v: cut after %d bytes (%s)", errEgressLimit, p.cfg.MaxEgressBytes, p.cfg.EgressRule)
	case out.err != nil && !errors.Is(out.err, net.ErrClosed):
		ev.Err = "out: " + out.err.Error()
	case inErr != nil && !errors.Is(inErr, net.ErrClosed):
		ev.Err = "in: " + inErr.Error()
	}
	p.emit(ev)
}

type result struct {
	n   int64
	err error
}

// copyOut copies the run's bytes to the destination within the egress
// budget. On EOF it half-closes up; on an error it cuts both.
func (p *Proxy) copyOut(up, client net.Conn, pre []byte) result {
	var r result
	if len(pre) > 0 {
		r = p.copyBudget(up, &onceReader{b: pre})
	}
	if r.err == nil {
		r2 := p.copyBudget(up, client)
		r.n, r.err = r.n+r2.n, r2.err
	}
	if r.err != nil {
		cut(client, up)
	} else {
		closeWrite(up)
	}
	return r
}

// copyBudget copies src to dst within the run's egress budget. The budget
// is taken in chunks reserved only once src has data, so an idle
// connection holds none of it; a chunk is at most a sixteenth of what is
// left, so a connection that goes idle mid-chunk holds little. When every
// byte left is reserved by other connections, it waits for them.
func (p *Proxy) copyBudget(dst io.Writer, src io.Reader) result {
	max := p.cfg.MaxEgressBytes
	if max <= 0 {
		n, err := io.Copy(dst, src)
		p.egressUsed.Add(n)
		return result{n, err}
	}
	var total int64
	for {
		if err := waitReadable(src); err != nil {
			return result{total, err}
		}
		chunk, err := p.reserveWait(max)
		if err != nil {
			return result{total, err}
		}
		lr := &io.LimitedReader{R: src, N: chunk}
		n, err := io.Copy(dst, lr)
		total += n
		p.egressUsed.Add(n)
		p.egressReserved.Add(n - chunk) // give back the unused part
		if err != nil || lr.N > 0 {
			return result{total, err} // an error, or EOF before the chunk's end
		}
	}
}

// reserveWait reserves a chunk of the budget, waiting while the rest is
// reserved by other connections; errEgressLimit once it is all used.
func (p *Proxy) reserveWait(max int64) (int64, error) {
	for {
		if c := p.reserve(max); c > 0 {
			return c, nil
		}
		if p.egressUsed.Load() >= max {
			return 0, errEgressLimit
		}
		select {
		case <-p.ctx.Done():
			return 0, net.ErrClosed
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// reserve takes up to egressChunk bytes of the budget, and at most a
// sixteenth of what is left (at least one byte).
func (p *Proxy) reserve(limit int64) int64 {
	for {
		r := p.egressReserved.Load()
		left := limit - r
		if left <= 0 {
			return 0
		}
		c := min(max(left/16, 1), egressChunk)
		if p.egressReserved.CompareAndSwap(r, r+c) {
			return c
		}
	}
}

// waitReadable returns once src has data or its end (a peek, which
// consumes nothing), so no budget is reserved for a connection that sends
// nothing. Readers other than sockets are ready at once.
func waitReadable(src io.Reader) error {
	sc, ok := src.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	var buf [1]byte
	return rc.Read(func(fd uintptr) bool {
		// Data, EOF, or an error the copy will report: go on. EAGAIN:
		// wait for the poller.
		_, _, e := unix.Recvfrom(int(fd), buf[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		return e != unix.EAGAIN
	})
}

// onceReader reads b, then EOF (a bytes.Reader would be as good; this one
// keeps io.Copy from using WriterTo, so the budget's LimitedReader holds).
type onceReader struct{ b []byte }

func (o *onceReader) Read(p []byte) (int, error) {
	if len(o.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, o.b)
	o.b = o.b[n:]
	return n, nil
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite() // the peer may be gone already; Close follows
		return
	}
	_ = c.Close() // cannot half-close: close instead
}

func cut(a, b net.Conn) {
	_ = a.Close() // cutting both on an error; the other half's copy ends
	_ = b.Close() // likewise
}
