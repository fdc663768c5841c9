package watchdog

import (
	"cmp"
	"time"
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

// follow starts or stops following cg after an observation (see followEvery).
func (w *Watchdog) follow(now time.Time, cg string, a Assessment) {
	if a.Signal != Quiet || a.OOMs == 0 || a.Kills > 0 {
		delete(w.follows, cg)
		return
	}
	if _, ok := w.follows[cg]; !ok {
		w.follows[cg] = w.stamp(now.Add(cmp.Or(w.cfg.FollowFor, followFor)))
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
	for cg, until := range w.follows {
		if w.stamp(now) > until || w.ancestorOpen(cg) {
			delete(w.follows, cg)
			continue
		}
		if w.observe(now, cg, 0) {
			suspects = append(suspects, cg)
		}
	}
	w.suspectAll(now, suspects)
}
