package cgroupfs

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Reading: counters, limits, usage and tasks of one cgroup, through pooled
// bounded reads.

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
	limit := 0
	if file == fileCgroupProcs {
		limit = MaxProcsRead
	}
	b, err := readInto(h.file(cg, file), (*bp)[:0], file != fileCgroupProcs, limit)
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

// MaxProcsRead bounds what one read of cgroup.procs takes in: the first
// ~100,000 PIDs of a cgroup (7 digits and a newline each), far more than an
// inspection looks at (4096 tasks), however many tasks a tenant forks.
const MaxProcsRead = 1 << 20

// readInto appends the whole file at path to b. With shortIsEnd, a read
// that does not fill the room given is taken as the end of the file (one
// system call less: no read that only finds EOF). limit > 0 stops after
// that many bytes, at the end of the last whole line.
func readInto(path string, b []byte, shortIsEnd bool, limit int) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return b, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		room := b[len(b):cap(b)]
		if limit > 0 && len(b)+len(room) > limit {
			room = room[:max(limit-len(b), 0)]
			if len(room) == 0 {
				if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
					b = b[:i+1]
				}
				return b, nil
			}
		}
		n, err := unix.Read(fd, room)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return b, &fs.PathError{Op: "read", Path: path, Err: err}
		}
		if n == 0 {
			return b, nil
		}
		full := n == len(room)
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
