// Package peerbench is the pure side of `make bench-peers`: the same OOM
// loop under each peer (the kernel alone, earlyoom, systemd-oomd, oomwatch)
// in the systemd VM, one boot per peer. The guest's probe (./peerprobe)
// records the raw facts of each run as one PEERRUN line; this package turns
// them into an outcome (broken, never, spoilt), percentiles and the table.
package peerbench

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
)

// RunPrefix starts the probe's line of one run; the JSON runs to the end
// of the line.
const RunPrefix = "PEERRUN "

// Peers, in the table's order.
const (
	Kernel      = "kernel"       // nothing but the kernel's OOM killer
	Earlyoom    = "earlyoom"     // Debian's earlyoom, default configuration
	OomdTight   = "oomd-tight"   // systemd-oomd, 0.01 % for 1 s
	OomdDefault = "oomd-default" // systemd-oomd, 60 % for 30 s
	Oomwatch    = "oomwatch"     // the .deb, no config
)

// Peers lists every peer in the table's order.
var Peers = []string{Kernel, Earlyoom, OomdTight, OomdDefault, Oomwatch}

// Variants of the incident.
const (
	StandIn = "standin" // a transient unit: MemoryMax=48M, init and hog at -1000
	LXC     = "lxc"     // the lxc image's web1: memory.max 48M, lxc.proc.oom_score_adj -1000
)

// Variants lists the incident variants in the table's order.
var Variants = []string{StandIn, LXC}

// Kill is a kernel "Killed process" line.
type Kill struct {
	TS   float64 `json:"ts"` // kernel clock, s since boot
	PID  int     `json:"pid"`
	Comm string  `json:"comm"`
}

// JournalLine is a journal entry of a peer's unit logged during the run.
type JournalLine struct {
	TS      float64 `json:"ts"` // __MONOTONIC_TIMESTAMP on the kernel clock, s
	Unit    string  `json:"unit"`
	Message string  `json:"msg"`
}

// Run is what the guest's probe recorded of one run. Times are on the
// kernel log's clock (seconds since boot); 0 means never seen.
type Run struct {
	Peer    string `json:"peer"`
	Variant string `json:"variant"`
	N       int    `json:"n"` // 1-based run number within the boot
	Cgroup  string `json:"cgroup"`

	FirstOOM float64 `json:"first_oom"` // first "invoked oom-killer" of the cgroup's loop
	HogExit  float64 `json:"hog_exit"`  // the hog's exit (its pidfd readable)
	Capped   bool    `json:"capped"`    // still looping at the cap: the probe killed the hog
	CapSec   float64 `json:"cap_s"`

	HogPID    int    `json:"hog_pid"`
	InitPID   int    `json:"init_pid"`
	HogStatus string `json:"hog_status"` // "signal 9", "exit 1", "" unknown

	Kills   []Kill        `json:"kills"`   // kernel kills in the cgroup during the run
	Journal []JournalLine `json:"journal"` // the peers' units' kill or action lines during the run

	OOM     uint64 `json:"oom"`      // memory.events oom, run start → break (or cap)
	OOMKill uint64 `json:"oom_kill"` // memory.events oom_kill, same span
	CPUUsec uint64 `json:"cpu_usec"` // cpu.stat usage_usec, first OOM seen → break (or cap)

	InitAlive bool `json:"init_alive"` // the container's init survived
	Running   bool `json:"running"`    // the container still runs (unit active / lxc RUNNING)

	LostKmsg uint64 `json:"lost_kmsg"` // kernel log records overwritten before the probe read them
	Error    string `json:"error,omitempty"`
}

// ParseRun parses the JSON of one PEERRUN line.
func ParseRun(line string) (Run, error) {
	var r Run
	s, ok := strings.CutPrefix(strings.TrimSpace(line), strings.TrimSpace(RunPrefix))
	if !ok {
		return r, fmt.Errorf("not a %q line", RunPrefix)
	}
	if err := json.Unmarshal([]byte(strings.TrimSpace(s)), &r); err != nil {
		return r, fmt.Errorf("PEERRUN: %w", err)
	}
	if r.Peer == "" || r.Variant == "" {
		return r, fmt.Errorf("PEERRUN: no peer or variant")
	}
	return r, nil
}

