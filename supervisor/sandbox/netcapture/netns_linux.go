package netcapture

import (
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// InNetns runs fn on an OS thread that has joined the network namespace
// nsFd, and returns fn's error. Sockets fn creates belong to that namespace
// for good. fn must not start goroutines that expect to be in it.
//
// The thread is moved back to the namespace it came from afterwards; if
// that fails, the goroutine exits still locked, so the runtime kills the
// thread instead of handing it to other goroutines.
func InNetns(nsFd int, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netcapture: open current netns: %w", err)
			return
		}
		defer orig.Close()
		if err := unix.Setns(nsFd, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netcapture: setns into run netns: %w", err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			// Stay locked: this thread dies when the goroutine returns.
			errc <- errors.Join(ferr, fmt.Errorf("netcapture: setns back: %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// ListenIn is net.Listen inside the network namespace nsFd.
func ListenIn(nsFd int, network, addr string) (net.Listener, error) {
	var l net.Listener
	err := InNetns(nsFd, func() error {
		var err error
		l, err = net.Listen(network, addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("netcapture: listen %s %s in netns: %w", network, addr, err)
	}
	return l, nil
}

// ListenPacketIn is net.ListenPacket inside the network namespace nsFd.
func ListenPacketIn(nsFd int, network, addr string) (net.PacketConn, error) {
	var c net.PacketConn
	err := InNetns(nsFd, func() error {
		var err error
		c, err = net.ListenPacket(network, addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("netcapture: listen %s %s in netns: %w", network, addr, err)
	}
	return c, nil
}

// ListenInPath is ListenIn with the namespace named by a path such as
// /run/netns/NAME or /proc/PID/ns/net.
func ListenInPath(nsPath, network, addr string) (net.Listener, error) {
	f, err := os.Open(nsPath)
	if err != nil {
		return nil, fmt.Errorf("netcapture: open netns: %w", err)
	}
	defer f.Close()
	return ListenIn(int(f.Fd()), network, addr)
}

// NewNetns creates a network namespace holding only a loopback that is
// down, and returns an fd that keeps it alive.
func NewNetns() (*os.File, error) {
	type result struct {
		f   *os.File
		err error
	}
	ch := make(chan result, 1)
	go func() {
		// Namespaces belong to threads: do the work on one locked thread
		// and put it back, so that no thread the runtime reuses (and no
		// Pdeathsig tied to a thread) is affected.
		runtime.LockOSThread()
		orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{nil, fmt.Errorf("netcapture: netns: open current: %w", err)}
			return
		}
		defer orig.Close()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			ch <- result{nil, fmt.Errorf("netcapture: netns: unshare: %w", err)}
			return
		}
		f, ferr := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			// Stay locked: the runtime ends this thread when we return.
			if f != nil {
				f.Close()
			}
			ch <- result{nil, fmt.Errorf("netcapture: netns: restore: %w", err)}
			return
		}
		runtime.UnlockOSThread()
		if ferr != nil {
			ch <- result{nil, fmt.Errorf("netcapture: netns: open new: %w", ferr)}
			return
		}
		ch <- result{f, nil}
	}()
	r := <-ch
	return r.f, r.err
}
