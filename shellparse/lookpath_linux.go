package shellparse

import (
	"os"
	"path/filepath"
	"syscall"
)

// rootOnlyDir reports whether only root can change what dir contains: dir
// and every directory above it are root-owned and not group or world
// writable.
func rootOnlyDir(dir string) bool {
	for {
		st, err := os.Stat(dir)
		if err != nil {
			return false
		}
		sys, ok := st.Sys().(*syscall.Stat_t)
		if !ok || sys.Uid != 0 || st.Mode().Perm()&0o022 != 0 {
			return false
		}
		if dir == "/" {
			return true
		}
		dir = filepath.Dir(dir)
	}
}
