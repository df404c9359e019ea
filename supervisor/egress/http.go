package egress

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Bounds on a proxy request's head.
const (
	maxHeadBytes = 16 << 10
	maxHeaders   = 100
)

// httpRequest is a parsed proxy request head.
type httpRequest struct {
	method string
	host   string // normalised; an IP literal without brackets
	lit    netip.Addr
	port   uint16
	path   string   // origin-form target of an absolute-form request
	header []string // raw header lines, for forwarding
}

// parseRequestLine parses "CONNECT host:port HTTP/1.x" (authority form)
// or "GET http://host[:port]/path HTTP/1.x" (absolute form, http only).
func parseRequestLine(line string) (*httpRequest, error) {
	parts := strings.Split(line, " ")
	if len(parts) != 3 || !strings.HasPrefix(parts[2], "HTTP/1.") || len(parts[2]) != 8 {
		return nil, errors.New("malformed request line")
	}
	method, tgt := parts[0], parts[1]
	if method == "" || strings.ContainsAny(method, "\t\r\n\x00") {
		return nil, errors.New("malformed method")
	}
	r := &httpRequest{method: method}
	if method == "CONNECT" {
		return r, r.setHostPort(tgt, false)
	}
	rest, ok := strings.CutPrefix(tgt, "http://")
	if !ok {
		return nil, errors.New("only CONNECT and absolute http:// requests are proxied")
	}
	auth, path := rest, "/"
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		auth, path = rest[:i], rest[i:]
		if path[0] != '/' {
			path = "/" + path
		}
	}
	if strings.Contains(auth, "@") {
		return nil, errors.New("user info in a proxy request")
	}
	r.path = path
	return r, r.setHostPort(auth, true)
}

// setHostPort parses host:port ([v6]:port); the port may be left out only
// for http (80).
func (r *httpRequest) setHostPort(s string, dflt bool) error {
	h, ps, err := net.SplitHostPort(s)
	if err != nil {
		if !dflt {
			return fmt.Errorf("bad authority %q: need host:port", s)
		}
		h, ps = s, "80"
		if strings.HasPrefix(s, "[") { // [v6] with no port
			h = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
		}
	}
	port, err := strconv.ParseUint(ps, 10, 16)
	if err != nil || port == 0 || ps[0] == '+' || len(ps) > 5 {
		return fmt.Errorf("bad port %q", ps)
	}
	if strings.Contains(h, ":") { // SplitHostPort removed the brackets
		h = "[" + h + "]"
	}
	if r.host, r.lit, err = normHost(h); err != nil {
		return err
	}
	r.port = uint16(port)
	return nil
}

// readHead reads a request line and its headers within the bounds.
func readHead(br *bufio.Reader) (*httpRequest, error) {
	budget := maxHeadBytes
	readLine := func() (string, error) {
		var b []byte
		for {
			frag, more, err := br.ReadLine()
			if err != nil {
				return "", err
			}
			if budget -= len(frag) + 2; budget < 0 {
				return "", errors.New("request head too large")
			}
			b = append(b, frag...)
			if !more {
				return string(b), nil
			}
		}
	}
	line, err := readLine()
	if err != nil {
		return nil, err
	}
	r, err := parseRequestLine(line)
	if err != nil {
		return nil, err
	}
	for {
		h, err := readLine()
		if err != nil {
			return nil, err
		}
		if h == "" {
			return r, nil
		}
		if len(r.header) >= maxHeaders {
			return nil, errors.New("too many header lines")
		}
		r.header = append(r.header, h)
	}
}

// ServeHTTP serves the HTTP proxy endpoint (HTTP_PROXY / HTTPS_PROXY) on
// ln until it is closed.
func (p *Proxy) ServeHTTP(ln net.Listener) error { return p.serve(ln, p.handleHTTP) }

func (p *Proxy) handleHTTP(c net.Conn) {
	_ = c.SetDeadline(time.Now().Add(p.cfg.HandshakeTimeout)) // best effort
	br := bufio.NewReaderSize(c, 4096)
	req, err := readHead(br)
	if err != nil {
		writeHTTP(c, 400, "Bad Request", "execgate: bad proxy request: "+err.Error())
		return
	}
	s := p.open(p.ctx, target{proto: ProtoHTTP, client: clientAddr(c), host: req.host, lit: req.lit, port: req.port})
	if s.up == nil {
		if s.refused() {
			writeHTTP(c, 403, "Forbidden", denialText(s.ev))
		} else {
			writeHTTP(c, 502, "Bad Gateway", fmt.Sprintf("execgate: connect %s: %s", hostPort(s.ev), s.ev.Err))
		}
		return
	}
	_ = c.SetDeadline(time.Time{}) // clear; a failure shows up in the relay
	var pre []byte
	if req.method == "CONNECT" {
		if _, err := c.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n")); err != nil {
			_ = s.up.Close() // the run went away; relay below records it
		}
	} else {
		pre = req.forwardHead()
	}
	if n := br.Buffered(); n > 0 {
		b, _ := br.Peek(n) // cannot fail: n bytes are buffered
		pre = append(pre, b...)
	}
	p.relay(c, pre, s)
}

// forwardHead rewrites an absolute-form request for the origin: the
// origin-form target, no proxy or hop-by-hop headers, and Connection:
// close, so a second request on the connection cannot go to another host.
func (r *httpRequest) forwardHead() []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\n", r.method, r.path)
	for _, h := range r.header {
		k, _, _ := strings.Cut(h, ":")
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "proxy-connection", "proxy-authorization", "connection", "keep-alive":
			continue
		}
		b.WriteString(h + "\r\n")
	}
	b.WriteString("Connection: close\r\n\r\n")
	return []byte(b.String())
}

func hostPort(e Event) string {
	return net.JoinHostPort(e.Host, strconv.Itoa(int(e.Port)))
}

// denialText is the one-line denial the run sees, shaped like egsh's.
func denialText(e Event) string {
	s := "execgate: denied: connect " + hostPort(e) + ": " + e.Reason
	if e.Reason == "" {
		s += "no rule allows it"
	}
	if e.Rule != "" {
		s += " (" + e.Rule + ")"
	}
	return s
}

func writeHTTP(c net.Conn, code int, status, body string) {
	body += "\n"
	msg := fmt.Sprintf("HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
		code, status, len(body), body)
	_, _ = c.Write([]byte(msg)) // the run may be gone; nothing else to tell
}
