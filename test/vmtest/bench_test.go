package vmtest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/oomwatch/oomwatch/test/benchrow"
	"github.com/oomwatch/oomwatch/test/testtier"
)

// BenchmarkVMLoopBreak measures OOM-loop duration per combination: oomwatch at its
// defaults against a naive once-a-second poller (the guest's TestBenchLoops).
// Run it with `make bench`, or alone:
//
//	go test -run '^$' -bench VMLoopBreak -timeout 60m ./test/vmtest/
//
// OOMWATCH_VM_BENCH_N (default 20) loops per method and combination;
// OOMWATCH_VM_COMBOS selects combinations as for TestVM.
// BenchmarkVMLoopBreak boots each kernel/cgroup combination once (whatever
// b.N) and prints the loop-break table; `make bench` runs it.
func BenchmarkVMLoopBreak(b *testing.B) {
	t := b
	n := 20
	if s := os.Getenv("OOMWATCH_VM_BENCH_N"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 {
			t.Fatalf("OOMWATCH_VM_BENCH_N=%q: want a positive integer", s)
		}
		n = v
	}
	if err := CheckHost(); err != nil {
		testtier.Require(t, testtier.VM, err.Error())
	}
	kernels, err := Kernels()
	if err != nil {
		testtier.Require(t, testtier.VM, err.Error())
	}
	byName := map[string]Kernel{}
	for _, k := range kernels {
		byName[k.Name] = k
	}
	root := moduleRoot(t)
	bin := t.TempDir()
	files := map[string]string{
		guestTests:  goBuild(t, root, filepath.Join(bin, "guest.test"), "test", "-c", "-tags", "vmguest", "./test/vmtest/guest"),
		guestHog:    goBuild(t, root, filepath.Join(bin, "hog"), "build", "./test/testbin/hog"),
		guestDaemon: goBuild(t, root, filepath.Join(bin, "oomwatch"), "build", "./cmd/oomwatch"),
	}
	combos := Combos
	if s := os.Getenv("OOMWATCH_VM_COMBOS"); s != "" {
		combos = nil
		for _, c := range Combos {
			if strings.Contains(","+s+",", ","+c.String()+",") {
				combos = append(combos, c)
			}
		}
	}
	var all []benchSample
	var failed []benchrow.Row
	fail := func(c Combo, why string) {
		r := benchrow.Row{Measurement: benchrow.LoopBreak, Scenario: loopScenario(c.String()), Method: benchrow.Oomwatch,
			Metric: "error", Text: "failed", Note: why, Bench: t.Name()}
		failed = append(failed, r.Check("runs", false))
	}
	for _, c := range combos {
		k, ok := byName[c.Kernel]
		if !ok {
			t.Errorf("%s: kernel not in cache", c)
			fail(c, "kernel not in cache")
			continue
		}
		b := Boot{
			Kernel: k, Mode: c.Mode, Files: files,
			Env: map[string]string{
				"OOMWATCH_VM_MODE": string(c.Mode), "OOMWATCH_VM_KERNEL": c.Kernel,
				"OOMWATCH_VM_HOG": guestHog, "OOMWATCH_VM_DAEMON": guestDaemon,
				"OOMWATCH_VM_BENCH_N": strconv.Itoa(n),
			},
			Cmd:     guestTests + " -test.v -test.count=1 -test.timeout=25m -test.run '^TestBenchLoops$'",
			Timeout: 30 * time.Minute,
			Append:  os.Getenv("OOMWATCH_VM_APPEND"),
		}
		if os.Getenv("OOMWATCH_VM_CONSOLE") == "1" {
			b.Log = os.Stderr
		}
		res, err := Run(context.Background(), b)
		t.Logf("%s: qemu start→exit %.1fs, guest exit %d", c, res.Elapsed.Seconds(), res.ExitCode)
		if err != nil {
			t.Errorf("%s: %v", c, err)
			fail(c, err.Error())
			continue
		}
		got := parseBench(res.Output)
		if len(got) == 0 || res.ExitCode != 0 {
			t.Errorf("%s: guest exit %d, %d samples; console tail:\n%s", c, res.ExitCode, len(got), tail(res.Output, 40))
			fail(c, fmt.Sprintf("guest exit %d, %d samples", res.ExitCode, len(got)))
		}
		for _, s := range got {
			t.Logf("%s %-8s #%d: loop %6.0f ms, kmsg OOMs %4d, counter %4d, detected +%.0f ms, oom_score_adj written +%.0f ms (kernel clock from the first kill-less OOM); daemon: detection %.1f ms, inspection %.1f ms, verdict→handler %.1f ms, handler %.1f ms; kmsg lost %d %s",
				s.Combo, s.Method, s.I, s.LoopMS, s.KmsgOOMs, s.CounterOOMs, s.DetectMS, s.ResetMS, s.DaemonDet, s.DaemonInsp, s.DaemonToH, s.DaemonHand, s.KmsgLost, s.Err)
		}
		all = append(all, got...)
	}
	table := benchTable(all)
	t.Log("\n" + table)
	fmt.Print(table)
	benchrow.Emit(append(loopRows(t.Name(), all), failed...)...)
}

