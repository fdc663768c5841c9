package scalebench

import (
	"fmt"
	"slices"
	"strings"

	"github.com/oomwatch/oomwatch/test/benchrow"
)

// The scale targets (docs/BENCHMARKS.md "Reading against the targets").
const (
	targetArmSec  = 2.0  // arming at 10,000 cgroups
	targetRSSMiB  = 30.0 // resident at 10,000 cgroups
	targetPeerMem = 5.0  // the peer's RSS per added cgroup over oomwatch's
)

// ScaleRows turns scale results (measurement 2) into rows for the one
// table: per hierarchy and size, each method's numbers; the targets on
// oomwatch's (armed all, arm time, RSS, goroutines constant across sizes,
// no kernel notification while idle, the peer's RSS per added cgroup at
// least 5× oomwatch's, between the smallest and the largest size where both
// ran: a ratio of whole RSS is distorted by the runtime floor both pay).
// bench is the emitting benchmark's name.
func ScaleRows(bench string, rs []Result) []benchrow.Row {
	scen := func(r Result) string { return fmt.Sprintf("%s, %d cgroups", r.Hierarchy, r.Cgroups) }
	// A method measured twice at one size (the v2 peer at the default
	// inotify limits, then raised): the earlier runs get their own
	// scenario, named by their note ("max_user_instances=128 (default)").
	last := map[string]int{}
	for i, r := range rs {
		last[scen(r)+"\x00"+r.Method] = i
	}
	scenario := func(i int, r Result) string {
		s := scen(r)
		if last[s+"\x00"+r.Method] == i {
			return s
		}
		n, _, _ := strings.Cut(r.Note, ":")
		if n = strings.TrimSpace(n); n == "" {
			n = fmt.Sprintf("run %d", i+1)
		}
		return s + ", " + n
	}
	// goroutines at the first size measured, per hierarchy: the reference for "constant"
	refG := map[string]Result{}
	for _, r := range rs {
		if _, ok := refG[r.Hierarchy]; !ok && r.Method == Oomwatch && !crashed(r) {
			refG[r.Hierarchy] = r
		}
	}
	var out []benchrow.Row
	rss := map[string]map[string]Result{} // scenario → method → result, for the ratio
	for i, r := range rs {
		s := scenario(i, r)
		row := func(metric string, v float64, unit string) benchrow.Row {
			return benchrow.Row{Measurement: benchrow.Scale, Scenario: s, Method: r.Method, Metric: metric, Value: v, Unit: unit, Bench: bench}
		}
		own := r.Method == Oomwatch
		if crashed(r) {
			c := row("crash", 0, "")
			c.Text, c.Note = "crashed", r.Crash
			if own {
				c = c.Check("no crash", false)
			}
			out = append(out, c)
			continue
		}
		if rss[s] == nil {
			rss[s] = map[string]Result{}
		}
		rss[s][r.Method] = r
		if r.Method != Baseline {
			a := row("armed", float64(r.Armed), "")
			a.Note = strings.TrimRight(strings.TrimSpace(r.Note), ";:")
			if own {
				a = a.Equal(float64(r.Cgroups), "all")
				if r.IdleEvents != nil {
					a.Note = "" // the idle notifications have a row of their own
				}
			}
			out = append(out, a)
			if r.ArmErrors > 0 {
				e := row("arm errors", float64(r.ArmErrors), "")
				e.Note = "first: " + r.FirstErr
				out = append(out, e)
			}
			t := row("arm time", r.ArmSec, "s")
			if own {
				t = t.AtMost(targetArmSec)
			}
			out = append(out, t)
			if r.BaseSec > 0 {
				out = append(out, row("counters read (from start)", r.BaseSec, "s"))
			}
		}
		m := row("RSS", mib(r.End.RSSKiB), "MiB")
		if own {
			m = m.AtMost(targetRSSMiB)
		}
		g := row("goroutines", float64(r.End.Goroutines), "")
		if ref, ok := refG[r.Hierarchy]; own && ok {
			g = g.Check(fmt.Sprintf("constant (%d at %d cgroups)", ref.End.Goroutines, ref.Cgroups), r.End.Goroutines == ref.End.Goroutines)
		}
		out = append(out, m, row("peak RSS (VmHWM)", mib(r.End.HWMKiB), "MiB"), g,
			row("threads", float64(r.End.Threads), ""), row("fds", float64(r.End.FDs), ""))
		if r.IdleEvents != nil {
			out = append(out, row("kernel notifications while idle", float64(*r.IdleEvents), "").Equal(0, "no wake-up of its own"))
		}
		w := row("wake-ups while idle", r.WakeupsPS, "/s")
		w.Note = fmt.Sprintf("%d in %.0f s", r.Wakeups, r.IdleSec)
		out = append(out, row("CPU while idle", r.IdleCPUms, "ms"), w)
		if r.Crash != "" {
			c := row("crash", 0, "")
			c.Text, c.Note = "crashed", r.Crash
			out = append(out, c)
		}
	}
	// the peer's memory over oomwatch's, per scenario where oomwatch ran
	for i, r := range rs {
		s := scenario(i, r)
		if r.Method != Oomwatch || rss[s] == nil {
			continue
		}
		o, ok := rss[s][Oomwatch]
		if !ok {
			continue
		}
		row := benchrow.Row{Measurement: benchrow.Scale, Scenario: s, Method: Oomwatch, Metric: "RSS: peer ÷ oomwatch", Unit: "×", Bench: bench}
		if p, ok := rss[s][Peer]; ok && o.End.RSSKiB > 0 {
			row.Value = float64(p.End.RSSKiB) / float64(o.End.RSSKiB)
			out = append(out, row)
			continue
		}
		for j, p := range rs {
			if p.Method == Peer && crashed(p) && scenario(j, p) == s {
				row.Text, row.Note = "peer crashed", "the peer could not run at this size"
				out = append(out, row)
			}
		}
	}
	return append(out, perCgroupRows(bench, rs)...)
}

