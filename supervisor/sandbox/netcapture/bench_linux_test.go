package netcapture

import (
	"fmt"
	"net"
	"os"
	"slices"
	"testing"
	"time"
)

// TestBenchConnect (EXECGATE_BENCH=1) compares connect() set-up time,
// inside one confined namespace, through the REDIRECT (to 203.0.113.7:443,
// taken by the transparent listener) with a direct connect to a listener
// on 127.0.0.1. Each sample is one net.Dial until established; the
// listeners accept and close.
func TestBenchConnect(t *testing.T) {
	if os.Getenv("EXECGATE_BENCH") != "1" {
		t.Skip("set EXECGATE_BENCH=1")
	}
	ns := newNetns(t)
	if err := Setup(ns, testPorts); err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{fmt.Sprintf("127.0.0.1:%d", testPorts.Transparent), "127.0.0.1:9000"} {
		ln := listen(t, ns, "tcp", addr)
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
	}
	const n = 3000
	var redirect, direct []time.Duration
	err := InNetns(ns, func() error {
		for i := 0; i < n; i++ {
			for _, to := range []string{"203.0.113.7:443", "127.0.0.1:9000"} {
				start := time.Now()
				c, err := net.Dial("tcp", to)
				d := time.Since(start)
				if err != nil {
					return err
				}
				c.Close()
				if to == "127.0.0.1:9000" {
					direct = append(direct, d)
				} else {
					redirect = append(redirect, d)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	r, d := median(redirect), median(direct)
	t.Logf("connect set-up, median of %d: redirect %v, direct %v, ratio %.2f, added %v",
		n, r, d, float64(r)/float64(d), r-d)
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
