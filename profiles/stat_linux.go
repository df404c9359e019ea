package profiles

import (
	"os"
	"syscall"
)

type ownerInfo struct {
	uid, gid uint32
	mode     os.FileMode
}

func statOwner(path string) (ownerInfo, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return ownerInfo{}, err
	}
	st := fi.Sys().(*syscall.Stat_t)
	return ownerInfo{uid: st.Uid, gid: st.Gid, mode: fi.Mode()}, nil
}
