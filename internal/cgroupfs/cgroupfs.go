// Package cgroupfs is the one place that knows cgroupfs: where the memory
// hierarchy is mounted (v1, v2 or hybrid), the names of its files, how to parse
// them, and how to write them safely. The filesystem root is always a value,
// so the same code runs on a fake tree in a test, on the host and in a VM.
//
// A cgroup is named by its path relative to the hierarchy root, always
// starting with "/" ("/" is the root itself, "/lxc/web1" a container).
package cgroupfs

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
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

// Detect finds the memory hierarchy from mountinfo (procRoot/self/mountinfo).
// A v1 mount carrying the memory controller wins (legacy and hybrid hosts);
// otherwise a cgroup2 mount whose root lists "memory" in cgroup.controllers.
func Detect(procRoot string) (Hierarchy, error) {
	mi := filepath.Join(procRoot, "self", "mountinfo")
	b, err := os.ReadFile(mi)
	if err != nil {
		return Hierarchy{}, fmt.Errorf("detect cgroup hierarchy: %w", err)
	}
	mounts, err := parseMountinfo(b)
	if err != nil {
		return Hierarchy{}, fmt.Errorf("detect cgroup hierarchy: %s: %w", mi, err)
	}
	var v1mem, v1freezer, v2 string
	for _, m := range mounts {
		switch m.fstype {
		case "cgroup":
			for _, o := range strings.Split(m.super, ",") {
				if o == "memory" && v1mem == "" {
					v1mem = m.point
				}
				if o == "freezer" && v1freezer == "" {
					v1freezer = m.point
				}
			}
		case "cgroup2":
			if v2 == "" && hasController(m.point, "memory") {
				v2 = m.point
			}
		}
	}
	switch {
	case v1mem != "":
		layout := "legacy"
		for _, m := range mounts {
			if m.fstype == "cgroup2" {
				layout = "hybrid"
			}
		}
		return Hierarchy{Version: 1, Root: v1mem, Freezer: v1freezer, Layout: layout}, nil
	case v2 != "":
		return Hierarchy{Version: 2, Root: v2, Layout: "unified"}, nil
	}
	return Hierarchy{}, fmt.Errorf("detect cgroup hierarchy: no cgroup v1 memory mount and no cgroup2 mount with the memory controller in %s: %w (mount one, or pass --cgroup-root)", mi, ErrNotMemcg)
}

