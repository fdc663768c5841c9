package watchdog

import (
	"cmp"
	"time"

	"github.com/oomwatch/oomwatch/internal/cgroupfs"
)

// Timers of the event loop: v1 re-reads after the kernel's settle time and
// the follow-up checks of suspected loops.

func (w *Watchdog) scheduleRecheck(cg string, st *cgroupState, now time.Time) {
	if st.recheck == 0 {
		st.recheck = w.stamp(now.Add(settleV1))
		w.rechecks[cg] = true
	}
}

// recheckDue re-reads the counters of v1 cgroups whose settle time passed,
// for at most recheckBudget.
func (w *Watchdog) recheckDue(now time.Time) {
	w.rechecksLeft = false
	if len(w.rechecks) == 0 {
		return
	}
	start := time.Now()
	var suspects []string
	for cg := range w.rechecks {
		if time.Since(start) > recheckBudget {
			w.rechecksLeft = true
			break
		}
		st := w.cgroups[cg]
		if st == nil {
			delete(w.rechecks, cg)
			continue
		}
		if w.stamp(now) < st.recheck {
			continue
		}
		delete(w.rechecks, cg)
		st.recheck = 0
		stalled := st.stalled
		if w.observe(now, cg, 0) || stalled {
			suspects = append(suspects, cg)
		}
	}
	w.suspectAll(now, suspects)
}

// following is a cgroup whose memory.events the watchdog reads itself
// until then: since its first kill-less OOM (oom), or since its limit was
// hit by tasks that are all unkillable (see watchLimit).
type following struct {
	until stamp
	oom   bool
}

// follow starts or stops following cg after an observation (see followEvery).
func (w *Watchdog) follow(now time.Time, cg string, a Assessment) {
	if a.Signal != Quiet || a.Kills > 0 {
		delete(w.follows, cg)
		return
	}
	f, ok := w.follows[cg]
	switch {
	case a.OOMs == 0 && !f.oom:
		// quiet, or a limit watch that runs to its end
		if ok && !f.oom && w.stamp(now) > f.until {
			delete(w.follows, cg)
		}
	case a.OOMs == 0:
		delete(w.follows, cg)
	case !f.oom:
		w.follows[cg] = following{until: w.stamp(now.Add(cmp.Or(w.cfg.FollowFor, followFor))), oom: true}
	}
}

// limitHit is what watchLimit found when it last read a cgroup's tasks.
type limitHit struct {
	at    stamp
	loops bool // every task unkillable: its next OOM would loop
}

// watchLimit is told that cg's memory.events max rose with no OOM: the
// limit was hit and reclaim runs. The kernel's OOM notification that may
// follow within milliseconds is held back to the next 10 ms mark by the
// notification before it (this one), and a loop of fast OOMs would be
// several OOMs further by then. So when every task of cg is unkillable
// (read once per limitCheckEvery), cg is followed for limitFollowFor, as
// after a kill-less OOM. At most maxLimitHits cgroups are remembered and
// maxFollows followed: a tenant's many cgroups at their limits cost bounded
// reads.
func (w *Watchdog) watchLimit(now time.Time, cg string) {
	if _, ok := w.follows[cg]; ok {
		return
	}
	h, ok := w.limitHits[cg]
	if !ok || w.since(now, h.at) > limitCheckEvery {
		if !ok && len(w.limitHits) >= maxLimitHits {
			for c, o := range w.limitHits {
				if w.since(now, o.at) > limitCheckEvery {
					delete(w.limitHits, c)
				}
			}
			if len(w.limitHits) >= maxLimitHits {
				return
			}
		}
		h = limitHit{at: w.stamp(now)}
		if lim, err := w.cfg.CG.Limit(cg); err == nil && lim != cgroupfs.Unlimited {
			cands, err := w.insp.Candidates(cg)
			h.loops = err == nil && Classify(cands) == VerdictLoop
		}
		w.limitHits[cg] = h
	}
	if h.loops && len(w.follows) < maxFollows {
		w.follows[cg] = following{until: w.stamp(now.Add(cmp.Or(w.cfg.FollowFor, limitFollowFor)))}
	}
}

// followDue reads the counters of the cgroups being followed, at most every
// followEvery however often the loop wakes up.
func (w *Watchdog) followDue(now time.Time) {
	if len(w.follows) == 0 || w.since(now, w.lastFollow) < followEvery {
		return
	}
	w.lastFollow = w.stamp(now)
	var suspects []string
	for cg, f := range w.follows {
		if w.stamp(now) > f.until || w.ancestorOpen(cg) {
			delete(w.follows, cg)
			continue
		}
		if w.observe(now, cg, 0) {
			suspects = append(suspects, cg)
		}
	}
	w.suspectAll(now, suspects)
}
