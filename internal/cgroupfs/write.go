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

// SetLimit writes cg's memory limit. v1 keeps memory.limit_in_bytes <=
// memory.memsw.limit_in_bytes at every step (else EINVAL): raising writes
// memsw first, lowering writes it last. memsw, when the kernel has it, is set
// to the same value. Lowering below usage fails with EBUSY on v1; on v2 it
// makes the kernel reclaim and then OOM-kill, so callers lower only when
// usage is well below the new limit.
func (h Hierarchy) SetLimit(cg string, v uint64) error {
	if h.Version == 2 {
		return h.write(h.Root, cg, fileMemoryMax, limitValue(2, v))
	}
	cur, err := h.Limit(cg)
	if err != nil {
		return err
	}
	_, hasMemsw, err := h.MemswLimit(cg)
	if err != nil {
		return err
	}
	val := limitValue(1, v)
	if hasMemsw && v >= cur {
		if err := h.write(h.Root, cg, fileMemswLimit, val); err != nil {
			return err
		}
	}
	if err := h.write(h.Root, cg, fileLimitInBytes, val); err != nil {
		return err
	}
	if hasMemsw && v < cur {
		return h.write(h.Root, cg, fileMemswLimit, val)
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

// SetMemswLimit writes v1 memory.memsw.limit_in_bytes alone (restoring an
// original that differed from the memory limit). It must stay >= the limit.
func (h Hierarchy) SetMemswLimit(cg string, v uint64) error {
	if h.Version != 1 {
		return fmt.Errorf("set memsw limit of %s: cgroup v1 only", cg)
	}
	return h.write(h.Root, cg, fileMemswLimit, limitValue(1, v))
}
