package vmtest

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/oomwatch/oomwatch/test/benchrow"
)

// The VM benchmarks' results as benchrow rows, for make bench's one table
// (test/benchrow/benchtable).

// The loop-break targets are kernel OOM attempts until the loop is broken
// (the detector confirms a loop at its third): p50 ≤ 5 and p95 ≤ 10. The
// milliseconds are printed too, but under TCG they are mostly the emulated
// kernel's time, so they carry no target.
const (
	targetOOMsP50 = 5
	targetOOMsP95 = 10
)

func loopScenario(combo string) string { return combo + " VM (TCG)" }

// loopRows are the loop-break table as benchrow rows: per combination,
// oomwatch beside the naive poller, the targets on oomwatch's numbers, and
// how many times faster than the poller oomwatch's median loop is.
func loopRows(bench string, all []benchSample) []benchrow.Row {
	var out []benchrow.Row
	p50 := map[string]map[string]float64{} // combo → method → loop p50
	for _, g := range loopGroups(all) {
		row := func(metric string, v float64, unit string) benchrow.Row {
			return benchrow.Row{Measurement: benchrow.LoopBreak, Scenario: loopScenario(g.combo), Method: g.method,
				Metric: metric, Value: v, Unit: unit, Bench: bench}
		}
		own := g.method == benchrow.Oomwatch
		lp50, lp95 := row("loop p50 (TCG)", pct(g.ms, 50), "ms"), row("loop p95 (TCG)", pct(g.ms, 95), "ms")
		kp50, cp50 := row("OOM events p50 (kmsg)", pct(g.km, 50), ""), row("OOM events p50 (counter)", pct(g.co, 50), "")
		kp95, cp95 := row("OOM events p95 (kmsg)", pct(g.km, 95), ""), row("OOM events p95 (counter)", pct(g.co, 95), "")
		if own {
			kp50, cp50 = kp50.AtMost(targetOOMsP50), cp50.AtMost(targetOOMsP50)
			kp95, cp95 = kp95.AtMost(targetOOMsP95), cp95.AtMost(targetOOMsP95)
		}
		out = append(out, row("loops", float64(len(g.ms)), ""), row("loops with error", float64(g.errs), ""),
			lp50, lp95, kp50, kp95, cp50, cp95)
		if p50[g.combo] == nil {
			p50[g.combo] = map[string]float64{}
		}
		p50[g.combo][g.method] = pct(g.ms, 50)
	}
	for _, g := range loopGroups(all) {
		o, ok1 := p50[g.combo][benchrow.Oomwatch]
		n, ok2 := p50[g.combo][benchrow.Naive]
		if g.method != benchrow.Oomwatch || !ok1 || !ok2 || o <= 0 {
			continue
		}
		out = append(out, benchrow.Row{Measurement: benchrow.LoopBreak, Scenario: loopScenario(g.combo), Method: benchrow.Oomwatch,
			Metric: "loop p50: naive-1s ÷ oomwatch", Value: n / o, Unit: "×", Bench: bench})
	}
	return out
}

// stormRows are one storm run as benchrow rows: every loop broken, one
// incident per cgroup, and the time from the first "no killable" record to
// the last loop broken.
func stormRows(bench string, r stormResult) []benchrow.Row {
	s := fmt.Sprintf("%s VM, %d loops, oomwatch %s", r.Combo, r.Loops, r.Args)
	if r.Args == "run" {
		s += " (defaults)"
	}
	row := func(metric string, v float64, unit string) benchrow.Row {
		return benchrow.Row{Measurement: benchrow.Storm, Scenario: s, Method: benchrow.Oomwatch, Metric: metric, Value: v, Unit: unit, Bench: bench}
	}
	p50 := row("kill p50 (from the first no-killable)", pct(r.KillMS, 50), "ms")
	last := row("last loop broken (from the first no-killable)", r.FirstToLast, "ms")
	if r.Broken < r.Loops {
		last.Note = fmt.Sprintf("of the %d broken; %d still looping after %.0f s", r.Broken, r.Loops-r.Broken, r.WaitedS)
	}
	var oc []string
	for k, v := range r.Outcomes {
		oc = append(oc, fmt.Sprintf("%s:%d", k, v))
	}
	sort.Strings(oc)
	outcomes := row("ladder outcomes", 0, "")
	outcomes.Text = strings.Join(oc, " ")
	if outcomes.Text == "" {
		outcomes.Text = "none"
	}
	rows := []benchrow.Row{
		row("loops", float64(r.Loops), ""),
		row("broken", float64(r.Broken), "").Equal(float64(r.Loops), "all"),
		row("incidents", float64(r.Incidents), "").Equal(float64(r.Loops), "one per cgroup"),
		row("actions", float64(r.Actions), ""),
		row("rungs that waited for the rate limit", float64(r.RateLimited), ""),
		p50, last, outcomes,
		row("kmsg records lost", float64(r.KmsgLost), ""),
	}
	if r.Err != "" || len(r.ActionErrors) > 0 {
		e := row("error", 0, "")
		e.Text, e.Note = "error", strings.TrimSpace(fmt.Sprintf("%s %v", r.Err, r.ActionErrors))
		rows = append(rows, e)
	}
	return rows
}

