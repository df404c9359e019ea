// Package durable writes files that must survive a power cut: the data is
// synced before the call returns, and so is the name in its directory.
package durable

import "os"

// WriteFile writes a new file (mode 0600) and syncs it to disk. The name
// is durable only after SyncDir of its directory.
func WriteFile(name string, b []byte) error {
	fh, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = fh.Write(b)
	if err == nil {
		err = fh.Sync()
	}
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	return err
}

// SyncDir makes the names created, removed or renamed in dir durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
