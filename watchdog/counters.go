package watchdog

import (
	"errors"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/oomwatch/oomwatch/eventfd"
	"github.com/oomwatch/oomwatch/internal/cgnames"
	"github.com/oomwatch/oomwatch/internal/cgroupfs"
)

// Counters and suspicion: reading a cgroup's OOM counters when the kernel
// signals it, the detector's verdict, and the inspection of a suspected
// loop.

// subtreeReads bounds the cgroups one v1 reading of a cgroup's counters
// looks at: the cgroup and its nearest watched descendants (see counters).
// Every memory.oom_control read is a file read (12–16 µs on the 6.18 host of
// docs/BENCHMARKS.md): 256 of them keep a parent's notification within a
// few milliseconds however large its subtree is.
const subtreeReads = 256

// V2Counters reads cg's counters from its memory.events: oom, and the kills
// (oom_kill + oom_group_kill).
func V2Counters(h cgroupfs.Hierarchy, cg string) (Counters, error) {
	ev, err := h.MemoryEvents(cg)
	return v2Counters(ev), err
}

func v2Counters(ev cgroupfs.MemoryEvents) Counters {
	return Counters{OOM: ev.OOM, Kills: ev.OOMKill + ev.OOMGroupKill}
}

// counters reads cg's counters; v1Count is what the eventfd just reported.
// On v1 it also returns cg's memory.oom_control (zero on v2).
//
// v1's oom_kill is local to each memcg (the victim's), so a kill caused by
// an OOM at cg shows in a descendant: Kills sums cg's own and that of its
// watched descendants, the nearest subtreeReads-1 of them. A kill beyond
// them reads as a kill-less OOM: at worst a suspected loop that the
// inspection then calls stalled (the victim was killable). v1Base sums the
// baseline over the same cgroups.
func (w *Watchdog) counters(cg string, st *cgroupState, v1Count uint64) (Counters, cgroupfs.OOMControl, error) {
	if w.cfg.CG.Version == 2 {
		ev, err := w.cfg.CG.MemoryEvents(cg)
		if err != nil {
			return Counters{}, cgroupfs.OOMControl{}, err
		}
		st.max = ev.Max
		return v2Counters(ev), cgroupfs.OOMControl{}, nil
	}
	oc, err := w.cfg.CG.OOMControl(cg)
	if err != nil {
		return Counters{}, oc, err
	}
	st.v1OOM += v1Count
	kills := oc.OOMKill
	err = w.eachBelow(cg, subtreeReads-1, func(c string, _ *cgroupState) error {
		d, err := w.cfg.CG.OOMControl(c)
		if errors.Is(err, cgroupfs.ErrGone) {
			return nil // removed meanwhile: its Gone event follows
		}
		kills += d.OOMKill
		return err
	})
	if err != nil {
		return Counters{}, oc, err
	}
	return Counters{OOM: st.v1OOM, Kills: kills}, oc, nil
}

// v1Base is the v1 baseline of cg: the oom_kill of the cgroups counters
// sums, as each was when it was armed.
func (w *Watchdog) v1Base(cg string, st *cgroupState) Counters {
	kills := st.armKills
	_ = w.eachBelow(cg, subtreeReads-1, func(_ string, s *cgroupState) error {
		kills += s.armKills
		return nil
	})
	return Counters{OOM: st.v1OOM, Kills: kills}
}

