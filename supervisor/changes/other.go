//go:build !linux

package changes

import (
	"errors"
	"io"
	"time"
)

var errUnsupported = errors.New("changes: overlay change sets need Linux")

// Run is one run's overlay layers (Linux only).
type Run struct {
	ID     string
	Dir    string
	Start  time.Time
	Layers []Layer
}

func Prepare(stateDir, runID string, workdirs []string) (*Run, error) { return nil, errUnsupported }
func Recover(stateDir string) ([]Recovered, error)                    { return nil, nil }
func (r *Run) Compute() (*Set, error)                                 { return nil, errUnsupported }
func (r *Run) Apply(s *Set) error                                     { return errUnsupported }
func (r *Run) Discard() error                                         { return errUnsupported }
func (s *Set) Diff(w io.Writer, paths ...string) error                { return errUnsupported }
