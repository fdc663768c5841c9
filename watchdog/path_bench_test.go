package watchdog

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/oomwatch/oomwatch/internal/cgroupfs"
	"github.com/oomwatch/oomwatch/internal/procfs"
	"github.com/oomwatch/oomwatch/test/benchrow"
	"github.com/oomwatch/oomwatch/test/testhost"
)

// BenchmarkIncidentPathHostV1 is the daemon's own part of breaking a loop,
// on real hardware: the loop itself needs an oom_score_adj of -1000, which
// this host cannot set (no CAP_SYS_RESOURCE), so the VM benchmark measures
// it under TCG. Here a real v1 cgroup with oom_kill_disable=1 stalls its
// task under_oom (a real kernel OOM and eventfd wake-up) and the watchdog
// takes the same path as for a loop: read the counters, read the tasks from
// /proc (inspection), read limit and usage, hand the incident over. The
// numbers are the watchdog's own timings from its incident line:
// inspection and verdict_to_handler (the wake-up's batch → the incident
// handed over, inspection included). OOMWATCH_PATH_N runs (default 20).
func BenchmarkIncidentPathHostV1(b *testing.B) {
	root := testhost.V1Root(b)
	n := 20
	if s := os.Getenv("OOMWATCH_PATH_N"); s != "" {
		if v, err := strconv.Atoi(s); err == nil && v > 0 {
			n = v
		}
	}
	base := filepath.Join(root, fmt.Sprintf("oomwatch-bench-path-%d-%d", os.Getpid(), time.Now().UnixNano()))
	if err := os.Mkdir(base, 0o755); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { removeCgroup(base) })
	h, err := cgroupfs.Open(base, "")
	if err != nil || h.Version != 1 {
		b.Fatalf("open %s: %+v %v", base, h, err)
	}
	var logs testhost.SyncBuf
	rec := newRecorder()
	ready := make(chan int, 1)
	w, err := New(Config{CG: h, Proc: procfs.New("/proc"), Detector: DefaultParams, ResolveAfter: 100 * time.Millisecond,
		Ready: func(n int) { ready <- n }}, rec, zerolog.New(&logs))
	if err != nil {
		b.Fatal(err)
	}
	startRun(b, w)
	<-ready

	var insp, handover []float64
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("victim%d", i)
		dir := filepath.Join(base, name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		testhost.MakeStalling(b, dir, 33554432)
		rec.waitFor(b, name+" watched", func() bool { return w.Stats().Watched == 2 })
		hog := testhost.StartHog(b, filepath.Join(dir, "cgroup.procs"), 64)
		rec.waitFor(b, "paused incident in "+name, func() bool { return len(rec.opened) == i+1 })
		hog.Kill()
		removeCgroup(dir)
		rec.waitFor(b, name+" dropped", func() bool { return w.Stats().Watched == 1 })
		line := incidentLine(b, logs.String(), "/"+name)
		insp = append(insp, line["inspection"])
		handover = append(handover, line["verdict_to_handler"])
	}
	sort.Float64s(insp)
	sort.Float64s(handover)
	scenario := "v1 host " + benchrow.Machine().Kernel + " (hardware), one task stalled under_oom"
	row := func(metric string, v float64) benchrow.Row {
		return benchrow.Row{Measurement: benchrow.LoopBreak, Scenario: scenario, Method: benchrow.Oomwatch, Metric: metric,
			Value: v, Unit: "ms", Bench: b.Name(), Note: fmt.Sprintf("%d runs; the watchdog's own timings", n)}
	}
	b.Logf("%s, %d runs: inspection p50 %.3f ms p95 %.3f ms; wake-up → incident handed over p50 %.3f ms p95 %.3f ms",
		scenario, n, benchrow.Percentile(insp, 50), benchrow.Percentile(insp, 95), benchrow.Percentile(handover, 50), benchrow.Percentile(handover, 95))
	benchrow.Emit(row("inspection p50", benchrow.Percentile(insp, 50)), row("inspection p95", benchrow.Percentile(insp, 95)),
		row("wake-up → hand-over p50", benchrow.Percentile(handover, 50)), row("wake-up → hand-over p95", benchrow.Percentile(handover, 95)))
	b.ReportMetric(benchrow.Percentile(insp, 50), "inspection-p50-ms")
	b.ReportMetric(benchrow.Percentile(handover, 50), "handover-p50-ms")
}

// incidentLine returns the numeric fields of the watchdog's incident line
// for cgroup cg.
func incidentLine(tb testing.TB, logs, cg string) map[string]float64 {
	tb.Helper()
	for _, l := range strings.Split(logs, "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) != nil || m["event"] != "incident" || m["cgroup"] != cg {
			continue
		}
		out := map[string]float64{}
		for k, v := range m {
			if f, ok := v.(float64); ok {
				out[k] = f
			}
		}
		return out
	}
	tb.Fatalf("no incident line for %s in:\n%s", cg, logs)
	return nil
}
