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
	check(s1, Oomwatch, "RSS: peer ÷ oomwatch", "6.2", "")
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

func TestPerCgroupRatio(t *testing.T) {
	snap := func(rssMiB float64) Snapshot { return Snapshot{RSSKiB: int64(rssMiB * 1024)} }
	rs := []Result{
		{Hierarchy: "v1 host", Method: Baseline, End: snap(6.7)},
		{Hierarchy: "v1 host", Method: Oomwatch, Cgroups: 1000, Armed: 1000, End: snap(8.3)},
		{Hierarchy: "v1 host", Method: Peer, Cgroups: 1000, Armed: 1000, End: snap(26.2)},
		{Hierarchy: "v1 host", Method: Oomwatch, Cgroups: 5000, Armed: 5000, End: snap(10.7)},
		{Hierarchy: "v1 host", Method: Peer, Cgroups: 5000, Armed: 5000, End: snap(99.4)},
		{Hierarchy: "v1 host", Method: Oomwatch, Cgroups: 10000, Armed: 10000, End: snap(13.8)},
		{Hierarchy: "v1 host", Method: Peer, Cgroups: 10000, Crash: "fatal error: thread exhaustion"},
	}
	rows := ScaleRows("BenchmarkX", rs)
	const s = "v1 host, 1000 → 5000 cgroups" // the peer crashed at 10,000
	for _, c := range []struct{ method, metric, value, met string }{
		{Oomwatch, "RSS per added cgroup", "0.61", ""},
		{Peer, "RSS per added cgroup", "18.7", ""},
		{Oomwatch, "RSS per added cgroup: peer ÷ oomwatch", "30.5", benchrow.Yes},
	} {
		r, ok := find(rows, s, c.method, c.metric)
		if !ok {
			t.Errorf("no row %s / %s / %s", s, c.method, c.metric)
			continue
		}
		if v := benchrow.Num(r.Value); v != c.value || r.Met != c.met {
			t.Errorf("%s / %s = %s met %q, want %s met %q", c.method, c.metric, v, r.Met, c.value, c.met)
		}
	}
	// a ratio of whole RSS carries no target
	if r, ok := find(rows, "v1 host, 1000 cgroups", Oomwatch, "RSS: peer ÷ oomwatch"); !ok || r.Met != "" {
		t.Errorf("whole-RSS ratio %+v (found %v)", r, ok)
	}
}

func TestDaemonRows(t *testing.T) {
	ds := []Daemon{
		{Hierarchy: "v1 host", Cgroups: 100, Watched: 101, Scraped: 101, RSSKiB: 4800, AnonKiB: 3100, FileKiB: 1600, IdleSec: 20},
		{Hierarchy: "v1 host", Cgroups: 1000, Watched: 1001, Scraped: 1001, RSSKiB: 5700, AnonKiB: 4100, FileKiB: 1600, IdleSec: 20, Wakeups: 1},
		{Hierarchy: "v1 host", Cgroups: 10000, Watched: 10001, Scraped: 10001, RSSKiB: 12180, AnonKiB: 10600, FileKiB: 1580, IdleSec: 20},
		{Hierarchy: "v1 host", Cgroups: 20000, Err: "not ready after 5 minutes"},
	}
	rows := DaemonRows("BenchmarkY", ds)
	for _, c := range []struct{ scen, metric, value, met string }{
		{"v1 host, shipped daemon, 100 cgroups", "watched", "101", benchrow.Yes},
		{"v1 host, shipped daemon, 100 cgroups", "RSS (VmRSS) idle", "4.69", benchrow.Yes},
		{"v1 host, shipped daemon, 1000 cgroups", "RSS (VmRSS) idle", "5.57", ""},
		{"v1 host, shipped daemon, 1000 cgroups", "wake-ups while idle", "1", benchrow.No},
		{"v1 host, shipped daemon, 10000 cgroups", "wake-ups while idle", "0", benchrow.Yes},
		{"v1 host, shipped daemon, 1000 → 10000 cgroups", "RSS per added cgroup", "0.72", benchrow.No},
		{"v1 host, shipped daemon, 20000 cgroups", "error", "no result", benchrow.No},
	} {
		r, ok := find(rows, c.scen, Oomwatch, c.metric)
		if !ok {
			t.Errorf("no row %s / %s", c.scen, c.metric)
			continue
		}
		v := r.Text
		if v == "" {
			v = benchrow.Num(r.Value)
		}
		if v != c.value || r.Met != c.met || r.Bench != "BenchmarkY" {
			t.Errorf("%s / %s = %s met %q, want %s met %q", c.scen, c.metric, v, r.Met, c.value, c.met)
		}
	}
}
