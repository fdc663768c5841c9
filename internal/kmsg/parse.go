// Package kmsg reads the kernel log from /dev/kmsg and recognises the lines
// the OOM killer prints, so an incident can carry the kernel's own account
// ("the matching lines") next to the counters.
//
// The parsers are pure and take strings or bytes; Reader is a thin wrapper
// around one non-blocking file descriptor that an epoll loop can watch.
package kmsg

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Record is one /dev/kmsg record (Documentation/ABI/testing/dev-kmsg):
//
//	prio,seq,usec,flags[,more fields];message\n
//	 KEY=value\n          (zero or more continuation lines)
type Record struct {
	Priority int    // syslog priority: facility<<3 | level
	Seq      uint64 // sequence number; a gap means records were overwritten
	Usec     uint64 // kernel timestamp, µs since boot (CLOCK_MONOTONIC)
	Flags    string // "-" or "c" (continuation fragment, pre-4.x kernels)
	// Message is the text as the kernel escaped it: non-printable bytes
	// (and '\n' inside a message) arrive as \xNN, so it is safe to print.
	Message string
	// Dict holds the continuation lines (e.g. SUBSYSTEM=, DEVICE=).
	Dict map[string]string
	// Time is the wall-clock time of Usec, set by Reader (zero from Parse).
	Time time.Time
}

// Level is the syslog level (0 emerg … 7 debug).
func (r Record) Level() int { return r.Priority & 7 }

// Kernel reports whether the kernel itself logged the record (syslog
// facility 0). Anyone who may open /dev/kmsg for writing can add records,
// but devkmsg_write gives them LOG_USER unless their "<N>" prefix names
// another facility, and never facility 0 (kernel/printk/printk.c).
func (r Record) Kernel() bool { return r.Priority>>3 == 0 }

// ParseError says why a record could not be parsed.
type ParseError struct {
	Record string // the start of the record, for the log
	Reason string
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("parse kmsg record %q: %s", e.Record, e.Reason)
}

func parseErr(b []byte, reason string) error {
	s := string(b)
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return &ParseError{Record: s, Reason: reason}
}

// Parse parses one record as returned by a single read(2) of /dev/kmsg.
func Parse(b []byte) (Record, error) {
	semi := -1
	for i, c := range b {
		if c == ';' {
			semi = i
			break
		}
		if c == '\n' {
			break
		}
	}
	if semi < 0 {
		return Record{}, parseErr(b, "no ';' after the header")
	}
	var r Record
	// Kernels with CONFIG_PRINTK_CALLER (5.1+) add ",caller=T123"; later
	// kernels may add more fields: only the first four are ours.
	f := strings.SplitN(string(b[:semi]), ",", 5)
	if len(f) < 3 {
		return Record{}, parseErr(b, "header has fewer than 3 fields")
	}
	p, err := strconv.ParseUint(f[0], 10, 16)
	if err != nil {
		return Record{}, parseErr(b, "bad priority")
	}
	r.Priority = int(p)
	if r.Seq, err = strconv.ParseUint(f[1], 10, 64); err != nil {
		return Record{}, parseErr(b, "bad sequence number")
	}
	if r.Usec, err = strconv.ParseUint(f[2], 10, 64); err != nil {
		return Record{}, parseErr(b, "bad timestamp")
	}
	if len(f) > 3 {
		r.Flags = f[3]
	}
	rest := string(b[semi+1:])
	msg, dict, _ := strings.Cut(rest, "\n")
	r.Message = msg
	for dict != "" {
		var line string
		line, dict, _ = strings.Cut(dict, "\n")
		if !strings.HasPrefix(line, " ") {
			continue // not a continuation line; the kernel never sends one
		}
		k, v, ok := strings.Cut(line[1:], "=")
		if !ok || k == "" {
			continue
		}
		if r.Dict == nil {
			r.Dict = map[string]string{}
		}
		r.Dict[k] = v
	}
	return r, nil
}
