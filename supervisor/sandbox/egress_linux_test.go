package sandbox

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/execgate/execgate/supervisor/sandbox/netcapture"
)

// fakeEgress answers every redirected connection with the original
// destination it was sent to, and records what it saw.
type fakeEgress struct {
	mu     sync.Mutex
	dsts   []string
	ep     *netcapture.Endpoints
	served chan struct{}
}

func (f *fakeEgress) Serve(ep *netcapture.Endpoints) error {
	f.ep = ep
	close(f.served)
	for _, ln := range ep.Transparent {
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				dst, err := netcapture.OriginalDst(c.(*net.TCPConn))
				f.mu.Lock()
				f.dsts = append(f.dsts, dst.String())
				f.mu.Unlock()
				fmt.Fprintf(c, "captured %v %v\n", dst, err)
				c.Close()
			}
		}()
	}
	return nil
}

// TestEgressCapture: with Spec.Egress the run's TCP goes to the Egress's
// endpoints and nowhere else, its resolv.conf and hosts are execgate's,
// and the host's files are untouched.
func TestEgressCapture(t *testing.T) {
	r := newRunner(t)
	d := workdir(t)
	host, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	hostSaw := make(chan struct{}, 4)
	go func() {
		for {
			c, err := host.Accept()
			if err != nil {
				return
			}
			c.Close()
			hostSaw <- struct{}{}
		}
	}()
	hostResolv, _ := os.ReadFile("/etc/resolv.conf")
	// A host daemon's socket directory (as systemd-resolved's) is hidden.
	hidden := filepath.Join(d, "resolve")
	if err := os.Mkdir(hidden, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(hidden, "io.systemd.Resolve"), []byte("socket"), 0o644); err != nil {
		t.Fatal(err)
	}
	saved := netHidden
	netHidden = []string{hidden}
	defer func() { netHidden = saved }()
	port := host.Addr().(*net.TCPAddr).Port
	script := fmt.Sprintf(`cat /etc/resolv.conf /etc/hosts
ls -A %s | sed 's/^/HIDDEN:/'
exec 3<>/dev/tcp/203.0.113.7/443 && head -n1 <&3
exec 4<>/dev/tcp/127.0.0.1/%d && echo HOST-LOOPBACK
echo hi > /etc/resolv.conf && echo WROTE
env | grep -ci _proxy=
true`, hidden, port)
	eg := &fakeEgress{served: make(chan struct{})}
	spec := newSpec(t, d, script)
	spec.Shell, spec.Egress = "/bin/bash", eg
	spec.Env = append(spec.Env, netcapture.DefaultPorts.Env()...)
	_, out, errs := runIt(t, r, spec)
	defer eg.ep.Close()
	for _, want := range []string{"nameserver 127.0.0.1", "127.0.0.1\tlocalhost", "captured 203.0.113.7:443 <nil>"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s\nstderr: %s", want, out, errs)
		}
	}
	for _, not := range []string{"HOST-LOOPBACK", "WROTE", "HIDDEN:"} {
		if strings.Contains(out, not) {
			t.Errorf("output has %q:\n%s", not, out)
		}
	}
	sc := bufio.NewScanner(strings.NewReader(out))
	last := ""
	for sc.Scan() {
		last = sc.Text()
	}
	if last != "8" {
		t.Errorf("proxy variables: %q, want 8", last)
	}
	select {
	case <-hostSaw:
		t.Error("the host's loopback listener saw a connection from a captured run")
	default:
	}
	if now, _ := os.ReadFile("/etc/resolv.conf"); string(now) != string(hostResolv) {
		t.Errorf("the host's resolv.conf changed: %q", now)
	}

	spec = newSpec(t, d, "true")
	spec.Network, spec.Egress = true, &fakeEgress{served: make(chan struct{})}
	if _, err := r.Run(t.Context(), spec); err == nil || !strings.Contains(err.Error(), "exclude each other") {
		t.Errorf("Network with Egress: %v", err)
	}
}