// Open takes an explicit root (--cgroup-root) and tells v1 from v2 by its
// files. freezer may be "" (v1: then a "freezer" directory next to root is
// used when it exists).
func Open(root, freezer string) (Hierarchy, error) {
	root = filepath.Clean(root)
	switch {
	case exists(filepath.Join(root, fileOOMControl)) || exists(filepath.Join(root, fileLimitInBytes)):
		if freezer == "" {
			if f := filepath.Join(filepath.Dir(root), "freezer"); exists(filepath.Join(f, "cgroup.procs")) {
				freezer = f
			}
		}
		return Hierarchy{Version: 1, Root: root, Freezer: freezer, Layout: "explicit"}, nil
	case exists(filepath.Join(root, "cgroup.controllers")):
		if !hasController(root, "memory") {
			return Hierarchy{}, fmt.Errorf("%s is cgroup v2 but \"memory\" is not in its cgroup.controllers: %w", root, ErrNotMemcg)
		}
		return Hierarchy{Version: 2, Root: root, Layout: "explicit"}, nil
	case exists(filepath.Join(root, "memory", fileOOMControl)):
		return Open(filepath.Join(root, "memory"), freezer)
	}
	return Hierarchy{}, fmt.Errorf("%s has neither memory.oom_control (v1) nor cgroup.controllers (v2): %w", root, ErrNotMemcg)
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

func hasController(dir, ctrl string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
	if err != nil {
		return false
	}
	return listsController(b, ctrl)
}

// listsController reports whether a controller list (cgroup.controllers,
// cgroup.subtree_control: names separated by spaces) names ctrl.
func listsController(b []byte, ctrl string) bool {
	for _, c := range strings.Fields(string(b)) {
		if c == ctrl {
			return true
		}
	}
	return false
}

type mount struct{ point, fstype, super string }

// parseMountinfo reads the fields oomwatch needs from /proc/self/mountinfo:
// "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue".
func parseMountinfo(b []byte) ([]mount, error) {
	var ms []mount
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	line := 0
	for sc.Scan() {
		line++
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		sep := -1
		for i, x := range f {
			if x == "-" {
				sep = i
				break
			}
		}
		if sep < 5 || len(f) < sep+4 {
			return nil, &ParseError{File: "mountinfo", Line: line, Err: errors.New("malformed line")}
		}
		ms = append(ms, mount{point: unescapeMount(f[4]), fstype: f[sep+1], super: f[sep+3]})
	}
	return ms, sc.Err()
}

// unescapeMount undoes the kernel's octal escaping of space, tab, newline and backslash.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			var v byte
			ok := true
			for _, c := range s[i+1 : i+4] {
				if c < '0' || c > '7' {
					ok = false
					break
				}
				v = v*8 + byte(c-'0')
			}
			if ok {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// read returns the content of file in cg, mapping "no such cgroup" to ErrGone.
// readBufs holds buffers for reading cgroup files: every OOM notification
// reads one or two, and arming 10,000 v2 cgroups reads 10,000; os.ReadFile
// allocated a File, a stat result and the contents each time (a third of the
// garbage of arming, which then fragments the heap the watches live in).
var readBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// maxPooledRead: a buffer grown past this (a huge cgroup.procs) is dropped
// instead of kept in the pool.
const maxPooledRead = 64 << 10

// readAs reads a small file of cg into a pooled buffer and parses it; parse
// must not keep the slice.
func readAs[T any](h Hierarchy, cg, file string, parse func([]byte) (T, error)) (T, error) {
	bp := readBufs.Get().(*[]byte)
	// Every file read here but cgroup.procs is one seq_show: the kernel
	// renders it whole, and a read that leaves room has reached its end.
	// cgroup.procs is rendered a record at a time and a page at most per
	// read, so a short read there is not the end.
	b, err := readInto(h.file(cg, file), (*bp)[:0], file != fileCgroupProcs)
	defer func() {
		if cap(b) <= maxPooledRead {
			*bp = b[:0]
			readBufs.Put(bp)
		}
	}()
	if err != nil {
		var zero T
		return zero, mapGone(fmt.Errorf("read %s of %s: %w", file, cg, err))
	}
	return parse(b)
}

// readInto appends the whole file at path to b. With shortIsEnd, a read
// that does not fill the room given is taken as the end of the file (one
// system call less: no read that only finds EOF).
func readInto(path string, b []byte, shortIsEnd bool) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return b, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := unix.Read(fd, b[len(b):cap(b)])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return b, &fs.PathError{Op: "read", Path: path, Err: err}
		}
		if n == 0 {
			return b, nil
		}
		full := len(b)+n == cap(b)
		b = b[:len(b)+n]
		if shortIsEnd && !full {
			return b, nil
		}
	}
}

// mapGone wraps err with ErrGone when it says the file or cgroup vanished.
// ENODEV is what kernfs returns for a file of a cgroup removed while open.
func mapGone(err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENODEV) || errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("%w: %w", ErrGone, err)
	}
	return err
}

// Exists reports whether cgroup cg still exists.
func (h Hierarchy) Exists(cg string) bool {
	_, err := os.Stat(h.file(cg, h.probeFile()))
	return err == nil
}

func (h Hierarchy) probeFile() string {
	if h.Version == 1 {
		return fileOOMControl
	}
	return fileCgroupProcs
}

// MemoryEvents reads v2 memory.events (hierarchical counters).
func (h Hierarchy) MemoryEvents(cg string) (MemoryEvents, error) {
	return readAs(h, cg, fileMemoryEvents, func(b []byte) (MemoryEvents, error) { return ParseMemoryEvents(fileMemoryEvents, b) })
}

// MemoryEventsLocal reads v2 memory.events.local (5.2+): events of this
// cgroup alone, which tells the cgroup whose limit was hit from its ancestors.
func (h Hierarchy) MemoryEventsLocal(cg string) (MemoryEvents, error) {
	return readAs(h, cg, fileMemoryEventsLocal, func(b []byte) (MemoryEvents, error) { return ParseMemoryEvents(fileMemoryEventsLocal, b) })
}

