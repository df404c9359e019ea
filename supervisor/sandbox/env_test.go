package sandbox

import (
	"reflect"
	"testing"
)

func TestFilterEnv(t *testing.T) {
	from := []string{
		"PATH=/usr/bin", "SECRET_TOKEN=x", "LANG=C", "LC_ALL=C.UTF-8", "LC_TIME=en",
		"HOME=/root", "USER=root", "PWD=/", "LD_PRELOAD=/evil.so", "LD_LIBRARY_PATH=/l",
		"GLIBC_TUNABLES=x", "NODE_OPTIONS=--require x", "BASH_FUNC_ls%%=() { :; }", "BASH_ENV=/x",
		"PATH=/bin", "noequals", "=empty",
	}
	pass := []string{"PATH", "LANG", "LC_*", "LD_PRELOAD", "LD_*", "NODE_OPTIONS", "BASH_FUNC_*", "GLIBC_TUNABLES", "BASH_ENV", "HOME"}
	got := FilterEnv(pass, from, "/home/flow", "flow", "/srv/app")
	want := []string{
		"PATH=/bin", "LANG=C", "LC_ALL=C.UTF-8", "LC_TIME=en",
		"HOME=/home/flow", "USER=flow", "LOGNAME=flow", "PWD=/srv/app",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("FilterEnv:\n got %q\nwant %q", got, want)
	}
	if got := FilterEnv(nil, from, "/h", "u", "/w"); len(got) != 4 {
		t.Errorf("empty pass list kept %q", got)
	}
	for _, n := range []string{"LD_AUDIT", "PYTHONPATH", "PERL5OPT", "IFS", "DYLD_INSERT_LIBRARIES"} {
		if !NeverPassed(n) {
			t.Errorf("%s should never pass", n)
		}
	}
	if NeverPassed("PATH") || NeverPassed("LDFLAGS") {
		t.Error("PATH and LDFLAGS are ordinary")
	}
	if got := scrubEnv([]string{"A=1", "LD_PRELOAD=x", "bad", "B=2"}); !reflect.DeepEqual(got, []string{"A=1", "B=2"}) {
		t.Errorf("scrubEnv: %q", got)
	}
}
