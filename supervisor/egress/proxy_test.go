package egress

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// httpConnect sends CONNECT target and returns the connection (positioned
// after the response head), the status and, for a refusal, the body.
func httpConnect(t testing.TB, proxy, tgt string) (net.Conn, *bufio.Reader, int, string) {
	t.Helper()
	c, err := net.Dial("tcp", proxy)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() }) // test over
	if _, err := io.WriteString(c, "CONNECT "+tgt+" HTTP/1.1\r\nHost: "+tgt+"\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: "CONNECT"})
	if err != nil {
		t.Fatal(err)
	}
	var body []byte
	if resp.StatusCode != 200 {
		body, _ = io.ReadAll(resp.Body) // a short body; an error shows as a mismatch
	}
	return c, br, resp.StatusCode, string(body)
}

// socksConnect does a SOCKS5 CONNECT to host (a name, or a literal sent
// as ATYP 1/4) and returns the reply code.
func socksConnect(t testing.TB, proxy, host string, port uint16) (net.Conn, byte) {
	t.Helper()
	c, err := net.Dial("tcp", proxy)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() }) // test over
	req := []byte{5, 1, 0, 5, 1, 0}
	if ip, err := netip.ParseAddr(host); err == nil && ip.Is4() {
		req = append(append(req, 1), ip.AsSlice()...)
	} else if err == nil {
		req = append(append(req, 4), ip.AsSlice()...)
	} else {
		req = append(append(req, 3, byte(len(host))), host...)
	}
	req = binary.BigEndian.AppendUint16(req, port)
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	var r [12]byte
	if _, err := io.ReadFull(c, r[:12]); err != nil {
		t.Fatalf("socks reply: %v", err)
	}
	if r[0] != 5 || r[1] != 0 || r[2] != 5 {
		t.Fatalf("socks reply % x", r)
	}
	return c, r[3]
}

// roundTrip proves both halves work: what is sent comes back from echo.
func roundTrip(t testing.TB, c net.Conn, r io.Reader) {
	t.Helper()
	msg := []byte("ping through execgate\n")
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second)) // bounded wait
	if _, err := io.ReadFull(r, got); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("echo: %q, %v", got, err)
	}
}

func TestHTTPConnect(t *testing.T) {
	srv := newTestServer(t, "127.0.0.1:0", echo)
	other := newTestServer(t, "127.0.0.1:0", echo)
	f := newFixture(t, Config{
		Decider: &fakeDecider{
			allow: map[string]string{hp("ok.test", srv.port): "test.toml:3"},
			ask:   map[string]string{hp("ask.test", srv.port): "test.toml:5"},
		},
		Resolver: &fakeResolver{answers: map[string][][]netip.Addr{
			"ok.test": {{lo}}, "no.test": {{lo}}, "ask.test": {{lo}},
		}},
	})
	tests := []struct {
		name, target string
		code         int
		body         []string
	}{
		{"allowed", hp("ok.test", srv.port), 200, nil},
		{"allowed, upper case and trailing dot", hp("OK.Test.", srv.port), 200, nil},
		{"denied name", hp("no.test", srv.port), 403, []string{"not on the list", "(test.toml:9)", "no.test"}},
		{"allowed name, another port", hp("ok.test", other.port), 403, []string{"not on the list", "test.toml:9"}},
		{"ask with no asker", hp("ask.test", srv.port), 403, []string{"needs approval", "test.toml:5"}},
		{"IP literal", hp("127.0.0.1", srv.port), 403, []string{"127.0.0.1"}},
		{"inet_aton form", hp("2130706433", srv.port), 400, []string{"not a valid host"}},
		{"no port", "ok.test", 400, []string{"need host:port"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := srv.accepted.Load() + other.accepted.Load()
			c, br, code, body := httpConnect(t, f.http, tt.target)
			if code != tt.code {
				t.Fatalf("status %d, want %d (%s)", code, tt.code, body)
			}
			for _, w := range tt.body {
				if !strings.Contains(body, w) {
					t.Errorf("body %q lacks %q", body, w)
				}
			}
			if code == 200 {
				roundTrip(t, c, br)
				return
			}
			time.Sleep(20 * time.Millisecond) // a stray dial would have landed
			if n := srv.accepted.Load() + other.accepted.Load(); n != before {
				t.Fatalf("refused destination saw %d connections", n-before)
			}
		})
	}
}

// TestHTTPAbsolute forwards a plain http:// request with Connection: close.
func TestHTTPAbsolute(t *testing.T) {
	var got string
	srv := newTestServer(t, "127.0.0.1:0", func(c net.Conn) {
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		got = req.Method + " " + req.RequestURI + " " + req.Header.Get("Connection") + " " + req.Header.Get("Proxy-Authorization")
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi")
	})
	f := newFixture(t, Config{
		Decider:  &fakeDecider{allow: map[string]string{hp("ok.test", srv.port): "test.toml:3"}},
		Resolver: &fakeResolver{answers: map[string][][]netip.Addr{"ok.test": {{lo}}}},
	})
	c, err := net.Dial("tcp", f.http)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = io.WriteString(c, "GET http://ok.test:"+itoa(srv.port)+"/x?y=1 HTTP/1.1\r\nHost: ok.test\r\nProxy-Authorization: secret\r\nProxy-Connection: keep-alive\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("%v %v", resp, err)
	}
	if got != "GET /x?y=1 close " {
		t.Fatalf("origin saw %q", got)
	}
}

func itoa(p uint16) string { return strings.TrimPrefix(hp("", p), ":") }

func TestSOCKS5(t *testing.T) {
	srv := newTestServer(t, "127.0.0.1:0", echo)
	f := newFixture(t, Config{
		Decider: &fakeDecider{allow: map[string]string{
			hp("ok.test", srv.port): "test.toml:3", hp("127.0.0.1", srv.port): "test.toml:4",
		}},
		Resolver: &fakeResolver{answers: map[string][][]netip.Addr{"ok.test": {{lo}}, "no.test": {{lo}}}},
	})
	syn, _, err := f.names.Assign("ok.test") // as if the run had asked execgate's DNS
	if err != nil {
		t.Fatal(err)
	}
	unmapped, _ := netip.ParseAddr("198.19.255.1")
	tests := []struct {
		name, host string
		port       uint16
		code       byte
	}{
		{"name allowed", "ok.test", srv.port, socksOK},
		{"name denied", "no.test", srv.port, socksNotAllowed},
		{"name, port not allowed", "ok.test", srv.port + 1, socksNotAllowed},
		{"literal allowed by address rule", "127.0.0.1", srv.port, socksOK},
		{"literal of an allowed name is decided as an address", "127.0.0.2", srv.port, socksNotAllowed},
		{"literal as a domain is still a literal", "[::1]", srv.port, socksNotAllowed},
		{"synthetic literal maps back to its name", syn.String(), srv.port, socksOK},
		{"unmapped synthetic literal", unmapped.String(), srv.port, socksNotAllowed},
		{"v6 literal", "::1", srv.port, socksNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := srv.accepted.Load()
			c, code := socksConnect(t, f.socks, tt.host, tt.port)
			if code != tt.code {
				t.Fatalf("reply %#x, want %#x", code, tt.code)
			}
			if code == socksOK {
				roundTrip(t, c, c)
				return
			}
			time.Sleep(20 * time.Millisecond)
			if n := srv.accepted.Load() - before; n != 0 {
				t.Fatalf("refused destination saw %d connections", n)
			}
		})
	}
}