type benchSample struct {
	Combo       string  `json:"combo"`
	Method      string  `json:"method"`
	I           int     `json:"i"`
	LoopMS      float64 `json:"loop_ms"`
	KmsgOOMs    int     `json:"kmsg_ooms"`
	CounterOOMs int64   `json:"counter_ooms"`
	KmsgLost    int     `json:"kmsg_lost"`
	IncidentMS  float64 `json:"incident_ms"`
	ActionMS    float64 `json:"action_ms"`
	DetectMS    float64 `json:"detect_ms"`
	ResetMS     float64 `json:"reset_ms"`
	DaemonDet   float64 `json:"daemon_detect_ms"`
	DaemonInsp  float64 `json:"daemon_inspect_ms"`
	DaemonHand  float64 `json:"daemon_handler_ms"`
	DaemonToH   float64 `json:"daemon_to_handler_ms"`
	Err         string  `json:"err"`
}

var benchRE = regexp.MustCompile(`VMBENCH (\{[^}]*\})`)

func parseBench(out string) []benchSample {
	var res []benchSample
	for _, m := range benchRE.FindAllStringSubmatch(out, -1) {
		var s benchSample
		if json.Unmarshal([]byte(m[1]), &s) == nil {
			res = append(res, s)
		}
	}
	return res
}

// pct is the nearest-rank percentile of sorted v.
func pct(v []float64, p float64) float64 { return benchrow.Percentile(v, p) }

// loopStats are one combination and method's loops.
type loopStats struct {
	combo, method string
	errs          int
	ms, km, co    []float64 // loop ms, kmsg OOMs, counter OOMs of the loops without error, sorted
	det, rst      []float64 // oomwatch: incident opened, oom_score_adj written (ms after the first OOM), sorted
	ddet, dinsp   []float64 // oomwatch's own timings: detection, inspection (ms), sorted
}

func loopGroups(all []benchSample) []*loopStats {
	type key struct{ combo, method string }
	var out []*loopStats
	groups := map[key]*loopStats{}
	for _, s := range all {
		k := key{s.Combo, s.Method}
		g := groups[k]
		if g == nil {
			g = &loopStats{combo: s.Combo, method: s.Method}
			groups[k] = g
			out = append(out, g)
		}
		if s.Err != "" {
			g.errs++
			continue
		}
		g.ms = append(g.ms, s.LoopMS)
		g.km = append(g.km, float64(s.KmsgOOMs))
		g.co = append(g.co, float64(s.CounterOOMs))
		if s.DetectMS != 0 {
			g.det = append(g.det, s.DetectMS)
		}
		if s.ResetMS != 0 {
			g.rst = append(g.rst, s.ResetMS)
		}
		if s.DetectMS != 0 {
			g.ddet = append(g.ddet, s.DaemonDet)
			g.dinsp = append(g.dinsp, s.DaemonInsp)
		}
	}
	for _, g := range out {
		sort.Float64s(g.ms)
		sort.Float64s(g.km)
		sort.Float64s(g.co)
		sort.Float64s(g.det)
		sort.Float64s(g.rst)
		sort.Float64s(g.ddet)
		sort.Float64s(g.dinsp)
	}
	return out
}

func pctOrDash(v []float64) string {
	if len(v) == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f", pct(v, 50))
}

func benchTable(all []benchSample) string {
	var b strings.Builder
	b.WriteString("loop = kmsg first \"Out of memory and no killable processes\" → \"Killed process <hog>\"; OOMs = kill-less OOM events in the loop\n")
	b.WriteString("detected / written = the incident opened / oom_score_adj written, ms after the loop's first OOM (kernel clock)\n")
	b.WriteString("detection / inspection = the daemon's own: first OOM notification → the one completing the evidence; reading the tasks (ms)\n")
	fmt.Fprintf(&b, "%-8s %-9s %3s %4s | %10s %10s | %10s %10s | %10s %10s | %12s %12s | %13s %14s\n",
		"combo", "method", "n", "err", "loop ms p50", "p95", "kmsg p50", "p95", "counter p50", "p95", "detected p50", "written p50", "detection p50", "inspection p50")
	for _, g := range loopGroups(all) {
		fmt.Fprintf(&b, "%-8s %-9s %3d %4d | %11.0f %10.0f | %10.0f %10.0f | %11.0f %10.0f | %12s %12s | %13s %14s\n",
			g.combo, g.method, len(g.ms), g.errs, pct(g.ms, 50), pct(g.ms, 95), pct(g.km, 50), pct(g.km, 95), pct(g.co, 50), pct(g.co, 95),
			pctOrDash(g.det), pctOrDash(g.rst), pctOrDash(g.ddet), pctOrDash(g.dinsp))
	}
	return b.String()
}
