package watchdog

import (
	"cmp"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/oomwatch/oomwatch/internal/cgnames"
	"github.com/oomwatch/oomwatch/internal/procfs"
)

// Incident lifecycle: opening an incident, handing it to the handler, and
// resolving it once its OOMs stop.

// limitUsage reads the limit and usage an incident reports, read once per
// incident (0 for what cannot be read); err is the first read's error.
func (w *Watchdog) limitUsage(cg string) (lim, use uint64, err error) {
	lim, lerr := w.cfg.CG.Limit(cg)
	use, uerr := w.cfg.CG.Usage(cg)
	return lim, use, cmp.Or(lerr, uerr)
}

// openIncident opens the incident; lim and use are the cgroup's limit and
// usage (limitUsage), inspection is how long reading cands took.
func (w *Watchdog) openIncident(now time.Time, cg string, st *cgroupState, a Assessment, v Verdict, cands []Candidate, lim, use uint64, inspection time.Duration) {
	names := cgnames.Parse(cg)
	inc := &Incident{
		ID: newID(), Verdict: v, Cgroup: cg, Container: names.Container, Unit: names.Unit, Version: w.cfg.CG.Version, Started: now,
		Evidence:   Evidence{Window: w.cfg.Detector.Window, OOMs: a.OOMs, Kills: a.Kills},
		Candidates: cands, Origin: LargestOrigin(cands),
	}
	if w.cfg.Namer != nil && names.ID != "" {
		inc.ContainerName = w.cfg.Namer.Name(names)
	}
	inc.Evidence.Limit, inc.Evidence.Usage = lim, use
	st.inc = inc
	w.opened[cg] = st
	st.lastOOM = w.stamp(now)
	w.open.Add(1)
	w.incidents.Add(1)
	det := time.Duration(0)
	if st.episode != 0 {
		det = w.since(now, st.episode)
	}
	inc.Evidence.Detection = det
	// The handler first: while the kernel loops every millisecond counts,
	// and the log line can wait for it.
	t0 := time.Now()
	w.h.Open(inc)
	handlerTook := time.Since(t0)
	ev := w.log.Warn().Str("event", "incident").Str("incident", inc.ID).Str("verdict", string(v)).Str("cgroup", cg).
		Str("container", inc.Container).Str("container_name", inc.ContainerName).Str("unit", inc.Unit).
		Uint64("oom_events", a.OOMs).Uint64("oom_kills", a.Kills).Dur("window", w.cfg.Detector.Window).
		Int("tasks", len(cands)).
		// detection: first OOM notification of the episode → the batch
		// that found the loop; inspection: reading its tasks; handler:
		// handing the incident over (the policy starts its ladder).
		Dur("detection", det).Dur("inspection", inspection).Dur("handler", handlerTook).Dur("verdict_to_handler", t0.Sub(now))
	if inc.Origin != nil {
		ev = ev.Int("origin_pid", inc.Origin.PID).Str("origin_comm", procfs.Safe(inc.Origin.Comm)).Int("origin_parent_pid", inc.Origin.ParentPID)
	}
	ev.Msg(verdictMessage(v))
}

func verdictMessage(v Verdict) string {
	switch v {
	case VerdictLoop:
		return "OOM loop: repeated OOMs, no kill, every task unkillable"
	case VerdictStalled:
		return "OOM stalled: repeated OOMs without a kill although killable tasks exist"
	case VerdictPaused:
		return "OOM paused: oom_kill_disable=1 and under_oom, the kernel waits for a userspace handler"
	case VerdictForced:
		return "OOM forced charge: kill-less OOMs and usage above the limit (kernel 4.19-5.15 charges over the limit instead of looping)"
	}
	return string(v)
}

// resolveQuiet closes incidents whose cgroup has seen no OOM for ResolveAfter.
func (w *Watchdog) resolveQuiet(now time.Time) {
	if w.open.Load() == 0 {
		return
	}
	for cg, st := range w.opened {
		if st.inc.Verdict == VerdictPaused {
			if oc, err := w.cfg.CG.OOMControl(cg); err == nil && !oc.UnderOOM {
				st.paused = false
				w.closeIncident(st, "no longer under_oom")
			}
			continue
		}
		if w.since(now, st.lastOOM) >= w.cfg.ResolveAfter {
			w.closeIncident(st, fmt.Sprintf("no OOM for %v", w.cfg.ResolveAfter))
		}
	}
}

func (w *Watchdog) closeIncident(st *cgroupState, why string) {
	inc := st.inc
	st.inc = nil
	delete(w.opened, inc.Cgroup)
	w.open.Add(-1)
	w.log.Info().Str("event", "resolved").Str("incident", inc.ID).Str("cgroup", inc.Cgroup).Str("why", why).Msg("incident resolved")
	w.h.Resolved(inc, why)
}

// newID returns a random incident id. Not crypto/rand: its getrandom(2)
// blocks until the kernel's CRNG is ready, and early in boot that stalled
// the event loop for seconds while a loop ran unchecked (seen in the VM on
// 6.1 and 6.12). math/rand/v2 is seeded from AT_RANDOM and never blocks.
func newID() string {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], rand.Uint64())
	return hex.EncodeToString(b[:])
}
