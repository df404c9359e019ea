package egress

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"syscall"
	"time"
)

// SOCKS5 reply codes (RFC 1928).
const (
	socksOK             = 0x00
	socksFailure        = 0x01
	socksNotAllowed     = 0x02 // connection not allowed by ruleset
	socksHostUnreach    = 0x04
	socksRefused        = 0x05
	socksCmdUnsupported = 0x07
	socksAddrUnsupport  = 0x08
)

// socksError is a request the parser refuses, with the reply code to send.
type socksError struct {
	code byte
	msg  string
}

func (e *socksError) Error() string { return "socks5: " + e.msg }

// readSOCKSGreeting reads the method negotiation and reports whether the
// client offers "no authentication" (0x00), the only method served.
func readSOCKSGreeting(r io.Reader) (bool, error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return false, err
	}
	if h[0] != 5 {
		return false, errors.New("socks5: not SOCKS version 5")
	}
	methods := make([]byte, h[1])
	if _, err := io.ReadFull(r, methods); err != nil {
		return false, err
	}
	for _, m := range methods {
		if m == 0 {
			return true, nil
		}
	}
	return false, nil
}

// readSOCKSRequest reads a request. Only CONNECT is served; a domain
// that is an IP literal is treated as that literal.
func readSOCKSRequest(r io.Reader) (host string, lit netip.Addr, port uint16, err error) {
	var h [4]byte
	if _, err = io.ReadFull(r, h[:]); err != nil {
		return "", lit, 0, err
	}
	if h[0] != 5 || h[2] != 0 {
		return "", lit, 0, &socksError{socksFailure, "malformed request"}
	}
	switch h[3] {
	case 1, 4:
		b := make([]byte, map[byte]int{1: 4, 4: 16}[h[3]])
		if _, err = io.ReadFull(r, b); err != nil {
			return "", lit, 0, err
		}
		ip, _ := netip.AddrFromSlice(b) // 4 or 16 bytes: always valid
		lit = ip.Unmap()
		host = lit.String()
	case 3:
		var n [1]byte
		if _, err = io.ReadFull(r, n[:]); err != nil {
			return "", lit, 0, err
		}
		b := make([]byte, n[0])
		if _, err = io.ReadFull(r, b); err != nil {
			return "", lit, 0, err
		}
		if host, lit, err = normHost(string(b)); err != nil {
			return "", lit, 0, &socksError{socksNotAllowed, err.Error()}
		}
	default:
		return "", lit, 0, &socksError{socksAddrUnsupport, "address type not supported"}
	}
	var pb [2]byte
	if _, err = io.ReadFull(r, pb[:]); err != nil {
		return "", lit, 0, err
	}
	if h[1] != 1 {
		return "", lit, 0, &socksError{socksCmdUnsupported, "only CONNECT is supported"}
	}
	port = binary.BigEndian.Uint16(pb[:])
	if port == 0 {
		return "", lit, 0, &socksError{socksNotAllowed, "port 0"}
	}
	return host, lit, port, nil
}

// ServeSOCKS5 serves the SOCKS5 endpoint (ALL_PROXY) on ln until it is
// closed.
func (p *Proxy) ServeSOCKS5(ln net.Listener) error { return p.serve(ln, p.handleSOCKS) }

func (p *Proxy) handleSOCKS(c net.Conn) {
	_ = c.SetDeadline(time.Now().Add(p.cfg.HandshakeTimeout)) // best effort
	ok, err := readSOCKSGreeting(c)
	if err != nil {
		return
	}
	if !ok {
		_, _ = c.Write([]byte{5, 0xff}) // no acceptable method; closing anyway
		return
	}
	if _, err := c.Write([]byte{5, 0}); err != nil {
		return
	}
	host, lit, port, err := readSOCKSRequest(c)
	if err != nil {
		var se *socksError
		if errors.As(err, &se) {
			if se.code == socksNotAllowed {
				// A refusal the run sees: on the record like any other.
				_ = p.emit(Event{Kind: "connect", Proto: ProtoSOCKS5, Client: clientAddr(c), Decision: Deny, Rule: p.cfg.OwnRule, Reason: "bad destination: " + se.msg})
			}
			socksReply(c, se.code)
		}
		return
	}
	s := p.open(p.ctx, target{proto: ProtoSOCKS5, client: clientAddr(c), host: host, lit: lit, port: port})
	if s.up == nil {
		code := byte(socksNotAllowed)
		if !s.refused() {
			code = socksHostUnreach
			if errors.Is(s.err, syscall.ECONNREFUSED) {
				code = socksRefused
			}
		}
		socksReply(c, code)
		return
	}
	_ = c.SetDeadline(time.Time{}) // clear; failures show up in the relay
	socksReply(c, socksOK)
	p.relay(c, nil, s)
}

// socksReply sends a reply with a zero bound address: the host side's
// addresses are not the run's business.
func socksReply(c net.Conn, code byte) {
	_, _ = c.Write([]byte{5, code, 0, 1, 0, 0, 0, 0, 0, 0}) // the run may be gone
}
