package egress

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

// FuzzSOCKSRequest: the greeting and request parsers never panic, and
// what they accept is a CONNECT to a normalised host and a non-zero port.
func FuzzSOCKSRequest(f *testing.F) {
	for _, s := range [][]byte{
		{5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1, 0, 80},
		append([]byte{5, 1, 0, 5, 1, 0, 3, 7}, "ok.test\x01\xbb"...),
		append([]byte{5, 1, 0, 5, 1, 0, 3, 5}, "[::1]\x00\x16"...),
		{5, 1, 0, 5, 1, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1, 0, 22},
		{5, 1, 0, 5, 2, 0, 1, 1, 2, 3, 4, 0, 80},
		{5, 0}, {4, 1, 0}, {5, 1, 0, 5, 1, 0, 9},
		append([]byte{5, 1, 0, 5, 1, 0, 3, 10}, "2130706433\x00\x50"...),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		ok, err := readSOCKSGreeting(r)
		if err != nil || !ok {
			return
		}
		host, lit, port, err := readSOCKSRequest(r)
		var se *socksError
		if err != nil && !errors.As(err, &se) && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("unexpected error type %T %v", err, err)
		}
		if err == nil {
			checkParsedHost(t, host, lit.IsValid(), port)
		}
	})
}

// FuzzRequestLine: the HTTP proxy's request-line parser never panics, and
// what it accepts is a normalised host and a non-zero port.
func FuzzRequestLine(f *testing.F) {
	for _, s := range []string{
		"CONNECT ok.test:443 HTTP/1.1", "CONNECT [::1]:22 HTTP/1.1", "CONNECT 127.0.0.1:80 HTTP/1.0",
		"GET http://ok.test/x HTTP/1.1", "GET http://[fe80::1%25eth0]:80/ HTTP/1.1", "CONNECT ok.test:0 HTTP/1.1",
		"CONNECT ok.test HTTP/1.1", "GET https://ok.test/ HTTP/1.1", "CONNECT a@b:1 HTTP/1.1",
		"GET http://u:p@ok.test/ HTTP/1.1", "CONNECT 0x7f.1:80 HTTP/1.1", "CONNECT ok.test:+80 HTTP/1.1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		r, err := parseRequestLine(line)
		if err != nil {
			return
		}
		checkParsedHost(t, r.host, r.lit.IsValid(), r.port)
		if r.method != "CONNECT" && !strings.HasPrefix(r.path, "/") {
			t.Fatalf("path %q", r.path)
		}
	})
}

func checkParsedHost(t *testing.T, host string, lit bool, port uint16) {
	t.Helper()
	if port == 0 {
		t.Fatal("port 0 accepted")
	}
	if lit {
		if _, l, err := normHost(host); err != nil || l.String() != host || l.Is4In6() || l.Zone() != "" {
			t.Fatalf("literal %q not canonical", host)
		}
		return
	}
	if !validName(host) || strings.ToLower(host) != host || strings.HasSuffix(host, ".") {
		t.Fatalf("name %q not normalised", host)
	}
}