// perCgroupRows: per hierarchy, each method's RSS per added cgroup between
// the smallest and the largest size where oomwatch and the peer both ran,
// and the peer's over oomwatch's (target ≥ 5×).
func perCgroupRows(bench string, rs []Result) []benchrow.Row {
	type key struct {
		h string
		n int
	}
	ran := map[key]map[string]Result{}
	var hiers []string
	for _, r := range rs {
		if crashed(r) || r.Crash != "" || (r.Method != Oomwatch && r.Method != Peer) {
			continue
		}
		k := key{r.Hierarchy, r.Cgroups}
		if ran[k] == nil {
			ran[k] = map[string]Result{}
			if !slices.Contains(hiers, r.Hierarchy) {
				hiers = append(hiers, r.Hierarchy)
			}
		}
		ran[k][r.Method] = r // the last run of a method at a size (limits raised)
	}
	var out []benchrow.Row
	for _, h := range hiers {
		var sizes []int
		for k, m := range ran {
			if _, o := m[Oomwatch]; o && k.h == h {
				if _, p := m[Peer]; p {
					sizes = append(sizes, k.n)
				}
			}
		}
		slices.Sort(sizes)
		if len(sizes) < 2 {
			continue
		}
		lo, hi := ran[key{h, sizes[0]}], ran[key{h, sizes[len(sizes)-1]}]
		dn := float64(sizes[len(sizes)-1] - sizes[0])
		s := fmt.Sprintf("%s, %d → %d cgroups", h, sizes[0], sizes[len(sizes)-1])
		slope := func(m string) float64 { return float64(hi[m].End.RSSKiB-lo[m].End.RSSKiB) / dn }
		row := func(method, metric string, v float64, unit string) benchrow.Row {
			return benchrow.Row{Measurement: benchrow.Scale, Scenario: s, Method: method, Metric: metric, Value: v, Unit: unit, Bench: bench}
		}
		o, p := slope(Oomwatch), slope(Peer)
		out = append(out, row(Oomwatch, "RSS per added cgroup", o, "KiB"), row(Peer, "RSS per added cgroup", p, "KiB"))
		ratio := row(Oomwatch, "RSS per added cgroup: peer ÷ oomwatch", p/o, "×")
		if o <= 0 {
			ratio.Text, ratio.Note = "n/a", "oomwatch's RSS did not grow"
		}
		out = append(out, ratio.AtLeast(targetPeerMem))
	}
	return out
}

