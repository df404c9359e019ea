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
		name  string
		body  string
		code  int
		stdin string
	}{
		{"plain", `{"script":"ls"}`, 0, ""},
		{"stdin", `{"script":"cat","stdin":true}` + "\nhello\n", 0, "hello\n"},
		{"stdin without newline", `{"script":"cat","stdin":true}hi`, 0, "hi"},
		{"empty stdin", `{"script":"cat","stdin":true}`, 0, ""},
		{"timeout string", `{"script":"ls","timeout":"2s"}`, 0, ""},
		{"timeout seconds", `{"script":"ls","timeout":1.5}`, 0, ""},
		{"truncated", `{"script":`, 400, ""},
		{"unknown field", `{"script":"ls","bogus":1}`, 400, ""},
		{"NUL in script", `{"script":"ls\u0000"}`, 400, ""},
		{"empty script", `{"script":""}`, 400, ""},
		{"negative timeout", `{"script":"ls","timeout":-1}`, 400, ""},
		{"bad env name", `{"script":"ls","env":{"A=B":"x"}}`, 400, ""},
		{"too large", `{"script":"` + strings.Repeat("a", MaxRequestHeader) + `"}`, 413, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/v1/exec", strings.NewReader(tt.body))
			req, stdin, err := readRequest(r)
			code := 0
			if re, ok := err.(*requestError); ok {
				code = re.code
			} else if err != nil {
				t.Fatalf("unexpected error type %T", err)
			}
			if code != tt.code {
				t.Fatalf("code %d (%v), want %d", code, err, tt.code)
			}
			if code == 0 && req.Stdin {
				b, _ := io.ReadAll(stdin)
				if string(b) != tt.stdin {
					t.Errorf("stdin %q, want %q", b, tt.stdin)
				}
			}
		})
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
		name      string
		cwd, want string
		code      int
	}{
		{"default", "", wd, 0},
		{"below a workdir", wd + "/sub", wd + "/sub", 0},
		{"link into a workdir", root + "/in", wd + "/sub", 0}, // a link from outside into a workdir is fine
		{"link out of a workdir", wd + "/out", "", 403},       // a link out of it is not
		{"missing", wd + "/../work2", "", 400},
		{"a file", wd + "/file", "", 400},
		{"relative", "relative", "", 400},
		{"outside", "/etc", "", 403},
		{"prefix of a workdir", wd + "x", "", 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := resolveCwd(p, tc.cwd)
			code := 0
			if re, ok := err.(*requestError); ok {
				code = re.code
			}
			if got != tc.want || code != tc.code {
				t.Errorf("resolveCwd(%q) = %q, %v; want %q, %d", tc.cwd, got, err, tc.want, tc.code)
			}
		})
	}
}
