package scalebench

import (
	"strings"
	"testing"
	"time"

	"github.com/oomwatch/oomwatch/test/benchrow"
)

func find(rows []benchrow.Row, scenario, method, metric string) (benchrow.Row, bool) {
	for _, r := range rows {
		if r.Scenario == scenario && r.Method == method && r.Metric == metric {
			return r, true
		}
	}
	return benchrow.Row{}, false
}

func TestScaleRows(t *testing.T) {
	zero := uint64(0)
	snap := func(rssMiB float64, g int) Snapshot {
		return Snapshot{RSSKiB: int64(rssMiB * 1024), Goroutines: g, Threads: 5, FDs: 9}
	}
	rs := []Result{
		{Hierarchy: "v2 VM 6.12", Method: Baseline, End: snap(7.7, 1)},
		{Hierarchy: "v2 VM 6.12", Method: Oomwatch, Cgroups: 1000, Armed: 1000, ArmSec: 5.7, End: snap(12.9, 2), IdleEvents: &zero, Note: "0 kernel notifications while idle;"},
		{Hierarchy: "v2 VM 6.12", Method: Peer, Cgroups: 1000, Armed: 128, ArmErrors: 872, FirstErr: "too many open files", End: snap(12, 257),
			Note: "max_user_instances=128 (default):"},
		{Hierarchy: "v2 VM 6.12", Method: Peer, Cgroups: 1000, Armed: 1000, End: snap(80, 2001), Note: "max_user_instances raised to 21024:"},
		{Hierarchy: "v2 VM 6.12", Method: Oomwatch, Cgroups: 10000, Armed: 10000, ArmSec: 1.5, End: snap(26.5, 3), IdleEvents: &zero},
		{Hierarchy: "v2 VM 6.12", Method: Peer, Cgroups: 10000, Crash: "fatal error: thread exhaustion"},
	}
	rows := ScaleRows("BenchmarkX", rs)
	const s1, s10 = "v2 VM 6.12, 1000 cgroups", "v2 VM 6.12, 10000 cgroups"
	check := func(scen, method, metric, value, met string) {
		t.Helper()
		r, ok := find(rows, scen, method, metric)
		if !ok {
			t.Errorf("no row %s / %s / %s", scen, method, metric)
			return
		}
		v := r.Text
		if v == "" {
			v = benchrow.Num(r.Value)
		}
		if v != value || r.Met != met || r.Bench != "BenchmarkX" || r.Measurement != benchrow.Scale {
			t.Errorf("%s / %s / %s = %q met %q (%+v), want %q met %q", scen, method, metric, v, r.Met, r, value, met)
		}
	}
	check("v2 VM 6.12, 0 cgroups", Baseline, "RSS", "7.7", "")
	check(s1, Oomwatch, "armed", "1000", benchrow.Yes)
	check(s1, Oomwatch, "arm time", "5.7", benchrow.No)
	check(s1, Oomwatch, "RSS", "12.9", benchrow.Yes)
	check(s1, Oomwatch, "goroutines", "2", benchrow.Yes)
	check(s1, Oomwatch, "kernel notifications while idle", "0", benchrow.Yes)
	// the later peer run (limits raised) is the one beside oomwatch; the earlier has its own scenario
	check(s1, Peer, "armed", "1000", "")
	check(s1+", max_user_instances=128 (default)", Peer, "armed", "128", "")
	check(s1+", max_user_instances=128 (default)", Peer, "arm errors", "872", "")
	check(s1, Oomwatch, "RSS: peer ÷ oomwatch", "6.2", benchrow.Yes)
	check(s10, Oomwatch, "goroutines", "3", benchrow.No) // 2 at 1000
	check(s10, Oomwatch, "arm time", "1.5", benchrow.Yes)
	check(s10, Peer, "crash", "crashed", "")
	check(s10, Oomwatch, "RSS: peer ÷ oomwatch", "peer crashed", "")
	if _, ok := find(rows, s10, Peer, "RSS"); ok {
		t.Error("a crashed child has no RSS row")
	}
	if r, _ := find(rows, s1, Oomwatch, "armed"); r.Note != "" {
		t.Errorf("oomwatch armed note %q: the idle notifications have their own row", r.Note)
	}
	if r, _ := find(rows, s1, Peer, "armed"); r.Note != "max_user_instances raised to 21024" {
		t.Errorf("peer armed note %q", r.Note)
	}
}

func TestChurnRows(t *testing.T) {
	k := Knobs{ChurnRate: 1000, ChurnDur: 30 * time.Second, ChurnLife: time.Second}
	cr := ChurnResult{Hierarchy: "v1 host 6.18.44", Seconds: 30, Created: 29986, Checked: 29986, Missed: 6, MissedEx: []string{"k0029985 (alive 28ms)"},
		Before: &Snapshot{FDs: 12, RSSKiB: 7 << 10, Goroutines: 2}, After: Snapshot{FDs: 12, RSSKiB: 9 << 10, Goroutines: 2}, WatchedPre: 1, WatchedPost: 1}
	rows := ChurnRows("B", cr, k)
	const s = "v1 host 6.18.44, 1000/s for 30s, each alive 1s"
	for metric, met := range map[string]string{"missed while alive": benchrow.No, "fd growth": benchrow.Yes, "RSS growth after GC": benchrow.No,
		"goroutine growth": benchrow.Yes, "watched after": benchrow.Yes, "created": ""} {
		r, ok := find(rows, s, Oomwatch, metric)
		if !ok || r.Met != met || r.Measurement != benchrow.Churn {
			t.Errorf("%s: %+v (found %v), want met %q", metric, r, ok, met)
		}
	}
	if r, _ := find(rows, s, Oomwatch, "missed while alive"); !strings.Contains(r.Note, "k0029985") {
		t.Errorf("missed note %q", r.Note)
	}
	rows = ChurnRows("B", ChurnResult{Hierarchy: "h", Err: "child did not get ready"}, k)
	if len(rows) != 1 || rows[0].Met != benchrow.No || rows[0].Note != "child did not get ready" {
		t.Errorf("failed churn rows = %+v", rows)
	}
}