func crashed(r Result) bool { return r.Crash != "" && r.End.RSSKiB == 0 }

// ChurnRows turns a churn run (measurement 4) into rows: none missed while
// alive, no fd growth, no goroutine growth, the watch set back to the
// parent alone, and RSS growth after GC within 1 MiB — in the second of two
// rounds when there were two (the first may keep maps sized for the peak:
// see docs/BENCHMARKS.md). k are the knobs it ran with.
func ChurnRows(bench string, cr ChurnResult, k Knobs) []benchrow.Row {
	s := fmt.Sprintf("%s, %d/s for %v, each alive %v", cr.Hierarchy, k.ChurnRate, k.ChurnDur, k.ChurnLife)
	row := func(metric string, v float64, unit string) benchrow.Row {
		return benchrow.Row{Measurement: benchrow.Churn, Scenario: s, Method: Oomwatch, Metric: metric, Value: v, Unit: unit, Bench: bench}
	}
	if cr.Before == nil {
		e := row("error", 0, "")
		e.Text, e.Note = "no result", cr.Err
		return []benchrow.Row{e.Check("runs", false)}
	}
	missed := row("missed while alive", float64(cr.Missed), "").Equal(0, "")
	if len(cr.MissedEx) > 0 {
		missed.Note = "e.g. " + strings.Join(cr.MissedEx, ", ")
	}
	// Growth in the first round can be maps sized for the peak (Go maps do
	// not shrink); a leak grows again in the second, identical round.
	var leak []benchrow.Row
	rssGrowth := row("RSS growth after GC", mib(cr.After.RSSKiB-cr.Before.RSSKiB), "MiB")
	rssGrowth.Note = fmt.Sprintf("%.1f → %.1f MiB", mib(cr.Before.RSSKiB), mib(cr.After.RSSKiB))
	if cr.Mid != nil {
		rssGrowth = row("RSS growth, first round", mib(cr.Mid.RSSKiB-cr.Before.RSSKiB), "MiB")
		rssGrowth.Note = fmt.Sprintf("%.1f → %.1f MiB", mib(cr.Before.RSSKiB), mib(cr.Mid.RSSKiB))
		second := row("RSS growth, second round (leak)", mib(cr.After.RSSKiB-cr.Mid.RSSKiB), "MiB").AtMost(1)
		second.Note = fmt.Sprintf("%.1f → %.1f MiB", mib(cr.Mid.RSSKiB), mib(cr.After.RSSKiB))
		heap := row("heap growth, second round", mib(cr.After.HeapKiB-cr.Mid.HeapKiB), "MiB")
		leak = []benchrow.Row{second, heap}
	} else {
		rssGrowth = rssGrowth.AtMost(1)
	}
	fds := row("fd growth", float64(cr.After.FDs-cr.Before.FDs), "").Equal(0, "")
	fds.Note = fmt.Sprintf("%d → %d", cr.Before.FDs, cr.After.FDs)
	gs := row("goroutine growth", float64(cr.After.Goroutines-cr.Before.Goroutines), "").Equal(0, "")
	gs.Note = fmt.Sprintf("%d → %d", cr.Before.Goroutines, cr.After.Goroutines)
	watched := row("watched after", float64(cr.WatchedPost), "").Equal(float64(cr.WatchedPre), "as before")
	watched.Note = cr.Note
	out := append([]benchrow.Row{},
		row("duration", cr.Seconds, "s"),
		row("created", float64(cr.Created), ""),
		row("creation rate", cr.Rate, "/s"),
		row("max alive", float64(cr.MaxAlive), ""),
		row("checked before removal", float64(cr.Checked), ""),
		missed, fds, rssGrowth)
	out = append(out, leak...)
	out = append(out, gs, watched)
	if cr.Err != "" {
		e := row("error", 0, "")
		e.Text, e.Note = "error", cr.Err
		out = append(out, e.Check("none", false))
	}
	return out
}