// ParseRuns returns the runs of every PEERRUN line in out (a VM's output)
// and the errors of the lines that did not parse.
func ParseRuns(out string) ([]Run, []error) {
	var runs []Run
	var errs []error
	for _, l := range strings.Split(out, "\n") {
		i := strings.Index(l, RunPrefix)
		if i < 0 {
			continue
		}
		r, err := ParseRun(l[i:])
		if err != nil {
			errs = append(errs, err)
			continue
		}
		runs = append(runs, r)
	}
	return runs, errs
}

// Status is how a run ended.
type Status string

const (
	Broken Status = "broken" // a kill ended the loop
	Never  Status = "never"  // still looping at the cap
	Spoilt Status = "spoilt" // no loop, or the hog died without a kill
)

// Outcome is the verdict on one run.
type Outcome struct {
	Status Status
	By     string  // what ended it: "kernel kill", "systemd-oomd", "earlyoom"
	Secs   float64 // first OOM → loop broken; +Inf for never and spoilt
	Killed string  // "hog", "init and all", "nothing"
	Why    string  // for spoilt runs
	// Before: the peer killed while the container was nearing its limit,
	// before the first OOM (so no loop began; Secs 0).
	Before bool
}

// Judge decides how a run ended. The loop is broken by a kill: the
// kernel's (after a peer made a task killable: "Killed process" of the
// hog) or a peer's own (systemd-oomd's cgroup kill, earlyoom's signal),
// which the peer's journal line names; the time is the kernel's kill line,
// else the hog's exit. A peer's kill before the first OOM counts as broken
// after 0 s (Before). A hog that exited with no kill spoils the run, as
// does a run where neither an OOM nor a kill was seen.
func Judge(r Run) Outcome {
	o := Outcome{Secs: math.Inf(1), Killed: killed(r)}
	switch {
	case r.Error != "":
		o.Status, o.Why = Spoilt, r.Error
		return o
	case r.FirstOOM == 0:
		if by := peerKill(r); by != "" && r.HogExit > 0 {
			o.Status, o.By, o.Secs, o.Before = Broken, by, 0, true
			return o
		}
		o.Status, o.Why = Spoilt, "no OOM seen"
		return o
	case r.Capped:
		o.Status, o.Killed = Never, "nothing"
		return o
	}
	for _, k := range r.Kills {
		if k.PID == r.HogPID && k.TS >= r.FirstOOM {
			o.Status, o.By, o.Secs = Broken, "kernel kill", k.TS-r.FirstOOM
			return o
		}
	}
	if by := peerKill(r); by != "" && r.HogExit > 0 {
		o.Status, o.By, o.Secs = Broken, by, r.HogExit-r.FirstOOM
		return o
	}
	o.Status = Spoilt
	switch {
	case r.HogExit == 0:
		o.Why = "the hog's end was not seen"
	case r.HogStatus != "":
		o.Why = "the hog died with no kill (" + r.HogStatus + ")"
	default:
		o.Why = "the hog died with no kill"
	}
	return o
}

// peerKill names the peer whose journal says it killed during the run.
func peerKill(r Run) string {
	for _, j := range r.Journal {
		if j.TS < r.FirstOOM-1 {
			continue
		}
		switch {
		case strings.HasPrefix(j.Unit, "systemd-oomd") && strings.HasPrefix(j.Message, "Killed "):
			return "systemd-oomd"
		case strings.HasPrefix(j.Unit, "earlyoom") && strings.Contains(j.Message, "sending SIG"):
			return "earlyoom"
		}
	}
	return ""
}

func killed(r Run) string {
	switch {
	case r.Capped || r.HogExit == 0:
		return "nothing"
	case r.InitAlive:
		return "hog"
	default:
		return "init and all"
	}
}

// NotePrefix starts a line where the guest says what it could not set up.
const NotePrefix = "PEERNOTE "

// ParseNotes returns the PEERNOTE lines of out, each prefixed with peer.
func ParseNotes(out, peer string) []string {
	var notes []string
	for _, l := range strings.Split(out, "\n") {
		if i := strings.Index(l, NotePrefix); i >= 0 {
			notes = append(notes, peer+": "+strings.TrimSpace(l[i+len(NotePrefix):]))
		}
	}
	return notes
}
