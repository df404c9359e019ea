package profiles

import "testing"

func FuzzParseProfile(f *testing.F) {
	f.Add([]byte(goodProfile))
	f.Add([]byte("user = \"a\"\nworkdirs = [\"/x\"]\n[[rule]]\nmatch = \"git {a,b} **\"\naction = \"deny\"\n"))
	f.Add([]byte("[limits]\nmemory = 5\ncpu = 1.5\n[schedule]\nwindows = [\"Fri-Mon 22:00-06:00\"]\n"))
	f.Add([]byte("a = [[[[[[1]]]]]]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParseProfile("/agents/f.toml", data, nil)
		if err == nil && (p.Name != "f" || len(p.Workdirs) == 0) {
			t.Fatalf("accepted profile without workdirs: %q", data)
		}
		ParseConfig("/etc/execgate/execgate.toml", data)
	})
}
