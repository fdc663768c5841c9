package cgroupfs

import (
	"fmt"
	"path/filepath"
)

// ViewWarning says, once every watch is armed (n cgroups, the root
// included), why oomwatch may have nothing to watch: on cgroup v2 a root
// whose cgroup.subtree_control lacks "memory" (a host without systemd, a
// fresh VM: no cgroup has a memory limit, so none can loop, until +memory is
// enabled; oomwatch picks the cgroups up then), else a view of the root
// alone (a container without the host's /sys/fs/cgroup).
func (h Hierarchy) ViewWarning(n int) (event, msg string) {
	if on, err := h.MemoryEnabledBelow("/"); err == nil && !on {
		ctl := filepath.Join(h.Root, "cgroup.subtree_control")
		return "memory_not_enabled", fmt.Sprintf("the memory controller is not enabled below the cgroup root (%s has no \"memory\"): no cgroup has a memory limit, so no OOM loop can happen yet. oomwatch watches the cgroups' OOM counters as soon as it is enabled (echo +memory > %s; systemd does this at boot)", ctl, ctl)
	}
	if n <= 1 {
		return "limited_view", "only the root cgroup is visible: nothing to watch. In a container, mount the host's /sys/fs/cgroup read-write and share the host's cgroup and PID namespaces"
	}
	return "", ""
}