// The shipped daemon's targets (docs/BENCHMARKS.md "The shipped daemon").
const (
	targetShippedRSSMiB = 8.0  // idle VmRSS at targetShippedAt cgroups
	targetShippedAt     = 100  // the size targetShippedRSSMiB applies to
	targetPerCgroupKiB  = 0.5  // RSS per added cgroup, between the smallest and largest size from 1,000
	perCgroupFrom       = 1000 // the slope's smallest size
)

// DaemonRows turns shipped-daemon runs into rows (measurement 2): per size,
// what it watches, its idle memory (VmRSS, anon and file parts, Pss), its
// threads, fds and wake-ups while idle (target 0), its RSS once a client
// has asked; then the RSS per added cgroup between the smallest size of at
// least 1,000 and the largest.
func DaemonRows(bench string, ds []Daemon) []benchrow.Row {
	var out []benchrow.Row
	var ok []Daemon
	for _, d := range ds {
		s := fmt.Sprintf("%s, shipped daemon, %d cgroups", d.Hierarchy, d.Cgroups)
		row := func(metric string, v float64, unit string) benchrow.Row {
			return benchrow.Row{Measurement: benchrow.Scale, Scenario: s, Method: Oomwatch, Metric: metric, Value: v, Unit: unit, Bench: bench}
		}
		if d.Err != "" && d.RSSKiB == 0 {
			e := row("error", 0, "")
			e.Text, e.Note = "no result", d.Err
			out = append(out, e.Check("runs", false))
			continue
		}
		w := row("watched", float64(d.Watched), "").Equal(float64(d.Cgroups+1), "all, the parent included")
		w.Note = fmt.Sprintf("/metrics says %d", d.Scraped)
		rss := row("RSS (VmRSS) idle", mib(d.RSSKiB), "MiB")
		if d.Cgroups == targetShippedAt {
			rss = rss.AtMost(targetShippedRSSMiB)
		}
		rss.Note = fmt.Sprintf("anon %.2f, file %.2f MiB", mib(d.AnonKiB), mib(d.FileKiB))
		wake := row("wake-ups while idle", float64(d.Wakeups), "").Equal(0, "")
		wake.Note = fmt.Sprintf("context switches of all threads in %.0f s", d.IdleSec)
		out = append(out, w, row("arm time", d.ArmSec, "s"), rss,
			row("RSS anon idle", mib(d.AnonKiB), "MiB"), row("RSS file idle", mib(d.FileKiB), "MiB"),
			row("Pss idle", mib(d.PssKiB), "MiB"), row("Pss anon idle", mib(d.PssAnonKiB), "MiB"),
			row("threads", float64(d.Threads), ""), row("fds", float64(d.FDs), ""),
			wake, row("CPU while idle", d.IdleCPUms, "ms"),
			row("RSS after a scrape and a status", mib(d.UsedRSSKiB), "MiB"))
		if d.Err != "" {
			e := row("error", 0, "")
			e.Text, e.Note = "error", d.Err
			out = append(out, e.Check("none", false))
		}
		if d.Err == "" && d.Cgroups >= perCgroupFrom {
			ok = append(ok, d)
		}
	}
	if len(ok) >= 2 {
		lo, hi := ok[0], ok[len(ok)-1]
		if hi.Cgroups > lo.Cgroups {
			r := benchrow.Row{Measurement: benchrow.Scale, Scenario: fmt.Sprintf("%s, shipped daemon, %d → %d cgroups", hi.Hierarchy, lo.Cgroups, hi.Cgroups),
				Method: Oomwatch, Metric: "RSS per added cgroup", Unit: "KiB", Bench: bench,
				Value: float64(hi.RSSKiB-lo.RSSKiB) / float64(hi.Cgroups-lo.Cgroups)}
			r = r.AtMost(targetPerCgroupKiB)
			r.Note = fmt.Sprintf("anon %.2f KiB", float64(hi.AnonKiB-lo.AnonKiB)/float64(hi.Cgroups-lo.Cgroups))
			out = append(out, r)
		}
	}
	return out
}
