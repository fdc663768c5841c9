package watchdog

import (
	"fmt"
	"time"
)

// Counters are a cgroup's cumulative OOM counters at one instant.
//
// v2: OOM is memory.events "oom" (one per charge that reached the OOM stage,
// counted before and regardless of any kill), Kills is "oom_kill" +
// "oom_group_kill" (hierarchical, so kills in descendants count).
// v1: OOM is the running total of the eventfd registered on
// memory.oom_control, Kills the sum of the local "oom_kill" over the subtree.
type Counters struct {
	OOM   uint64
	Kills uint64
}

// Params tune the detector.
type Params struct {
	// Window is how far back OOM events and kills are counted.
	Window time.Duration
	// MinOOMs is how many OOM events without a kill inside Window make a
	// suspected loop. Isolated kill-less OOMs are normal (a victim still
	// exiting aborts selection).
	MinOOMs uint64
}

// DefaultParams are the defaults documented in the README.
var DefaultParams = Params{Window: time.Second, MinOOMs: 3}

// Validate says what is wrong with p.
func (p Params) Validate() error {
	if p.Window <= 0 || p.Window > time.Hour {
		return fmt.Errorf("detector window %v: want more than 0 and at most 1h", p.Window)
	}
	if p.MinOOMs < 1 {
		return fmt.Errorf("detector min OOMs %d: want at least 1", p.MinOOMs)
	}
	return nil
}

// Signal is what counters alone can say. Inspecting the tasks turns
// Suspect into a Verdict.
type Signal int

const (
	Quiet   Signal = iota // no OOM in the window, or too few to mean anything
	Killed                // OOMs and at least one kill: the kernel coped
	Suspect               // repeated OOMs, no kill: a loop or a stuck victim
)

func (s Signal) String() string {
	switch s {
	case Quiet:
		return "quiet"
	case Killed:
		return "oom-killed"
	case Suspect:
		return "suspect"
	}
	return fmt.Sprintf("signal(%d)", int(s))
}

// Assessment is the detector's answer for one observation.
type Assessment struct {
	Signal Signal
	OOMs   uint64 // OOM events inside the window
	Kills  uint64 // kills inside the window
	Reset  bool   // counters went backwards: the cgroup was recreated
}

type sample struct {
	at time.Time
	c  Counters
}

// maxSamples bounds a detector's memory. The kernel notifies at most 100
// times a second per file, so a one-second window needs about 100.
const maxSamples = 256

// Detector decides from a cgroup's counters over time. It is pure: the caller
// supplies the time and the counters; it does no I/O and reads no clock.
// One Detector per cgroup; not safe for concurrent use.
type Detector struct {
	p       Params
	samples []sample // oldest first; samples[0] is the baseline at or before the window start
}

// NewDetector returns a detector with parameters p.
func NewDetector(p Params) *Detector { return &Detector{p: p} }

// Observe records counters c read at now and assesses the window ending at
// now. The first observation only sets the baseline. Notifications without
// any counter change are fine: they change nothing.
func (d *Detector) Observe(now time.Time, c Counters) Assessment {
	if n := len(d.samples); n > 0 {
		last := d.samples[n-1].c
		if c.OOM < last.OOM || c.Kills < last.Kills {
			// Counters never go down; a cgroup removed and recreated under
			// the same name starts again from zero.
			d.samples = append(d.samples[:0], sample{now, c})
			return Assessment{Signal: Quiet, Reset: true}
		}
		if now.Before(d.samples[n-1].at) {
			now = d.samples[n-1].at // never let time run backwards
		}
	}
	d.samples = append(d.samples, sample{now, c})
	d.prune(now)
	return d.assess()
}

// Assess re-evaluates the window ending at now without new counters, e.g.
// to notice that OOMs have stopped.
func (d *Detector) Assess(now time.Time) Assessment {
	if len(d.samples) == 0 {
		return Assessment{}
	}
	last := d.samples[len(d.samples)-1]
	if now.Before(last.at) {
		now = last.at
	}
	// Nothing changed since the last sample: carry it forward to now.
	d.samples = append(d.samples, sample{now, last.c})
	d.prune(now)
	return d.assess()
}

// prune keeps exactly one sample at or before now-Window as the baseline.
func (d *Detector) prune(now time.Time) {
	start := now.Add(-d.p.Window)
	i := 0
	for i+1 < len(d.samples) && !d.samples[i+1].at.After(start) {
		i++
	}
	if over := len(d.samples) - i - maxSamples; over > 0 {
		i += over
	}
	if i > 0 {
		d.samples = append(d.samples[:0], d.samples[i:]...)
	}
}

func (d *Detector) assess() Assessment {
	base, last := d.samples[0].c, d.samples[len(d.samples)-1].c
	a := Assessment{OOMs: last.OOM - base.OOM, Kills: last.Kills - base.Kills}
	switch {
	case a.OOMs == 0:
		a.Signal = Quiet
	case a.Kills > 0:
		a.Signal = Killed
	case a.OOMs >= d.p.MinOOMs:
		a.Signal = Suspect
	default:
		a.Signal = Quiet
	}
	return a
}