// CgroupEvents reads v2 cgroup.events.
func (h Hierarchy) CgroupEvents(cg string) (CgroupEvents, error) {
	return readAs(h, cg, fileCgroupEvents, ParseCgroupEvents)
}

// OOMControl reads v1 memory.oom_control.
func (h Hierarchy) OOMControl(cg string) (OOMControl, error) {
	return readAs(h, cg, fileOOMControl, ParseOOMControl)
}

// SubtreeOOMKills sums v1 memory.oom_control oom_kill over cg and its
// descendants (at most max cgroups): on v1 the counter is local to each
// memcg, so a kill in a child does not show in its parent. Descendants that
// vanish during the walk are skipped; cg itself missing is ErrGone.
func (h Hierarchy) SubtreeOOMKills(cg string, max int) (uint64, error) {
	var kills uint64
	err := h.Walk(cg, max, func(c string) error {
		oc, err := h.OOMControl(c)
		if errors.Is(err, ErrGone) && c != Clean(cg) {
			return nil
		}
		if err != nil {
			return err
		}
		kills += oc.OOMKill
		return nil
	})
	if err != nil && !errors.Is(err, ErrTooMany) {
		return 0, err
	}
	return kills, nil
}

// Failcnt reads v1 memory.failcnt plus memory.memsw.failcnt: +1 on every
// failed charge at this level, so it rises at the cgroup whose limit is hit,
// once per retry. With memsw.limit_in_bytes equal to the limit the failing
// charge is the memory+swap one and only memsw.failcnt moves: sum both.
func (h Hierarchy) Failcnt(cg string) (uint64, error) {
	n, err := readAs(h, cg, fileFailcnt, func(b []byte) (uint64, error) { return ParseUint(fileFailcnt, b) })
	if err != nil {
		return 0, err
	}
	// memory.memsw.failcnt is absent without swap accounting: a file we
	// cannot read adds nothing, a file we cannot parse is an error.
	m, err := readAs(h, cg, fileMemswFailcnt, func(b []byte) (uint64, error) { return ParseUint(fileMemswFailcnt, b) })
	if pe := (*ParseError)(nil); errors.As(err, &pe) {
		return 0, err
	}
	if err == nil {
		n += m
	}
	return n, nil
}

// HasMemoryEvents reports whether v2 cgroup cg has the memory controller
// enabled (its memory.events exists).
func (h Hierarchy) HasMemoryEvents(cg string) bool {
	return exists(h.MemoryEventsPath(cg))
}

// MemoryEventsPath is the v2 memory.events file of cg.
func (h Hierarchy) MemoryEventsPath(cg string) string {
	return h.file(cg, fileMemoryEvents)
}

// Limit reads the memory limit (v2 memory.max, v1 memory.limit_in_bytes);
// Unlimited when there is none.
func (h Hierarchy) Limit(cg string) (uint64, error) {
	f := fileMemoryMax
	if h.Version == 1 {
		f = fileLimitInBytes
	}
	if Clean(cg) == "/" && h.Version == 2 {
		return Unlimited, nil // the v2 root has no memory.max
	}
	return readAs(h, cg, f, func(b []byte) (uint64, error) { return ParseLimit(f, b) })
}

// Usage reads current memory usage in bytes.
func (h Hierarchy) Usage(cg string) (uint64, error) {
	f := fileMemoryCurrent
	if h.Version == 1 {
		f = fileUsageInBytes
	}
	return readAs(h, cg, f, func(b []byte) (uint64, error) { return ParseUint(f, b) })
}

// Procs lists the PIDs directly in cg (cgroup.procs).
func (h Hierarchy) Procs(cg string) ([]int, error) {
	return readAs(h, cg, fileCgroupProcs, func(b []byte) ([]int, error) { return ParsePIDs(fileCgroupProcs, b) })
}

