// Package changes holds what a run in review or dry-run mode writes in
// a copy-on-write layer over each workdir, reads it back as a change set
// (created, modified, replaced, deleted and metadata-only paths, with
// counts and bytes), checks it against caps, shows it as a diff, and
// applies it all or nothing, or discards it. It knows nothing of
// profiles, approvals or the journal.
//
// Life of a run:
//
//	r, _ := changes.Prepare(stateDir, id, workdirs) // before the sandbox starts
//	// the run's init mounts, in its own mount namespace, for each r.Layers[i]:
//	//   mount("overlay", l.Lower, "overlay", 0, l.MountOptions())
//	// and the run writes as the agent; when every process of it is dead:
//	s, _ := r.Compute()
//	v := s.Check(caps)      // empty: apply at once; else hold for review
//	s.Diff(w)               // for `execgate changes ID --diff`
//	err := r.Apply(s)       // or r.Discard(); a *ConflictError applies nothing
//	// at daemon start: changes.Recover(stateDir)
//
// On disk (every directory root-owned, 0700 but upper, which carries
// the workdir's mode and owner, inside a 0700 one):
//
//	<stateDir>/changes/<id>/manifest.json    the layers, for Recover
//	<stateDir>/changes/<id>/apply.log        an apply's intent log
//	<layer dir>/<n>-upper, <n>-work          layer n (workdirs in sorted order)
//	<layer dir>/<n>-backup/<op>              an apply's old entries
//
// where the layer dir is <stateDir>/changes/<id> when the state dir is on
// the workdir's mount (the same mount, not only the same file system:
// rename(2) does not cross mounts), else
// <mount root>/.execgate-changes/<id> (with a copy of the manifest naming
// its owner; only when the mount's root is root-owned and not writable by
// others, and is not the workdir itself: overlayfs refuses an upper inside
// its lower), else <stateDir>/changes/<id> with Layer.Copy: Apply then
// copies each upper entry beside its real path (.execgate-<id>-<op>.new,
// the old entry going to .old) and renames there.
//
// The overlay is mounted with redirect_dir=off, index=off, metacopy=off
// and xino=off: a rename of a directory that exists in the lower layer
// fails with EXDEV, and mv, git and the like fall back to copy and
// delete, so the set shows a renamed directory as deleted and created
// paths. Compute refuses an upper layer with redirect or metacopy
// xattrs.
//
// Compute: a whiteout (char device 0:0) over a lower entry is a deletion,
// and every path under a deleted lower directory is listed too
// (Implied). An opaque directory (trusted.overlay.opaque=y) or a type
// change to or from a directory is Replaced: what the lower held is
// deleted, what the upper holds is created. A copied-up file whose
// content (size, then bytes), mode, owner and extended attributes
// (except trusted.*) equal the lower's is left out; times alone are
// never a change. Extended attributes are compared on regular files
// only.
//
// Apply: first the conflict check, of every path, implied deletions
// included. A path the run changes conflicts when its real entry is
// gone, has another type, or has a ctime at or after Layer.Start (taken
// from the upper's own ctime at Prepare, the lower's clock and
// granularity); a created path conflicts when something now exists there;
// its parent directory when it is gone, is no longer a directory, or was
// born (btime, else ctime) at or after the start. A directory whose mode
// or owner changes is compared by mode and owner instead of its ctime,
// which moves whenever an entry in it does. Every real path is resolved
// with openat2 beneath the workdir, never through a symlink or into
// another mount. A change made within the same clock tick just before
// Prepare also reads as a conflict (on the safe side). Then the intent log is written and synced; each op moves
// the old entry to its backup and renames the new one in
// (RENAME_NOREPLACE: what appears meanwhile is a conflict, never
// overwritten), checking its path once more; a created or replaced
// directory moves in whole, with one rename. The directories touched are
// synced, the log is marked committed and synced, and the backups and
// layers are removed. File data is not flushed (as in direct mode);
// names and attributes are. A crash leaves each real path old or new;
// Recover or Discard finish a committed apply and roll back any other,
// reading the tree itself (an inode number says whether the new entry is
// in, a backup's presence whether the old one is aside). Rolling back
// moves the old entries back, which changes their ctimes: after a failed
// Apply only Discard is left. Compute reads the layers as the run left
// them: compute before Apply (which tidies overlayfs's xattrs and stray
// whiteouts out of them), and Diff before Apply or Discard.
//
// Limits: hard links to lower files are broken by copy-up (the other
// names keep the old content); extended attributes on directories are
// not compared; sockets and fifos are applied as inodes; mounts under a
// workdir are refused by Prepare (an overlay does not show them); the
// upper needs a file system overlayfs accepts as upper (not NFS, FUSE or
// another overlay): elsewhere the layer is copied at apply.
package changes
