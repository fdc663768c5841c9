package cgroupfs

import (
	"fmt"
	"path"
	"path/filepath"
	"strings"
	"sync/atomic"
)

// Paths: cgroup names, their directories and the files oomwatch watches.

// Dir returns the directory of cgroup cg.
func (h Hierarchy) Dir(cg string) string {
	cg = Clean(cg)
	if cg != "/" && h.cleanRoot() {
		return h.Root + cg // one allocation; Join would build "root//cg" and clean it
	}
	return filepath.Join(h.Root, cg)
}

// file is the path of a file of cg (name is a plain file name).
func (h Hierarchy) file(cg, name string) string {
	cg = Clean(cg)
	if cg != "/" && h.cleanRoot() {
		return h.Root + cg + "/" + name // one allocation
	}
	return h.Dir(cg) + "/" + name
}

// cleanRoot reports whether Root is an absolute, clean path other than "/",
// so that Root + a clean cgroup name is a clean path. Arming calls it
// several times per cgroup: the last root found clean is remembered.
func (h Hierarchy) cleanRoot() bool {
	if p := lastCleanRoot.Load(); p != nil && *p == h.Root {
		return true
	}
	if len(h.Root) > 1 && filepath.IsAbs(h.Root) && filepath.Clean(h.Root) == h.Root {
		r := h.Root
		lastCleanRoot.Store(&r)
		return true
	}
	return false
}

var lastCleanRoot atomic.Pointer[string]

// Clean turns any cgroup name into the canonical "/a/b" form. It never
// escapes the root: "../x" becomes "/x".
func Clean(cg string) string {
	if strings.HasPrefix(cg, "/") {
		return path.Clean(cg) // no allocation when cg is already clean
	}
	return path.Clean("/" + cg)
}

// Rel turns a directory under the root into a cgroup name.
func (h Hierarchy) Rel(dir string) (string, error) {
	r, err := filepath.Rel(h.Root, dir)
	if err != nil || r == ".." || strings.HasPrefix(r, "../") {
		return "", fmt.Errorf("%s is not under %s", dir, h.Root)
	}
	return Clean(r), nil
}

// Parent returns the parent cgroup of cg, and false for the root.
func Parent(cg string) (string, bool) {
	cg = Clean(cg)
	if cg == "/" {
		return "", false
	}
	return path.Dir(cg), true
}

// InSubtree reports whether cg is root or below it.
func InSubtree(cg, root string) bool {
	cg, root = Clean(cg), Clean(root)
	return cg == root || root == "/" || strings.HasPrefix(cg, root+"/")
}

// EventControlPaths returns the v1 files needed to register an OOM eventfd:
// cgroup.event_control and memory.oom_control in the same directory (the
// kernel rejects a control file from another cgroup).
func (h Hierarchy) EventControlPaths(cg string) (eventControl, oomControl string) {
	d := h.Dir(cg)
	return filepath.Join(d, fileEventControl), filepath.Join(d, fileOOMControl)
}

// Notifying reports whether a change notification for file name in a v2
// cgroup directory can mean new OOM counters (memory.events) or a change of
// population or freezing (cgroup.events).
func Notifying(name string) bool {
	return name == fileMemoryEvents || name == fileCgroupEvents || name == fileMemoryEventsLocal
}

// SubtreeControlFile reports whether name is cgroup.subtree_control, whose
// writes enable or disable controllers in the children.
func SubtreeControlFile(name string) bool { return name == fileSubtreeControl }

// MemoryEventsFile reports whether name is the v2 memory.events file.
func MemoryEventsFile(name string) bool {
	return name == fileMemoryEvents || name == fileMemoryEventsLocal
}

// MemoryEventsPath is the v2 memory.events file of cg.
func (h Hierarchy) MemoryEventsPath(cg string) string {
	return h.file(cg, fileMemoryEvents)
}

func (h Hierarchy) probeFile() string {
	if h.Version == 1 {
		return fileOOMControl
	}
	return fileCgroupProcs
}
