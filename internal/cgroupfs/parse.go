package cgroupfs

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strconv"
)

// ParseError says which cgroup file could not be parsed, where, and why.
type ParseError struct {
	File string // base name, e.g. "memory.events"
	Line int    // 1-based; 0 when the problem is the file as a whole
	Err  error
}

func (e *ParseError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("parse %s line %d: %v", e.File, e.Line, e.Err)
	}
	return fmt.Sprintf("parse %s: %v", e.File, e.Err)
}

func (e *ParseError) Unwrap() error { return e.Err }

// MemoryEvents holds the v2 memory.events (or memory.events.local) counters.
// Keys the kernel may add later (sock_throttled, 6.13+) are ignored; a missing
// oom_group_kill (before 5.17) leaves HasGroupKill false.
type MemoryEvents struct {
	Low, High, Max  uint64
	OOM, OOMKill    uint64
	OOMGroupKill    uint64
	HasOOMGroupKill bool
}

// ParseMemoryEvents parses "key value" lines. oom and oom_kill are required:
// a counter we could not read must never look like zero.
func ParseMemoryEvents(file string, b []byte) (MemoryEvents, error) {
	var ev MemoryEvents
	var haveOOM, haveKill bool
	err := eachKV(file, b, func(k []byte, v uint64) {
		switch string(k) { // compared, not converted: no allocation
		case "low":
			ev.Low = v
		case "high":
			ev.High = v
		case "max":
			ev.Max = v
		case "oom":
			ev.OOM, haveOOM = v, true
		case "oom_kill":
			ev.OOMKill, haveKill = v, true
		case "oom_group_kill":
			ev.OOMGroupKill, ev.HasOOMGroupKill = v, true
		}
	})
	if err != nil {
		return MemoryEvents{}, err
	}
	if !haveOOM || !haveKill {
		return MemoryEvents{}, &ParseError{File: file, Err: errors.New(`missing "oom" or "oom_kill" key`)}
	}
	return ev, nil
}

// OOMControl is the v1 memory.oom_control file.
type OOMControl struct {
	KillDisable bool
	UnderOOM    bool
	OOMKill     uint64 // local to this memcg on v1 (not hierarchical)
	HasOOMKill  bool   // oom_kill appeared in 4.13
}

// ParseOOMControl parses the three lines of memory.oom_control.
func ParseOOMControl(b []byte) (OOMControl, error) {
	const file = "memory.oom_control"
	var oc OOMControl
	var haveDisable, haveUnder bool
	err := eachKV(file, b, func(k []byte, v uint64) {
		switch string(k) { // compared, not converted: no allocation
		case "oom_kill_disable":
			oc.KillDisable, haveDisable = v != 0, true
		case "under_oom":
			oc.UnderOOM, haveUnder = v != 0, true
		case "oom_kill":
			oc.OOMKill, oc.HasOOMKill = v, true
		}
	})
	if err != nil {
		return OOMControl{}, err
	}
	if !haveDisable || !haveUnder {
		return OOMControl{}, &ParseError{File: file, Err: errors.New(`missing "oom_kill_disable" or "under_oom" key`)}
	}
	return oc, nil
}

// CgroupEvents is the v2 cgroup.events file.
type CgroupEvents struct {
	Populated bool
	Frozen    bool
	HasFrozen bool // frozen appeared with the v2 freezer in 5.2
}

// ParseCgroupEvents parses cgroup.events.
func ParseCgroupEvents(b []byte) (CgroupEvents, error) {
	const file = "cgroup.events"
	var ce CgroupEvents
	var havePop bool
	err := eachKV(file, b, func(k []byte, v uint64) {
		switch string(k) { // compared, not converted: no allocation
		case "populated":
			ce.Populated, havePop = v != 0, true
		case "frozen":
			ce.Frozen, ce.HasFrozen = v != 0, true
		}
	})
	if err != nil {
		return CgroupEvents{}, err
	}
	if !havePop {
		return CgroupEvents{}, &ParseError{File: file, Err: errors.New(`missing "populated" key`)}
	}
	return ce, nil
}

