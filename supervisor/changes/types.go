package changes

import (
	"fmt"
	"strings"
	"time"
)

// Kind says what happened to a path.
type Kind string

const (
	Created  Kind = "created"
	Modified Kind = "modified" // content, symlink target or type (non-directory to non-directory)
	Replaced Kind = "replaced" // a directory replaced (opaque), or a type change to or from a directory
	Deleted  Kind = "deleted"
	Metadata Kind = "metadata" // mode, owner or extended attributes only
)

// Type is a path's file type.
type Type string

const (
	File    Type = "file"
	Dir     Type = "dir"
	Symlink Type = "symlink"
	Fifo    Type = "fifo"
	Socket  Type = "socket"
	Device  Type = "device"
)

// Layer is one workdir's overlay: the sandbox mounts overlayfs on Lower
// with [Layer.MountOptions].
type Layer struct {
	Lower string `json:"lower"` // the workdir, symlinks resolved
	Upper string `json:"upper"`
	Work  string `json:"work"`
	Dir   string `json:"dir"` // holds Upper, Work and the backups of an apply (shared by layers)
	// Copy is set when no directory on the workdir's mount could hold
	// the layer: Apply copies instead of renaming.
	Copy bool `json:"copy,omitempty"`
	// Start: a lower entry whose ctime is at or after it changed since
	// the run started.
	Start    time.Time `json:"start"`
	LowerDev uint64    `json:"lower_dev"`
	LowerIno uint64    `json:"lower_ino"`
}

// MountOptions is the overlayfs option string for the layer.
// redirect_dir=off makes a rename of a directory that exists in the lower
// layer fail with EXDEV (tools fall back to copy and delete), so every
// change is visible in the upper layer as created and deleted paths.
func (l Layer) MountOptions() string {
	return "lowerdir=" + escapeOpt(l.Lower) + ",upperdir=" + escapeOpt(l.Upper) +
		",workdir=" + escapeOpt(l.Work) + ",redirect_dir=off,index=off,metacopy=off,xino=off"
}

// backupDir holds an apply's backups of the layer's old entries.
func (l Layer) backupDir() string {
	return strings.TrimSuffix(l.Upper, upperName) + backupName
}

// escapeOpt escapes what overlayfs splits its options and lower layers on.
func escapeOpt(p string) string {
	return strings.NewReplacer(`\`, `\\`, `,`, `\,`, `:`, `\:`).Replace(p)
}

// Change is one path of a change set. Old* fields describe the lower
// (real) entry and are zero for created paths.
type Change struct {
	Layer int    `json:"layer"` // index into Set.Layers
	Path  string `json:"path"`  // relative to the workdir; "." is the workdir itself
	Abs   string `json:"abs"`
	Kind  Kind   `json:"kind"`
	Type  Type   `json:"type,omitempty"` // empty for deleted paths
	// Implied: created inside a created or replaced directory, or deleted
	// inside a deleted or replaced one; it moves with that directory.
	Implied bool   `json:"implied,omitempty"`
	Size    int64  `json:"size,omitempty"`
	Mode    uint32 `json:"mode,omitempty"` // permission bits (07777)
	UID     uint32 `json:"uid"`
	GID     uint32 `json:"gid"`
	Target  string `json:"target,omitempty"` // symlinks
	OldType Type   `json:"old_type,omitempty"`
	OldSize int64  `json:"old_size,omitempty"`
	OldMode uint32 `json:"old_mode,omitempty"`
	OldUID  uint32 `json:"old_uid,omitempty"`
	OldGID  uint32 `json:"old_gid,omitempty"`
	OldTgt  string `json:"old_target,omitempty"`
	Xattrs  bool   `json:"xattrs,omitempty"` // extended attributes differ (metadata changes)
}

// Totals counts a change set. Every listed path counts once, implied ones
// too; replaced and metadata changes count as modified.
type Totals struct {
	Created  int   `json:"created"`
	Modified int   `json:"modified"`
	Deleted  int   `json:"deleted"`
	Paths    int   `json:"paths"`
	Bytes    int64 `json:"bytes"` // sizes of created and modified regular files
}

// Set is the change set of a run, sorted by layer and path (a directory
// before what it holds). It reads the upper layers: use it before the
// run is applied or discarded.
type Set struct {
	Changes []Change `json:"changes"`
	Totals  Totals   `json:"totals"`
	Layers  []Layer  `json:"layers"`

	run     *Run
	cleanup []cleanup // upper entries to tidy before they move in
}

// cleanup is an upper entry that must not reach the real tree as it is:
// a whiteout that hides nothing, or overlayfs's own xattrs.
type cleanup struct {
	path   string
	remove bool
	xattrs []string
}

// ConflictError says which real paths changed since the run started;
// nothing was applied.
type ConflictError struct {
	Paths []string // absolute
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("changes: %d paths changed in the real tree since the run started, nothing applied: %s",
		len(e.Paths), listPaths(e.Paths, 5))
}

// Recovered is what [Recover] did with one run.
type Recovered struct {
	RunID string `json:"run"`
	// Action: "finished" (an apply was committed: its backups were
	// removed), "rolled back" (an apply was cut short: the old entries are
	// back), or "removed" (no apply was under way).
	Action string `json:"action"`
	Ops    int    `json:"ops"` // operations of the apply finished or undone
	Err    error  `json:"-"`
}

// listPaths joins the first n paths, saying how many there are in all.
func listPaths(paths []string, n int) string {
	if len(paths) <= n {
		if len(paths) == 1 {
			return paths[0]
		}
		return fmt.Sprintf("%s (%d paths)", strings.Join(paths, ", "), len(paths))
	}
	return fmt.Sprintf("%s, ... (%d paths)", strings.Join(paths[:n], ", "), len(paths))
}
