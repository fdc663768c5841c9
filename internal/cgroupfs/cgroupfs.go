// Package cgroupfs is the one place that knows cgroupfs: where the memory
// hierarchy is mounted (v1, v2 or hybrid), the names of its files, how to parse
// them, and how to write them safely. The filesystem root is always a value,
// so the same code runs on a fake tree in a test, on the host and in a VM.
//
// A cgroup is named by its path relative to the hierarchy root, always
// starting with "/" ("/" is the root itself, "/lxc/web1" a container).
package cgroupfs

import (
	"errors"
	"fmt"
)

// ErrGone means the cgroup (or the file in it) no longer exists. Removal is a
// normal event, not a failure.
var ErrGone = errors.New("cgroup is gone")

// ErrNotMemcg means the directory is not a memory cgroup hierarchy.
var ErrNotMemcg = errors.New("not a memory cgroup hierarchy")

// File names. Nobody outside this package spells them.
const (
	fileMemoryEvents      = "memory.events"
	fileMemoryEventsLocal = "memory.events.local"
	fileCgroupEvents      = "cgroup.events"
	fileCgroupProcs       = "cgroup.procs"
	fileCgroupStat        = "cgroup.stat"
	fileCgroupFreeze      = "cgroup.freeze"
	fileSubtreeControl    = "cgroup.subtree_control"
	fileCgroupKill        = "cgroup.kill"
	fileMemoryMax         = "memory.max"
	fileMemoryCurrent     = "memory.current"
	fileOOMControl        = "memory.oom_control"
	fileEventControl      = "cgroup.event_control"
	fileLimitInBytes      = "memory.limit_in_bytes"
	fileUsageInBytes      = "memory.usage_in_bytes"
	fileFailcnt           = "memory.failcnt"
	fileMemswFailcnt      = "memory.memsw.failcnt"
	fileMemswLimit        = "memory.memsw.limit_in_bytes"
	fileFreezerState      = "freezer.state"
)

// Hierarchy is a memory cgroup hierarchy: where it is and which version.
type Hierarchy struct {
	Version int    // 1 or 2
	Root    string // mountpoint of the memory hierarchy (v1 "…/memory", v2 the cgroup2 mount)
	// Freezer is the v1 freezer hierarchy's mountpoint ("" if none). On v2 the
	// freezer is part of every cgroup and this is unused.
	Freezer string
	// Layout is "legacy", "hybrid", "unified", or "explicit" when the root was given.
	Layout string
	// AnyFS disables the check that writes land on a cgroup filesystem. Only
	// tests on fake trees set it.
	AnyFS bool
}

func (h Hierarchy) String() string {
	return fmt.Sprintf("cgroup v%d memory hierarchy at %s (%s)", h.Version, h.Root, h.Layout)
}