func (w *Watchdog) handle(now time.Time, evs []eventfd.Event) {
	var suspects []string
	for _, ev := range evs {
		w.events.Add(1)
		switch ev.Kind {
		case eventfd.Created:
			if _, ok := w.cgroups[ev.Key]; ok {
				w.fresh = true
				err := w.add(path.Join(ev.Key, ev.Name))
				w.fresh = false
				if err != nil && !errors.Is(err, cgroupfs.ErrTooMany) {
					w.log.Warn().Err(err).Str("cgroup", path.Join(ev.Key, ev.Name)).Msg("cannot watch new cgroup")
				}
			}
		case eventfd.Removed:
			w.drop(path.Join(ev.Key, ev.Name))
		case eventfd.Gone:
			w.drop(ev.Key)
		case eventfd.Overflow:
			// Start over when one is under way: what it has visited may
			// have changed unseen.
			w.log.Warn().Str("event", "inotify_overflow").Msg("inotify queue overflow: rescanning the hierarchy, a slice per loop turn")
			w.rescan, w.rescanned = append(w.rescan[:0], "/"), 0
		case eventfd.OOM:
			if w.observe(now, ev.Key, ev.Count) {
				suspects = append(suspects, ev.Key)
			}
		case eventfd.Modified:
			if w.cfg.CG.Version == 2 && cgroupfs.SubtreeControlFile(ev.Name) {
				w.enableMemory(ev.Key)
				continue
			}
			if w.cfg.CG.Version == 2 && cgroupfs.MemoryEventsFile(ev.Name) {
				if w.observe(now, ev.Key, 0) {
					suspects = append(suspects, ev.Key)
				}
			}
		}
	}
	if len(suspects) == 0 {
		return
	}
	w.suspectAll(now, suspects)
}

// suspectAll inspects suspected loops. v1 notifies the OOMing cgroup and
// all its descendants: handle parents first and skip any cgroup below one
// with an open incident.
func (w *Watchdog) suspectAll(now time.Time, suspects []string) {
	sort.Slice(suspects, func(i, j int) bool { return depth(suspects[i]) < depth(suspects[j]) })
	for _, cg := range suspects {
		if !w.ancestorOpen(cg) {
			w.suspect(now, cg)
		}
	}
}

func depth(cg string) int { return strings.Count(cgroupfs.Clean(cg), "/") }

func (w *Watchdog) ancestorOpen(cg string) bool {
	for p, ok := cgroupfs.Parent(cg); ok; p, ok = cgroupfs.Parent(p) {
		if st := w.cgroups[p]; st != nil && st.inc != nil {
			return true
		}
	}
	return false
}

// observe feeds one notification into cg's detector and reports whether it
// is a suspected loop that needs inspection.
func (w *Watchdog) observe(now time.Time, cg string, v1Count uint64) bool {
	st := w.cgroups[cg]
	if st == nil || cg == "/" || st.noMemory {
		return false
	}
	if st.baseLate {
		// Notified before readBaselines got here: what memory.events
		// says now is the baseline. The kernel's next OOM notifies again,
		// so a loop costs one more OOM to detect, once, right after start.
		w.baseline(now, cg, st)
		return false
	}
	if st.needBase {
		st.last, st.needBase = w.v1Base(cg, st), false
	}
	prevMax := st.max
	c, oc, err := w.counters(cg, st, v1Count)
	if errors.Is(err, cgroupfs.ErrGone) {
		w.drop(cg)
		return false
	}
	if err != nil {
		w.log.Warn().Err(err).Str("cgroup", cg).Msg("cannot read OOM counters")
		return false
	}
	if c.OOM >= st.last.OOM && c.Kills >= st.last.Kills {
		if d := c.OOM - st.last.OOM; d > 0 {
			w.ooms.Add(d)
			if st.lastOOM == 0 || w.since(now, st.lastOOM) > w.cfg.Detector.Window {
				st.episode = w.stamp(now)
			}
		}
		w.kills.Add(c.Kills - st.last.Kills)
	}
	prev := st.last
	st.last = c
	if g := w.gen.Load(); st.gen != g {
		// New rules: a new detector, from the current counters.
		st.det, st.gen = nil, g
		prev = c
	}
	var a Assessment
	switch {
	case st.det != nil:
		a = st.det.Observe(now, c)
	case c != prev:
		// The detector is made at the first change, its history starting
		// from the baseline in st.last: most cgroups never see an OOM and
		// cost no detector at all.
		st.det = NewDetector(w.params(cg))
		st.det.Observe(now, prev)
		a = st.det.Observe(now, c)
	}
	if a.Reset {
		w.log.Info().Str("cgroup", cg).Msg("counters went backwards: cgroup was recreated, detector reset")
	}
	if a.OOMs > 0 {
		st.lastOOM = w.stamp(now)
	}
	if st.inc != nil {
		return false // evidence is fixed at open; resolution uses lastOOM
	}
	if w.cfg.CG.Version == 2 {
		w.follow(now, cg, a)
		if st.max > prevMax && a.OOMs == 0 && a.Kills == 0 {
			w.watchLimit(now, cg)
		}
	}
	w.preInspect(now, cg, a)
	// A v1 OOM at a cgroup notifies its descendants too, and they inherit
	// oom_kill_disable at mkdir and share its under_oom: the paused cgroup
	// is the outermost one (parents are notified first), not each of them.
	if w.cfg.CG.Version == 1 && v1Count > 0 && oc.KillDisable && oc.UnderOOM && !st.paused && !w.ancestorOpen(cg) {
		st.paused = true
		t0 := time.Now()
		cands, _ := w.insp.Candidates(cg)
		inspection := time.Since(t0)
		lim, use, _ := w.limitUsage(cg)
		w.openIncident(now, cg, st, a, VerdictPaused, cands, lim, use, inspection)
		return false
	}
	if w.cfg.CG.Version == 1 && v1Count > 0 && a.Signal != Killed {
		w.scheduleRecheck(cg, st, now)
	}
	switch a.Signal {
	case Killed:
		w.logKill(now, cg, st, a)
		return false
	case Suspect:
		return w.isLimitHolder(cg, st)
	}
	return false
}

