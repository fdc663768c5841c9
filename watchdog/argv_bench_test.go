package watchdog

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
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

// argvTarget is the bound on oomwatch's memory growth (MiB) while it
// inspects an incident whose tasks share a long argv.
const argvTarget = 16

// BenchmarkInspectionMemoryHostV1: what a tenant's long argv costs oomwatch
// when it inspects the tenant's cgroup. A real v1 cgroup holds a hog and its
// children forked without exec, all sharing one argv of 1.8 MB (2 MB for the
// tenant however many tasks; a v1 tenant triggers an inspection at will with
// oom_kill_disable); then a task stalls it under_oom and the real watchdog
// opens a paused incident: it reads every task from /proc, stat, cmdline,
// status and oom_score_adj, and keeps the candidates. Two sizes: 256
// sleeping tasks sharing the argv, and 4,095 whose cmdlines all differ
// within their first 4 KiB (the inspection's 4,096-task bound with nothing
// to share: every task keeps procfs.MaxCmdline). Measured around the
// incident: the Go heap allocated (a bound on the heap's peak growth
// whenever the collector runs), the peak RSS growth (VmHWM after resetting
// it through /proc/self/clear_refs, minus VmRSS before), the heap the open
// incident keeps, and the inspection's own time from its log line.
func BenchmarkInspectionMemoryHostV1(b *testing.B) {
	root := testhost.V1Root(b)
	hog := testhost.BuildHog(b)
	var rows []benchrow.Row
	for _, sc := range []struct {
		sleepers int
		distinct bool
	}{{256, false}, {4095, true}} {
		rows = append(rows, inspectionMemory(b, root, hog, sc.sleepers, sc.distinct)...)
	}
	benchrow.Emit(rows...)
}

func inspectionMemory(b *testing.B, root, hogBin string, sleepers int, distinct bool) []benchrow.Row {
	base := filepath.Join(root, fmt.Sprintf("oomwatch-bench-argv-%d-%d", os.Getpid(), time.Now().UnixNano()))
	tenant := filepath.Join(base, "tenant")
	for _, d := range []string{base, tenant} {
		if err := os.Mkdir(d, 0o755); err != nil {
			b.Fatal(err)
		}
	}
	// Cleanups run last first: the memory hog dies (the OOM ends), then the
	// sleepers, then the cgroups go.
	b.Cleanup(func() { removeCgroup(base) })
	b.Cleanup(func() { removeCgroup(tenant) })
	procs := filepath.Join(tenant, "cgroup.procs")
	start := time.Now()
	testhost.StartSleepers(b, hogBin, procs, "java", sleepers-1, distinct, testhost.HugeArgv()...)
	b.Logf("%d sleepers forked in %v", sleepers, time.Since(start).Round(time.Millisecond))
	// The forks' page tables and task structures are charged to the cgroup:
	// the stalling limit goes on top of them.
	usage, err := os.ReadFile(filepath.Join(tenant, "memory.usage_in_bytes"))
	if err != nil {
		b.Fatal(err)
	}
	u, err := strconv.Atoi(strings.TrimSpace(string(usage)))
	if err != nil {
		b.Fatal(err)
	}
	testhost.MakeStalling(b, tenant, (u+32<<20)&^4095)

	h, err := cgroupfs.Open(base, "")
	if err != nil || h.Version != 1 {
		b.Fatalf("open %s: %+v %v", base, h, err)
	}
	var logs testhost.SyncBuf
	rec := newRecorder()
	ready := make(chan int, 1)
	w, err := New(Config{CG: h, Proc: procfs.New("/proc"), Detector: DefaultParams, ResolveAfter: time.Second,
		Ready: func(n int) { ready <- n }}, rec, zerolog.New(&logs))
	if err != nil {
		b.Fatal(err)
	}
	startRun(b, w)
	<-ready

	var m0, m1, m2 runtime.MemStats
	runtime.GC()
	debug.FreeOSMemory()
	rss0 := readMem(b).rssKB
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil { // VmHWM = VmRSS from here
		b.Fatal(err)
	}
	runtime.ReadMemStats(&m0)
	testhost.StartHog(b, procs, 64)
	rec.waitFor(b, "paused incident", func() bool { return len(rec.opened) == 1 })
	runtime.ReadMemStats(&m1)
	hwm := readMem(b).hwmKB // after a GC, which leaves the high-water mark as it was
	runtime.ReadMemStats(&m2)
	rec.mu.Lock()
	inc := rec.opened[0]
	rec.mu.Unlock()
	cut, distinctCmd := 0, map[string]bool{}
	for _, c := range inc.Candidates {
		if c.CmdlineTruncated {
			cut++
			distinctCmd[strings.Join(c.Cmdline, "\x00")] = true
		}
	}
	if cut != sleepers {
		b.Fatalf("%d of %d candidates have a cut cmdline, want the %d sleepers", cut, len(inc.Candidates), sleepers)
	}
	if want := map[bool]int{false: 1, true: sleepers}[distinct]; len(distinctCmd) != want {
		b.Fatalf("%d different cmdlines among the sleepers, want %d", len(distinctCmd), want)
	}
	line := incidentLine(b, logs.String(), "/tenant")

	allocated := float64(m1.TotalAlloc-m0.TotalAlloc) / (1 << 20)
	peakRSS := mib(max(hwm-rss0, 0))
	kept := float64(int64(m2.HeapAlloc)-int64(m0.HeapAlloc)) / (1 << 20)
	runtime.KeepAlive(inc)
	share := "sharing one 1.8 MB argv"
	if distinct {
		share = "with a 1.8 MB argv, each cmdline different"
	}
	scenario := fmt.Sprintf("v1 host %s, inspection of %d tasks %s", benchrow.Machine().Kernel, len(inc.Candidates), share)
	b.Logf("%s: heap allocated %.1f MiB, peak RSS growth %.1f MiB, kept by the incident %.2f MiB, inspection %.0f ms",
		scenario, allocated, peakRSS, kept, line["inspection"])
	row := func(metric string, v float64, unit string) benchrow.Row {
		return benchrow.Row{Measurement: benchrow.Scale, Scenario: scenario, Method: benchrow.Oomwatch, Metric: metric,
			Value: v, Unit: unit, Bench: b.Name()}
	}
	mem := func(metric string, v float64) benchrow.Row {
		r := row(metric, v, "MiB")
		if distinct {
			r.Note = "no target: the 4,096-task bound, each task keeping its 4 KiB"
			return r
		}
		return r.AtMost(argvTarget)
	}
	b.ReportMetric(allocated, "heap-alloc-MiB")
	b.ReportMetric(peakRSS, "peak-rss-growth-MiB")
	return []benchrow.Row{
		mem("heap allocated during the incident", allocated),
		mem("peak RSS growth", peakRSS),
		row("heap kept by the open incident", kept, "MiB"),
		row("inspection", line["inspection"], "ms"),
	}
}
