package supervisor

import (
	"context"
	"net"

	"golang.org/x/sys/unix"
)

// Peer is the caller as the kernel saw it when it connected.
type Peer struct {
	UID, GID uint32
	PID      int32
}

type peerKey struct{}

// peerContext is the http.Server ConnContext: it reads SO_PEERCRED once per
// connection. A connection whose credentials cannot be read carries no
// peer, and every handler refuses it.
func peerContext(ctx context.Context, c net.Conn) context.Context {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return ctx
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return ctx
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil || cerr != nil {
		return ctx
	}
	return context.WithValue(ctx, peerKey{}, Peer{UID: cred.Uid, GID: cred.Gid, PID: cred.Pid})
}

// peerFrom returns the caller of a request.
func peerFrom(ctx context.Context) (Peer, bool) {
	p, ok := ctx.Value(peerKey{}).(Peer)
	return p, ok
}
