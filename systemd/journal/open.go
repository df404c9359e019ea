package journal

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/execgate/execgate/audit"
)

// OpenSink opens the audit sink named by spec, as in execgated's --audit
// flag and execgate.toml:
//   - "journal": journald (NewSink); an error when journald is absent;
//   - "file:/abs/path": the JSONL file at that path;
//   - "auto": journald when its socket exists, else the default file
//     (audit.DefaultFile, or WithDefaultFile). A socket that exists with
//     no journald behind it is an error, not a reason to fall back.
func OpenSink(spec string, opts ...Option) (audit.Sink, error) {
	o := buildOptions(opts)
	switch {
	case spec == "journal" || spec == "journald":
		return NewSink(opts...)
	case spec == "auto":
		if socketExists() {
			return NewSink(opts...)
		}
		return openFile(o.defaultFile)
	case strings.HasPrefix(spec, "file:"):
		return openFile(strings.TrimPrefix(spec, "file:"))
	default:
		return nil, fmt.Errorf("audit sink %q: want journal, file:/ABS/PATH or auto", spec)
	}
}

func openFile(path string) (audit.Sink, error) {
	if !filepath.IsAbs(path) {
		return nil, fmt.Errorf("audit sink file:%s: the path must be absolute", path)
	}
	s, err := audit.NewFileSink(path)
	if err != nil {
		return nil, err
	}
	return s, nil
}
