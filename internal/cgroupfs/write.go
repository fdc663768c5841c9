package cgroupfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// writable lists every cgroup file oomwatch may ever write. Anything else is
// refused by write, whatever the caller asks.
var writable = map[string]bool{
	fileCgroupFreeze: true,
	fileCgroupKill:   true,
	fileMemoryMax:    true,
	fileLimitInBytes: true,
	fileFreezerState: true,
	fileOOMControl:   true,
	fileMemswLimit:   true,
}

// write is the one guarded write into cgroupfs: the path stays under root
// (no "..", no symlink at the last component), the file is on the allowlist,
// the directory is on a cgroup filesystem, and the error names file and value.
func write(root, cg, file, value string) error {
	if !writable[file] {
		return fmt.Errorf("write %q to %s: file not on the allowlist", value, file)
	}
	dir := filepath.Join(root, Clean(cg))
	if !strings.HasPrefix(dir+"/", filepath.Clean(root)+"/") {
		return fmt.Errorf("write %q to %s of %s: path escapes %s", value, file, cg, root)
	}
	p := filepath.Join(dir, file)
	f, err := os.OpenFile(p, os.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return mapGone(fmt.Errorf("write %q to %s: %w", value, p, err))
	}
	defer f.Close()
	if _, err := f.WriteString(value); err != nil {
		return mapGone(fmt.Errorf("write %q to %s: %w", value, p, err))
	}
	return nil
}

func (h Hierarchy) write(root, cg, file, value string) error {
	if !h.AnyFS {
		if err := fsMagicOK(filepath.Join(root, Clean(cg))); err != nil {
			return err
		}
	}
	return write(root, cg, file, value)
}

// FreezeSupported reports whether cg can be frozen: v2 cgroup.freeze (5.2+),
// or a v1 freezer cgroup at the same path as the memory cgroup (LXC and
// systemd create every controller's cgroup at the same path).
func (h Hierarchy) FreezeSupported(cg string) error {
	if h.Version == 2 {
		if !exists(h.file(cg, fileCgroupFreeze)) {
			return fmt.Errorf("freeze %s: no %s (kernel older than 5.2, or the root cgroup)", cg, fileCgroupFreeze)
		}
		return nil
	}
	if h.Freezer == "" {
		return errors.New("freeze: no v1 freezer hierarchy mounted")
	}
	if !exists(filepath.Join(h.Freezer, Clean(cg), fileFreezerState)) {
		return fmt.Errorf("freeze %s: no freezer cgroup at the same path under %s", cg, h.Freezer)
	}
	return nil
}

// SetFrozen requests freezing (true) or thawing (false) of cg. The request is
// asynchronous on both versions: check Frozen.
func (h Hierarchy) SetFrozen(cg string, frozen bool) error {
	if err := h.FreezeSupported(cg); err != nil {
		return err
	}
	if h.Version == 2 {
		v := "0"
		if frozen {
			v = "1"
		}
		return h.write(h.Root, cg, fileCgroupFreeze, v)
	}
	v := "THAWED"
	if frozen {
		v = "FROZEN"
	}
	return h.write(h.Freezer, cg, fileFreezerState, v)
}

// Frozen reports whether cg is completely frozen: v2 "frozen 1" in
// cgroup.events (cgroup.freeze is only the request), v1 freezer.state FROZEN
// (FREEZING means some task has not stopped yet).
func (h Hierarchy) Frozen(cg string) (bool, error) {
	if h.Version == 2 {
		ce, err := h.CgroupEvents(cg)
		if err != nil {
			return false, err
		}
		return ce.Frozen, nil
	}
	b, err := os.ReadFile(filepath.Join(h.Freezer, Clean(cg), fileFreezerState))
	if err != nil {
		return false, mapGone(fmt.Errorf("read %s of %s: %w", fileFreezerState, cg, err))
	}
	return strings.TrimSpace(string(b)) == "FROZEN", nil
}

// Freeze requests a freeze and waits up to timeout for it to take effect,
// polling every step. It never blocks longer than timeout: tasks sleeping in
// the v1 oom_kill_disable wait (TASK_KILLABLE) and kernel threads never
// freeze. On timeout the freeze request stays in place and an error says so.
func (h Hierarchy) Freeze(cg string, timeout, step time.Duration) error {
	if err := h.SetFrozen(cg, true); err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	for {
		ok, err := h.Frozen(cg)
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("freeze %s: not frozen after %v (some task cannot freeze)", cg, timeout)
		}
		time.Sleep(step)
	}
}

// MemswLimit reads v1 memory.memsw.limit_in_bytes; ok is false when the
// kernel has no swap accounting (the file is absent).
func (h Hierarchy) MemswLimit(cg string) (limit uint64, ok bool, err error) {
	if h.Version != 1 {
		return 0, false, nil
	}
	v, err := readAs(h, cg, fileMemswLimit, func(b []byte) (uint64, error) { return ParseLimit(fileMemswLimit, b) })
	if errors.Is(err, ErrGone) && h.Exists(cg) {
		return 0, false, nil
	}
	return v, err == nil, err
}

func limitValue(version int, v uint64) string {
	if v == Unlimited {
		if version == 2 {
			return "max" // v2 rejects -1 with EINVAL
		}
		return "-1"
	}
	return strconv.FormatUint(v, 10)
}

var pageSize = uint64(os.Getpagesize())

// PageSize is the unit the kernel keeps memory limits in.
func PageSize() uint64 { return pageSize }

