//go:build !linux

package sandbox

import "context"

// Runner is unavailable outside Linux.
type Runner struct{}

// NewRunner fails outside Linux.
func NewRunner(opts ...Option) (*Runner, error) { return nil, ErrUnsupported }

// Run fails outside Linux.
func (r *Runner) Run(ctx context.Context, spec Spec) (Result, error) {
	return Result{}, ErrUnsupported
}

// CgroupVersion is 0 outside Linux.
func (r *Runner) CgroupVersion() int { return 0 }

// CgroupDir is "" outside Linux.
func (r *Runner) CgroupDir(cgroup string) string { return "" }

// Kill finds nothing outside Linux.
func (r *Runner) Kill(id string) bool { return false }

// KillAgent finds nothing outside Linux.
func (r *Runner) KillAgent(agent string) int { return 0 }

// FreezeAgent is not supported here.
func (r *Runner) FreezeAgent(agent string, on bool) (int, error) { return 0, ErrUnsupported }

// Leftovers fails outside Linux.
func (r *Runner) Leftovers() ([]Leftover, error) { return nil, ErrUnsupported }

// RemoveLeftovers fails outside Linux.
func (r *Runner) RemoveLeftovers() ([]Leftover, error) { return nil, ErrUnsupported }

// Close does nothing outside Linux.
func (r *Runner) Close() error { return nil }

// MaybeInit does nothing outside Linux.
func MaybeInit() {}
