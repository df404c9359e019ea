package sandbox

import (
	"bytes"
	"errors"
	"strings"
	"sync"
	"testing"
)

type failWriter struct{ n int }

func (w *failWriter) Write(p []byte) (int, error) {
	w.n += len(p)
	return 0, errors.New("gone")
}

func TestPump(t *testing.T) {
	var mu sync.Mutex
	src := strings.Repeat("0123456789", 1000)
	var buf bytes.Buffer
	r := pump(&buf, &mu, strings.NewReader(src), 25, make([]byte, 7))
	if buf.String() != src[:25] || r.total != int64(len(src)) || !r.truncated {
		t.Errorf("limit 25: got %q total %d truncated %v", buf.String(), r.total, r.truncated)
	}
	buf.Reset()
	r = pump(&buf, &mu, strings.NewReader(src), 0, make([]byte, 64))
	if buf.String() != src || r.truncated {
		t.Errorf("no limit: %d bytes truncated %v", buf.Len(), r.truncated)
	}
	buf.Reset()
	r = pump(&buf, &mu, strings.NewReader(src), int64(len(src)), make([]byte, 64))
	if buf.String() != src || r.truncated {
		t.Errorf("limit = size: truncated %v", r.truncated)
	}
	// A failing writer stops receiving, but the source is still drained.
	fw := &failWriter{}
	r = pump(fw, &mu, strings.NewReader(src), 0, make([]byte, 100))
	if r.writeErr == nil || fw.n != 100 || r.total != int64(len(src)) {
		t.Errorf("failing writer: %+v wrote %d", r, fw.n)
	}
	r = pump(nil, &mu, strings.NewReader(src), 0, make([]byte, 100))
	if r.total != int64(len(src)) {
		t.Errorf("nil writer: %+v", r)
	}
}
