package watchdog

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/oomwatch/oomwatch/internal/cgroupfs"
	"github.com/oomwatch/oomwatch/internal/procfs"
	"github.com/oomwatch/oomwatch/test/benchrow"
)

// BenchmarkRiskCheck: what the daemon's would-loop check costs on a fake
// v2 tree of riskCgroups cgroups, each with a limit and one task (every
// tenth unkillable): the event loop's share (the copy of its watch state
// for Watched, the only work the check puts in the loop), one check at
// the default budget of cgroups whose tasks it reads, and how many checks
// cover the whole tree. The watchdog is the real one; /proc and cgroupfs
// are files, so the numbers are the check's own work, not the kernel's.
func BenchmarkRiskCheck(b *testing.B) {
	const riskCgroups = 10000
	cgRoot, procRoot := b.TempDir(), b.TempDir()
	writeV2Root(b, cgRoot)
	for i := 0; i < riskCgroups; i++ {
		pid := 1000 + i
		adj := 0
		if i%10 == 0 {
			adj = -1000
		}
		writeProc(b, procRoot, pid, 1, "app", adj, 9000)
		writeCgroup(b, cgRoot, fmt.Sprintf("c%05d", i), "20971520", pid)
	}
	h, err := cgroupfs.Open(cgRoot, "")
	if err != nil {
		b.Fatal(err)
	}
	ready := make(chan int, 1)
	w, err := New(Config{CG: h, Proc: procfs.New(procRoot), Detector: DefaultParams, Ready: func(n int) { ready <- n }},
		newRecorder(), zerolog.Nop())
	if err != nil {
		b.Fatal(err)
	}
	startRun(b, w)
	watched := <-ready

	// The loop's share: watchedList runs between two turns.
	var inLoop time.Duration
	for range 5 {
		l, err := w.Watched(context.Background())
		if err != nil || len(l) != watched {
			b.Fatalf("Watched: %d, %v", len(l), err)
		}
		inLoop = max(inLoop, time.Duration(w.listTook.Load()))
	}
	m := &RiskMonitor{List: w, Insp: Inspector{CG: h, Proc: procfs.New(procRoot)}, Log: zerolog.Nop()}
	var longest time.Duration
	checks := 0
	for b.Loop() {
		// Each check reads DefaultRiskChecks cgroups' tasks and the next
		// goes on where it stopped: the tree is covered once every cgroup
		// at risk has been found.
		m = &RiskMonitor{List: w, Insp: Inspector{CG: h, Proc: procfs.New(procRoot)}, Log: zerolog.Nop()}
		checks = 0
		for len(m.AtRisk()) < riskCgroups/10 {
			if checks > 100 {
				b.Fatalf("%d of %d at risk after %d checks", len(m.AtRisk()), riskCgroups/10, checks)
			}
			t0 := time.Now()
			if err := m.Sweep(context.Background()); err != nil {
				b.Fatal(err)
			}
			longest = max(longest, time.Since(t0))
			checks++
		}
	}
	scenario := fmt.Sprintf("fake v2 tree, %d cgroups with a limit and a task", riskCgroups)
	row := func(metric string, v float64, unit, note string) benchrow.Row {
		return benchrow.Row{Measurement: benchrow.Scale, Scenario: scenario, Method: benchrow.Oomwatch, Metric: metric,
			Value: v, Unit: unit, Bench: b.Name(), Note: note}
	}
	benchrow.Emit(
		row("risk check: event loop's share", float64(inLoop.Microseconds())/1000, "ms", "the loop's copy of its watch state for Watched (its only work for the check), the longest of 5").AtMost(stallTarget),
		row("risk check: one check", float64(longest.Microseconds())/1000, "ms", fmt.Sprintf("%d cgroups' tasks read, beside the loop", DefaultRiskChecks)),
		row("risk check: checks to cover all", float64(checks), "", "one check a minute by default"),
	)
}
