package supervisor

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/execgate/execgate/profiles"
)

func TestReadRequest(t *testing.T) {
	tests := []struct {
		body  string
		code  int
		stdin string
	}{
		{`{"script":"ls"}`, 0, ""},
		{`{"script":"cat","stdin":true}` + "\nhello\n", 0, "hello\n"},
		{`{"script":"cat","stdin":true}hi`, 0, "hi"}, // no newline after the head
		{`{"script":"cat","stdin":true}`, 0, ""},
		{`{"script":"ls","timeout":"2s"}`, 0, ""},
		{`{"script":"ls","timeout":1.5}`, 0, ""},
		{`{"script":`, 400, ""},
		{`{"script":"ls","bogus":1}`, 400, ""},
		{`{"script":"ls\u0000"}`, 400, ""},
		{`{"script":""}`, 400, ""},
		{`{"script":"ls","timeout":-1}`, 400, ""},
		{`{"script":"ls","env":{"A=B":"x"}}`, 400, ""},
		{`{"script":"` + strings.Repeat("a", MaxRequestHeader) + `"}`, 413, ""},
	}
	for _, tt := range tests {
		r := httptest.NewRequest(http.MethodPost, "/v1/exec", strings.NewReader(tt.body))
		req, stdin, err := readRequest(r)
		code := 0
		if re, ok := err.(*requestError); ok {
			code = re.code
		} else if err != nil {
			t.Fatalf("%.40q: unexpected error type %T", tt.body, err)
		}
		if code != tt.code {
			t.Errorf("%.40q: code %d (%v), want %d", tt.body, code, err, tt.code)
			continue
		}
		if code == 0 && req.Stdin {
			b, _ := io.ReadAll(stdin)
			if string(b) != tt.stdin {
				t.Errorf("%.40q: stdin %q, want %q", tt.body, b, tt.stdin)
			}
		}
	}
}

func TestResolveCwd(t *testing.T) {
	root := t.TempDir()
	wd := filepath.Join(root, "work")
	os.MkdirAll(filepath.Join(wd, "sub"), 0o755)
	os.Symlink("/etc", filepath.Join(wd, "out"))
	os.Symlink(filepath.Join(wd, "sub"), filepath.Join(root, "in"))
	os.WriteFile(filepath.Join(wd, "file"), nil, 0o644)
	p := &profiles.Profile{Workdirs: []string{wd}}
	for _, tc := range []struct {
		cwd, want string
		code      int
	}{
		{"", wd, 0},
		{wd + "/sub", wd + "/sub", 0},
		{root + "/in", wd + "/sub", 0}, // a link from outside into a workdir is fine
		{wd + "/out", "", 403},         // a link out of it is not
		{wd + "/../work2", "", 400},
		{wd + "/file", "", 400},
		{"relative", "", 400},
		{"/etc", "", 403},
		{wd + "x", "", 400},
	} {
		got, err := resolveCwd(p, tc.cwd)
		code := 0
		if re, ok := err.(*requestError); ok {
			code = re.code
		}
		if got != tc.want || code != tc.code {
			t.Errorf("resolveCwd(%q) = %q, %v; want %q, %d", tc.cwd, got, err, tc.want, tc.code)
		}
	}
}