// parseDescendants returns nr_descendants from a v2 cgroup.stat (live
// descendant cgroups at any depth); a count above MaxInt32 is an error.
func parseDescendants(b []byte) (int, error) {
	v, ok := -1, false
	err := eachKV(fileCgroupStat, b, func(k []byte, x uint64) {
		if string(k) == "nr_descendants" && x <= math.MaxInt32 {
			v, ok = int(x), true
		}
	})
	if err != nil {
		return -1, err
	}
	if !ok {
		return -1, &ParseError{File: fileCgroupStat, Err: errors.New(`no "nr_descendants" (or one above 2^31-1)`)}
	}
	return v, nil
}

// Unlimited is what a limit of "max" (v2) or -1 / PAGE_COUNTER_MAX (v1) reads as.
const Unlimited = ^uint64(0)

// v1 reports "no limit" as PAGE_COUNTER_MAX rounded to pages
// (9223372036854771712 on x86-64); anything this large is no limit.
const v1UnlimitedFloor = uint64(1) << 62

// ParseLimit parses a single-value limit file: "max" (v2), a byte count, or
// v1's huge "unlimited" value. It returns Unlimited for no limit.
func ParseLimit(file string, b []byte) (uint64, error) {
	s := string(bytes.TrimSpace(b))
	if s == "max" {
		return Unlimited, nil
	}
	if s == "-1" {
		return Unlimited, nil
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, &ParseError{File: file, Line: 1, Err: fmt.Errorf("want a byte count or \"max\", got %q", truncate(s))}
	}
	if v >= v1UnlimitedFloor {
		return Unlimited, nil
	}
	return v, nil
}

// ParseUint parses a single unsigned counter (memory.current, memory.failcnt).
func ParseUint(file string, b []byte) (uint64, error) {
	s := string(bytes.TrimSpace(b))
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, &ParseError{File: file, Line: 1, Err: fmt.Errorf("want an unsigned integer, got %q", truncate(s))}
	}
	return v, nil
}

// ParsePIDs parses cgroup.procs: one PID a line. PID 0 (a task outside our
// pid namespace, v2) is dropped.
func ParsePIDs(file string, b []byte) ([]int, error) {
	var pids []int
	line := 0
	for len(b) > 0 {
		line++
		var l []byte
		l, b, _ = bytes.Cut(b, []byte{'\n'})
		l = bytes.TrimSpace(l)
		if len(l) == 0 {
			continue
		}
		v, err := strconv.Atoi(string(l))
		if err != nil || v < 0 {
			return nil, &ParseError{File: file, Line: line, Err: fmt.Errorf("want a PID, got %q", truncate(string(l)))}
		}
		if v > 0 {
			pids = append(pids, v)
		}
	}
	return pids, nil
}

// eachKV walks "key value" lines, calling fn for each; a malformed line is an error.
func eachKV(file string, b []byte, fn func(k []byte, v uint64)) error {
	line := 0
	for len(b) > 0 {
		line++
		var l []byte
		l, b, _ = bytes.Cut(b, []byte{'\n'})
		if len(bytes.TrimSpace(l)) == 0 {
			continue
		}
		k, val, ok := twoFields(l)
		if !ok {
			return &ParseError{File: file, Line: line, Err: fmt.Errorf("want \"key value\", got %q", truncate(string(l)))}
		}
		v, err := strconv.ParseUint(string(val), 10, 64) // no allocation: the conversion does not escape
		if err != nil {
			return &ParseError{File: file, Line: line, Err: fmt.Errorf("value of %q is not an unsigned integer: %q", truncate(string(k)), truncate(string(val)))}
		}
		fn(k, v)
	}
	return nil
}

// twoFields splits a line into exactly two fields separated by ASCII
// whitespace (what bytes.Fields would give, without allocating).
func twoFields(l []byte) (a, b []byte, ok bool) {
	isSpace := func(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f' || c == '\n' }
	var f [2][]byte
	n := 0
	for i := 0; i < len(l); {
		for i < len(l) && isSpace(l[i]) {
			i++
		}
		if i == len(l) {
			break
		}
		j := i
		for j < len(l) && !isSpace(l[j]) {
			j++
		}
		if n == 2 {
			return nil, nil, false
		}
		f[n] = l[i:j]
		n++
		i = j
	}
	return f[0], f[1], n == 2
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
