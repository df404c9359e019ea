package profiles

import "testing"

func FuzzParseProfile(f *testing.F) {
	f.Add([]byte(goodProfile))
	f.Add([]byte("user = \"a\"\nworkdirs = [\"/x\"]\n[[rule]]\nmatch = \"git {a,b} **\"\naction = \"deny\"\n"))
	f.Add([]byte("[limits]\nmemory = 5\ncpu = 1.5\n[schedule]\nwindows = [\"Fri-Mon 22:00-06:00\"]\n"))
	f.Add([]byte("a = [[[[[[1]]]]]]"))
	f.Add([]byte("uid = 7\nworkdirs = [\"/x\"]\n[[connect]]\nmatch = \"{a.com,*.b.org,[::1],10.0.0.0/8}:{443,*}\"\naction = \"allow\"\n"))
	f.Add([]byte("[network]\nprivate_ok = [\"10.0.0.0/8\", \"fd00::1\"]\n"))
	f.Add([]byte("uid = 7\nworkdirs = [\"/x\"]\n[network]\nmode = \"proxy\"\n[limits]\nconnections = 3\negress_bytes = \"1.5GiB\"\n"))
	f.Add([]byte("[network]\nresolver = \"[fe80::1%eth0]:53\"\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParseProfile("/agents/f.toml", data, nil)
		if err == nil && (p.Name != "f" || len(p.Workdirs) == 0) {
			t.Fatalf("accepted profile without workdirs: %q", data)
		}
		ParseConfig("/etc/execgate/execgate.toml", data)
	})
}
