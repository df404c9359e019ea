package sandbox

import (
	"reflect"
	"testing"
)

func TestWireRoundTrip(t *testing.T) {
	in := initConfig{
		Shell: "/bin/sh", Argv: []string{"/bin/sh", "-c", "echo 'a\x00b'", ""}, Env: []string{"A=1"},
		Dir: "/w", UID: 4242, GID: 4243, ReadOnly: []mountTarget{{"/r", 2049, 12}}, MaskFiles: []mountTarget{{"/f1", 1<<40 | 7, 1 << 63}, {"/f2", 0, 0}},
		MaskDirs: []mountTarget{{"/d", 3, 4}},
		NetNSFD:  5, NotifyFD: -1, Seccomp: []byte{1, 2, 3, 0, 255},
	}
	b := in.marshal()
	var out initConfig
	if err := out.unmarshal(b); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Errorf("round trip:\n%+v\n%+v", in, out)
	}
	for i := 0; i < len(b); i++ {
		var c initConfig
		if err := c.unmarshal(b[:i]); err == nil {
			t.Fatalf("truncated at %d: no error", i)
		}
	}
	if err := out.unmarshal(append(b, 0)); err == nil {
		t.Error("trailing byte: no error")
	}
}

func TestStatusLines(t *testing.T) {
	for _, c := range []struct {
		name, raw string
		want      initStatus
	}{
		{"empty", "", initStatus{}},
		{"exit", "done 3 0\n", initStatus{Exit: 3, Done: true}},
		{"signal", "done 137 9\n", initStatus{Exit: 137, Signal: 9, Done: true}},
		{"error", "error mounts: mask /x: permission denied\n", initStatus{Error: "mounts: mask /x: permission denied"}},
		{"no newline", "done 1 0", initStatus{Exit: 1, Done: true}},
		{"not numbers", "done x y\n", initStatus{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := parseStatus([]byte(c.raw)); got != c.want {
				t.Errorf("%q: %+v, want %+v", c.raw, got, c.want)
			}
		})
	}
	s := initStatus{Error: "a\nb"}
	if got := parseStatus(s.line()); got.Error != "a b" {
		t.Errorf("multi-line error: %+v", got)
	}
}
