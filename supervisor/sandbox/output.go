package sandbox

import (
	"io"
	"sync"
)

// streamResult is what pump saw on one output stream.
type streamResult struct {
	total     int64 // bytes produced, including dropped ones
	truncated bool  // bytes were dropped because of the limit
	writeErr  error // first error from dst; later output is drained
}

// pump streams src to dst as it comes, passing at most limit bytes (0 means
// no limit). It reads until EOF even past the limit or after dst fails, so
// that the sandboxed writer never blocks on a full pipe: the rest is counted
// and dropped. Writes hold mu, which the two streams of a run share: a
// caller may pass one writer for both.
func pump(dst io.Writer, mu *sync.Mutex, src io.Reader, limit int64, buf []byte) streamResult {
	var r streamResult
	var passed int64
	for {
		n, err := src.Read(buf)
		if n > 0 {
			r.total += int64(n)
			chunk := buf[:n]
			if limit > 0 && passed+int64(n) > limit {
				chunk = chunk[:limit-passed]
				r.truncated = true
			}
			if len(chunk) > 0 && dst != nil && r.writeErr == nil {
				mu.Lock()
				_, werr := dst.Write(chunk)
				mu.Unlock()
				if werr != nil {
					r.writeErr = werr
				}
			}
			passed += int64(len(chunk))
		}
		if err != nil {
			return r
		}
	}
}