// PageAlign rounds v down to whole pages, as the kernel does with every
// memory limit written to it (page_counter_memparse, v1 and v2, and so
// systemd's MemoryMax=): a limit written aligned reads back exactly as
// written. Unlimited stays Unlimited.
func PageAlign(v uint64) uint64 {
	if v == Unlimited {
		return v
	}
	return v / pageSize * pageSize
}

// Limits are a cgroup's memory limits: Mem is v2 memory.max or v1
// memory.limit_in_bytes; Memsw is v1 memory.memsw.limit_in_bytes, present
// (HasMemsw) when the kernel accounts swap. Unlimited means no limit.
type Limits struct {
	Mem      uint64
	Memsw    uint64
	HasMemsw bool
}

// Limits reads cg's memory limits.
func (h Hierarchy) Limits(cg string) (Limits, error) {
	mem, err := h.Limit(cg)
	if err != nil {
		return Limits{}, err
	}
	sw, ok, err := h.MemswLimit(cg)
	if err != nil {
		return Limits{}, err
	}
	return Limits{Mem: mem, Memsw: sw, HasMemsw: ok}, nil
}

// SetLimits writes cg's memory limits, rounded down to pages, and leaves
// both as they were when it fails. v2 has memory.max only (Memsw is
// ignored). v1 keeps memory.limit_in_bytes <= memory.memsw.limit_in_bytes
// at every step (else EINVAL), so memsw is written first when the current
// limit fits under the new memsw, last otherwise; when the second write
// fails the first is put back. Memsw is written only when l.HasMemsw and
// the kernel has it. Lowering below usage fails with EBUSY on v1 (memsw:
// below memory+swap usage); on v2 it makes the kernel reclaim and then
// OOM-kill, so callers lower only when usage is well below the new limit.
func (h Hierarchy) SetLimits(cg string, l Limits) error {
	if h.Version == 2 {
		return h.write(h.Root, cg, fileMemoryMax, limitValue(2, PageAlign(l.Mem)))
	}
	cur, err := h.Limits(cg)
	if err != nil {
		return err
	}
	type step struct {
		file     string
		from, to uint64
	}
	mem := step{fileLimitInBytes, cur.Mem, PageAlign(l.Mem)}
	steps := []step{mem}
	if l.HasMemsw && cur.HasMemsw {
		sw := step{fileMemswLimit, cur.Memsw, PageAlign(l.Memsw)}
		if cur.Mem <= sw.to {
			steps = []step{sw, mem}
		} else {
			steps = []step{mem, sw}
		}
	}
	for i, s := range steps {
		if s.from == s.to {
			continue
		}
		err := h.write(h.Root, cg, s.file, limitValue(1, s.to))
		if err == nil {
			continue
		}
		for _, done := range steps[:i] {
			if done.from == done.to {
				continue
			}
			if rerr := h.write(h.Root, cg, done.file, limitValue(1, done.from)); rerr != nil {
				return errors.Join(err, fmt.Errorf("put %s of %s back to %d: %w", done.file, cg, done.from, rerr))
			}
		}
		return err
	}
	return nil
}

// KillSupported reports whether v2 cgroup.kill exists (5.14+).
func (h Hierarchy) KillSupported(cg string) bool {
	return h.Version == 2 && exists(h.file(cg, fileCgroupKill))
}

// KillAll writes 1 to v2 cgroup.kill: SIGKILL to every task of the subtree,
// including tasks at oom_score_adj -1000 and tasks forking concurrently.
func (h Hierarchy) KillAll(cg string) error {
	if !h.KillSupported(cg) {
		return fmt.Errorf("kill %s: no %s (cgroup v1 or a kernel before 5.14)", cg, fileCgroupKill)
	}
	return h.write(h.Root, cg, fileCgroupKill, "1")
}

// Thaw requests thawing and waits up to timeout for it.
func (h Hierarchy) Thaw(cg string, timeout, step time.Duration) error {
	if err := h.SetFrozen(cg, false); err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	for {
		fr, err := h.FreezerState(cg)
		if err != nil {
			return err
		}
		if fr == "THAWED" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("thaw %s: still %s after %v", cg, fr, timeout)
		}
		time.Sleep(step)
	}
}

// FreezerState says THAWED, FREEZING or FROZEN on both versions (v2: from
// cgroup.freeze, the request, and cgroup.events frozen, the state).
func (h Hierarchy) FreezerState(cg string) (string, error) {
	if h.Version == 2 {
		requested, err := readAs(h, cg, fileCgroupFreeze, func(b []byte) (bool, error) { return strings.TrimSpace(string(b)) == "1", nil })
		if err != nil {
			return "", err
		}
		ce, err := h.CgroupEvents(cg)
		if err != nil {
			return "", err
		}
		switch {
		case ce.Frozen:
			return "FROZEN", nil
		case requested:
			return "FREEZING", nil
		}
		return "THAWED", nil
	}
	if h.Freezer == "" || !exists(filepath.Join(h.Freezer, Clean(cg), fileFreezerState)) {
		return "THAWED", nil // no freezer cgroup: nothing can be frozen
	}
	b, err := os.ReadFile(filepath.Join(h.Freezer, Clean(cg), fileFreezerState))
	if err != nil {
		return "", mapGone(fmt.Errorf("read %s of %s: %w", fileFreezerState, cg, err))
	}
	return strings.TrimSpace(string(b)), nil
}