// logKill logs an ordinary OOM kill at info, as the kernel's own answer to
// an OOM: once per detection window per cgroup, and only at the cgroup
// whose limit was hit (v2 counters are hierarchical: every ancestor sees
// the same kill), so a tenant killing in a loop cannot flood the journal.
func (w *Watchdog) logKill(now time.Time, cg string, st *cgroupState, a Assessment) {
	if !w.isLimitHolder(cg, st) {
		return
	}
	if st.killLog != 0 && w.since(now, st.killLog) < w.cfg.Detector.Window {
		return
	}
	st.killLog = w.stamp(now)
	if w.cfg.RiskHint != nil {
		w.cfg.RiskHint(cg)
	}
	names := cgnames.Parse(cg)
	w.log.Info().Str("event", "oom_kill").Str("cgroup", cg).Str("container", names.Container).Str("unit", names.Unit).
		Uint64("oom_events", a.OOMs).Uint64("oom_kills", a.Kills).Msg("OOM killed a task: the kernel coped")
}

// isLimitHolder: v2 memory.events is hierarchical — an OOM at /a raises the
// counters of /a and every ancestor. Only the cgroup whose own limit was hit
// sees memory.events.local move (5.2+).
func (w *Watchdog) isLimitHolder(cg string, st *cgroupState) bool {
	if w.cfg.CG.Version == 1 {
		// v1 notifies the OOMing cgroup and all its descendants. Parents are
		// handled first (see handle); a child without a limit of its own
		// cannot be where the limit was hit.
		lim, err := w.cfg.CG.Limit(cg)
		return err == nil && lim != cgroupfs.Unlimited
	}
	loc, err := w.cfg.CG.MemoryEventsLocal(cg)
	if err != nil {
		// No memory.events.local (before 5.2): fall back to "has a limit".
		lim, lerr := w.cfg.CG.Limit(cg)
		return lerr == nil && lim != cgroupfs.Unlimited
	}
	rose := !st.hasLocal || loc.OOM > st.localOOM
	st.localOOM, st.hasLocal = loc.OOM, true
	return rose && loc.OOM > 0
}

