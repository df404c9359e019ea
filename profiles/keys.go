package profiles

import "slices"

// Setting keys: the dotted TOML path of each profile setting whose location
// the loader records in Profile.Locs, for LocOf. Callers that cite a
// setting in a reason (a cap, the schedule) use these constants, never a
// literal: a misspelt key would silently lose the file:line.
const (
	KeyTimeout         = "limits.timeout"
	KeyPids            = "limits.pids"
	KeyConcurrent      = "limits.concurrent"
	KeyPerMinute       = "limits.per_minute"
	KeyPerDay          = "limits.per_day"
	KeyExecsPerMinute  = "limits.execs_per_minute"
	KeyExecsPerDay     = "limits.execs_per_day"
	KeyConnections     = "limits.connections"  // concurrent connections per run (network.mode = "proxy")
	KeyEgressBytes     = "limits.egress_bytes" // bytes a run may send out (network.mode = "proxy")
	KeyScheduleWindows = "schedule.windows"
	KeyNetworkMode     = "network.mode"
	// [changes]: what a run may write (see Changes).
	KeyChangesMode       = "changes.mode"
	KeyChangesMaxFiles   = "changes.max_files"
	KeyChangesMaxDeleted = "changes.max_deleted"
	KeyChangesMaxBytes   = "changes.max_bytes"
	KeyChangesProtect    = "changes.protect"
)

// Keys returns every key the loader records for a profile that sets it.
func Keys() []string {
	return []string{KeyTimeout, KeyPids, KeyConcurrent, KeyPerMinute, KeyPerDay, KeyExecsPerMinute, KeyExecsPerDay, KeyConnections, KeyEgressBytes, KeyScheduleWindows, KeyNetworkMode,
		KeyChangesMode, KeyChangesMaxFiles, KeyChangesMaxDeleted, KeyChangesMaxBytes, KeyChangesProtect}
}

// KnownKey reports whether key is one of Keys.
func KnownKey(key string) bool { return slices.Contains(Keys(), key) }