// noResult is the row of a VM benchmark that got no result from the guest.
func noResult(b *testing.B, measurement, scenario string) benchrow.Row {
	return benchrow.Row{Measurement: measurement, Scenario: scenario, Method: benchrow.Oomwatch, Metric: "result",
		Text: "none", Note: "no result from the guest (see the log)", Bench: b.Name()}.Check("runs", false)
}

func TestLoopRows(t *testing.T) {
	var all []benchSample
	for i := 1; i <= 10; i++ {
		all = append(all, benchSample{Combo: "6.1-v1", Method: "oomwatch", I: i, LoopMS: float64(10 * i), KmsgOOMs: i, CounterOOMs: int64(i)})
		all = append(all, benchSample{Combo: "6.1-v1", Method: "naive-1s", I: i, LoopMS: float64(800 + i), KmsgOOMs: 100 + i, CounterOOMs: int64(100 + i)})
	}
	all = append(all, benchSample{Combo: "6.1-v1", Method: "oomwatch", Err: "boom"})
	rows := loopRows("BenchmarkVMLoopBreak", all)
	got := map[string]benchrow.Row{}
	for _, r := range rows {
		if r.Scenario != "6.1-v1 VM (TCG)" || r.Measurement != benchrow.LoopBreak || r.Bench != "BenchmarkVMLoopBreak" {
			t.Errorf("row %+v", r)
		}
		got[r.Method+"/"+r.Metric] = r
	}
	for k, w := range map[string]struct {
		v   float64
		met string
	}{
		"oomwatch/loops": {10, ""}, "oomwatch/loops with error": {1, ""},
		"oomwatch/loop p50 (TCG)": {50, ""}, "oomwatch/loop p95 (TCG)": {100, ""},
		"oomwatch/OOM events p50 (kmsg)": {5, benchrow.Yes}, "oomwatch/OOM events p50 (counter)": {5, benchrow.Yes},
		"oomwatch/OOM events p95 (kmsg)": {10, benchrow.Yes}, "oomwatch/OOM events p95 (counter)": {10, benchrow.Yes},
		"naive-1s/loop p50 (TCG)": {805, ""}, "naive-1s/OOM events p50 (kmsg)": {105, ""},
		"oomwatch/loop p50: naive-1s ÷ oomwatch": {16.1, ""},
	} {
		r, ok := got[k]
		if !ok || r.Value != w.v || r.Met != w.met {
			t.Errorf("%s = %+v (found %v), want %v met %q", k, r, ok, w.v, w.met)
		}
	}
}

func TestStormRows(t *testing.T) {
	r := stormResult{Combo: "6.12-v2", Args: "run", Loops: 50, Broken: 47, Incidents: 50, Actions: 53, RateLimited: 6,
		Outcomes: map[string]int{"resolved": 47, "exhausted": 3}, KillMS: []float64{10, 20, 30}, FirstToLast: 44134, WaitedS: 120}
	rows := stormRows("BenchmarkVMStorm", r)
	got := map[string]benchrow.Row{}
	for _, x := range rows {
		if x.Scenario != "6.12-v2 VM, 50 loops, oomwatch run (defaults)" {
			t.Errorf("scenario %q", x.Scenario)
		}
		got[x.Metric] = x
	}
	if b := got["broken"]; b.Value != 47 || b.Met != benchrow.No || b.Target != "= 50 (all)" {
		t.Errorf("broken = %+v", b)
	}
	if i := got["incidents"]; i.Met != benchrow.Yes {
		t.Errorf("incidents = %+v", i)
	}
	if o := got["ladder outcomes"]; o.Text != "exhausted:3 resolved:47" {
		t.Errorf("outcomes = %+v", o)
	}
	if l := got["last loop broken (from the first no-killable)"]; l.Value != 44134 || !strings.Contains(l.Note, "3 still looping after 120 s") {
		t.Errorf("last = %+v", l)
	}
	if p := got["kill p50 (from the first no-killable)"]; p.Value != 20 {
		t.Errorf("p50 = %+v", p)
	}
}
