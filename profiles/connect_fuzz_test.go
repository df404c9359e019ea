package profiles

import (
	"strconv"
	"strings"
	"testing"
)

// FuzzConnectPattern compiles arbitrary patterns and matches arbitrary
// destinations: nothing panics, matching ignores case and a trailing dot,
// a name's own pattern matches it, and *.NAME never matches NAME.
func FuzzConnectPattern(f *testing.F) {
	for _, s := range []struct {
		pattern, host string
		port          uint16
	}{
		{"{registry.npmjs.org,github.com,*.github.com}:443", "api.github.com", 443},
		{"*.railway.app:*", "backboard.railway.app", 443},
		{"*.example.com:443", "example.com", 443},
		{"*.example.com:443", "evil.com.example.com", 443},
		{"example.com:443", "example.com.evil.com", 443},
		{"example.com:443", "exampleXcom", 443},
		{"10.20.0.0/16:5432", "10.20.1.2", 5432},
		{"[2001:db8::1]:443", "[2001:db8::1]", 443},
		{"[::ffff:10.0.0.0/104]:*", "::ffff:10.1.1.1", 80},
		{"*:*", "localhost.", 1},
		{"a..b:1", "a..b", 1},
		{"{a,{b,c}}.d:{1,2}", "C.D", 2},
		{"[fe80::1%eth0]:22", "fe80::1%eth0", 22},
		{"0x7f.0.0.1:80", "2130706433", 80},
		{"bücher.example:443", "xn--bcher-kva.example", 443},
	} {
		f.Add(s.pattern, s.host, s.port)
	}
	f.Fuzz(func(t *testing.T, pattern, host string, port uint16) {
		p, perr := CompileConnectPattern(pattern)
		d, derr := ParseDest(host)
		if perr == nil && derr == nil {
			m := p.Match(d, port)
			if du, err := ParseDest(strings.ToUpper(host)); err != nil || p.Match(du, port) != m {
				t.Fatalf("%q on %q: case changes the match (%v, %v)", pattern, host, m, err)
			}
			_ = p.NamesAddr(d.Addr, port)
		}
		if derr != nil || d.Name == "" || port == 0 {
			return
		}
		if dd, err := ParseDest(d.Name + "."); err != nil || dd != d {
			t.Fatalf("%q: a trailing dot changes the destination: %+v %v", host, dd, err)
		}
		ps := ":" + strconv.Itoa(int(port))
		own, err := CompileConnectPattern(d.Name + ps)
		if err != nil || !own.Match(d, port) {
			t.Fatalf("%q: its own pattern %q does not match it: %v", host, d.Name+ps, err)
		}
		if below, err := CompileConnectPattern("*." + d.Name + ps); err == nil && below.Match(d, port) {
			t.Fatalf("*.%s matches %s itself", d.Name, d.Name)
		}
	})
}