func (w *Watchdog) suspect(now time.Time, cg string) {
	st := w.cgroups[cg]
	if st == nil || st.inc != nil {
		return
	}
	var a Assessment
	if st.det != nil {
		a = st.det.Assess(now)
	}
	if a.Signal != Suspect {
		st.stalled = false
		return
	}
	cands, inspection, err := w.candidates(now, cg)
	if errors.Is(err, cgroupfs.ErrGone) {
		w.drop(cg)
		return
	}
	if err != nil {
		w.log.Warn().Err(err).Str("cgroup", cg).Msg("cannot inspect tasks")
		return
	}
	v := Classify(cands)
	if v == VerdictStalled && w.cfg.CG.Version == 1 && !st.stalled {
		// The v1 eventfd fires before the kernel counts the kill it is
		// about to make: look again once it has settled before calling
		// killable tasks "stalled".
		st.stalled = true
		w.scheduleRecheck(cg, st, now)
		return
	}
	st.stalled = false
	lim, use, err := w.limitUsage(cg)
	if errors.Is(err, cgroupfs.ErrGone) && !w.cfg.CG.Exists(cg) {
		// Removed while its tasks were read (they exited first: rmdir
		// needs an empty cgroup). An incident about it would name a
		// cgroup that no longer exists and tasks that are gone.
		w.log.Info().Str("event", "gone_during_inspection").Str("cgroup", cg).Msg("cgroup removed while its tasks were read; no incident")
		w.drop(cg)
		return
	}
	ok := err == nil
	if w.cfg.ForcedChargeKernel && ok {
		if forced, _ := ForcedCharge(ChargeSample{KilllessOOMs: a.OOMs, Kills: a.Kills, Usage: use, Limit: lim}); forced {
			v = VerdictForced
		}
	}
	w.openIncident(now, cg, st, a, v, cands, lim, use, inspection)
}

// preInspection is what an inspection read ahead of the verdict (see
// preInspect).
type preInspection struct {
	at    stamp
	cands []Candidate
	took  time.Duration
}

// preInspect reads the tasks of a limit holder at its first kill-less OOM,
// before the detector has the evidence of a loop (MinOOMs). A loop's next
// OOMs come every few milliseconds, and reading the tasks takes about as
// long: read while they arrive, the inspection no longer delays the
// verdict, and the loop costs fewer OOM attempts before it is broken. One
// read per cgroup and window; a kill on the way (the kernel coped) makes
// the verdict Killed and the read is dropped unused.
func (w *Watchdog) preInspect(now time.Time, cg string, a Assessment) {
	if a.OOMs == 0 || a.Kills > 0 {
		delete(w.pre, cg) // quiet, or the kernel coped
		return
	}
	if a.Signal != Quiet {
		return // the evidence is complete: suspect reads the tasks if none were read ahead
	}
	if p, ok := w.pre[cg]; ok && w.since(now, p.at) <= w.cfg.Detector.Window {
		return
	}
	if lim, err := w.cfg.CG.Limit(cg); err != nil || lim == cgroupfs.Unlimited {
		return // no limit of its own: not where an OOM is charged
	}
	t0 := time.Now()
	cands, err := w.insp.Candidates(cg)
	if err != nil {
		delete(w.pre, cg)
		return
	}
	w.pre[cg] = preInspection{at: w.stamp(now), cands: cands, took: time.Since(t0)}
}

// candidates are cg's tasks for a verdict: those read ahead by preInspect
// within the window, else read now. inspection is how long the verdict
// waited for them (0 when they were read ahead).
func (w *Watchdog) candidates(now time.Time, cg string) (cands []Candidate, inspection time.Duration, err error) {
	if p, ok := w.pre[cg]; ok {
		delete(w.pre, cg)
		if w.since(now, p.at) <= w.cfg.Detector.Window {
			return p.cands, 0, nil
		}
	}
	t0 := time.Now()
	cands, err = w.insp.Candidates(cg)
	return cands, time.Since(t0), err
}
