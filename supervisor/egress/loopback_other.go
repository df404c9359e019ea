//go:build !linux

package egress

import (
	"net"
	"syscall"
)

// TCP_CONGESTION is Linux-only: see loopback_linux.go.

func tuneLoopbackListener(net.Listener) {}

func loopbackDialControl(string, string, syscall.RawConn) error { return nil }

func tuneLoopback(net.Conn) {}