// Walk visits cg and every descendant, parents first, stopping after max
// cgroups (max <= 0: no bound) with ErrTooMany. Cgroups that vanish during
// the walk are skipped; fn returning filepath.SkipDir skips a subtree.
//
// The children of a cgroup are all visited before any of them is listed.
// On v2 the parent's cgroup.stat is then read: when its nr_descendants is
// the number of children, none of them has children, and they are not
// listed at all (most cgroups are leaves: at 10,000 cgroups that is 10,000
// directory reads saved, for one small read per parent). The count is read
// after fn has seen every child, so a grandchild created later is for fn's
// own watch of its parent to report (the watchdog's case), not for Walk.
func (h Hierarchy) Walk(cg string, max int, fn func(cg string) error) error {
	n := 0
	visit := func(c string) (descend bool, err error) {
		if max > 0 && n >= max {
			return false, ErrTooMany
		}
		n++
		if err := fn(c); errors.Is(err, filepath.SkipDir) {
			return false, nil // do not descend
		} else if err != nil {
			return false, err
		}
		return true, nil
	}
	// below visits the subtrees under c, which was visited.
	var below func(c string) error
	below = func(c string) error {
		kids, err := h.Children(c)
		if errors.Is(err, ErrGone) {
			return nil
		}
		if err != nil {
			return err
		}
		descend := make([]bool, len(kids))
		for i, k := range kids {
			if descend[i], err = visit(k); err != nil {
				return err
			}
		}
		if len(kids) > 0 && h.Version == 2 && h.descendants(c) == len(kids) {
			return nil // every child is a leaf
		}
		for i, k := range kids {
			if !descend[i] {
				continue
			}
			if err := below(k); err != nil {
				return err
			}
		}
		return nil
	}
	c := Clean(cg)
	if d, err := visit(c); err != nil || !d {
		return err
	}
	return below(c)
}

// descendants is nr_descendants from cg's v2 cgroup.stat (live descendant
// cgroups, any depth), or -1 when it cannot be read.
func (h Hierarchy) descendants(cg string) int {
	n, err := readAs(h, cg, fileCgroupStat, parseDescendants)
	if err != nil {
		return -1
	}
	return n
}

// ErrTooMany is returned by Walk when the bound was reached.
var ErrTooMany = errors.New("too many cgroups")

// SubtreeProcs lists every PID in cg and its descendants.
func (h Hierarchy) SubtreeProcs(cg string, max int) ([]int, error) {
	var pids []int
	err := h.Walk(cg, max, func(c string) error {
		p, err := h.Procs(c)
		if errors.Is(err, ErrGone) {
			return nil
		}
		pids = append(pids, p...)
		return err
	})
	return pids, err
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

// MemoryEnabledBelow reports whether cg's children get the memory controller
// (v2: "memory" in its cgroup.subtree_control). On v1 every cgroup of the
// memory hierarchy has it.
func (h Hierarchy) MemoryEnabledBelow(cg string) (bool, error) {
	if h.Version == 1 {
		return true, nil
	}
	return readAs(h, cg, fileSubtreeControl, func(b []byte) (bool, error) { return listsController(b, "memory"), nil })
}

// SubtreeControlFile reports whether name is cgroup.subtree_control, whose
// writes enable or disable controllers in the children.
func SubtreeControlFile(name string) bool { return name == fileSubtreeControl }

// MemoryEventsFile reports whether name is the v2 memory.events file.
func MemoryEventsFile(name string) bool {
	return name == fileMemoryEvents || name == fileMemoryEventsLocal
}

// InCgroup reports whether /proc/PID/cgroup lines (hierarchy-id, controllers,
// path) place a task in cg's subtree on this hierarchy. On v1 the memory line
// decides, on v2 the "0::" line.
func (h Hierarchy) InCgroup(cg string, id int, controllers []string, p string) bool {
	if h.Version == 2 {
		return id == 0 && len(controllers) == 0 && InSubtree(p, cg)
	}
	for _, c := range controllers {
		if c == "memory" {
			return InSubtree(p, cg)
		}
	}
	return false
}

// fsMagicOK reports whether dir is on cgroupfs (v1 or v2).
func fsMagicOK(dir string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return mapGone(fmt.Errorf("statfs %s: %w", dir, err))
	}
	if st.Type != unix.CGROUP_SUPER_MAGIC && st.Type != unix.CGROUP2_SUPER_MAGIC {
		return fmt.Errorf("refusing to write under %s: not a cgroup filesystem (magic %#x)", dir, st.Type)
	}
	return nil
}
