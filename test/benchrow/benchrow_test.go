package benchrow

import (
	"bytes"
	"math"
	"strings"
	"testing"
)

func TestTargetsNameTheBoundAndNeedAValueToBeMet(t *testing.T) {
	r := Row{Metric: "loop p50", Unit: "ms"}
	for _, c := range []struct {
		got         Row
		target, met string
	}{
		{func() Row { x := r; x.Value = 50; return x.AtMost(50) }(), "≤ 50 ms", Yes},
		{func() Row { x := r; x.Value = 50.5; return x.AtMost(50) }(), "≤ 50 ms", No},
		{func() Row { x := r; x.Value = math.NaN(); return x.AtMost(50) }(), "≤ 50 ms", No},
		{func() Row { x := r; x.Text = "crashed"; return x.AtMost(50) }(), "≤ 50 ms", No},
		{Row{Value: 5.2, Unit: "×"}.AtLeast(5), "≥ 5×", Yes},
		{Row{Value: 2.49, Unit: "×"}.AtLeast(5), "≥ 5×", No},
		{Row{Value: 1000}.Equal(1000, "all"), "= 1000 (all)", Yes},
		{Row{Value: 6}.Equal(0, ""), "= 0", No},
		{Row{Value: 2, Unit: "s"}.AtMost(2), "≤ 2 s", Yes},
		{Row{}.Check("runs", false), "runs", No},
	} {
		if c.got.Target != c.target || c.got.Met != c.met {
			t.Errorf("%+v: target %q met %q, want %q %q", c.got, c.got.Target, c.got.Met, c.target, c.met)
		}
	}
}

func TestNumKeepsIntegersAndAboutThreeSignificantDigits(t *testing.T) {
	for v, want := range map[float64]string{0: "0", 1000: "1000", 0.1623: "0.16", 6.2: "6.2", 2.499: "2.5", 5.004: "5", 1.0004: "1", 10.04: "10", 100.4: "100", 23.46: "23.5", 412.57: "413", 0.0042: "0.0042",
		-1.25: "-1.25", math.NaN(): "n/a", math.Inf(1): "n/a", 997.7483: "998"} {
		if got := Num(v); got != want {
			t.Errorf("Num(%v) = %q, want %q", v, got, want)
		}
	}
}

func TestMarshalNaN(t *testing.T) {
	b := Marshal(Row{Metric: "loop p50", Value: math.NaN()})
	if !bytes.Contains(b, []byte(`"value":0`)) || !bytes.Contains(b, []byte(`"text":"n/a"`)) {
		t.Errorf("Marshal(NaN) = %s", b)
	}
	// every field the format promises is there even when empty
	for _, f := range []string{`"measurement":`, `"scenario":`, `"method":`, `"metric":`, `"value":`, `"unit":`, `"target":`, `"met":`} {
		if !bytes.Contains(b, []byte(f)) {
			t.Errorf("Marshal lacks %s: %s", f, b)
		}
	}
}

// Emit writes the host line once, then rows the collector reads back.
func TestEmitRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	old := Out
	Out, hostOnce = &buf, false
	defer func() { Out, hostOnce = old, false }()
	in := Row{Measurement: Scale, Scenario: "v1 host 6.18.44, 1000 cgroups", Method: Oomwatch, Metric: "RSS", Value: 10.5, Unit: "MiB", Bench: "BenchmarkScaleV1Host"}
	Emit(in.AtMost(30))
	Emit(Row{Measurement: Scale, Scenario: in.Scenario, Method: Peer, Metric: "RSS", Value: 26.2, Unit: "MiB"})
	if n := strings.Count(buf.String(), HostPrefix); n != 1 {
		t.Fatalf("%d host lines, want 1:\n%s", n, buf.String())
	}
	var c Collector
	if err := c.Copy(&buf, nil); err != nil {
		t.Fatal(err)
	}
	rows := c.Rows()
	if len(rows) != 2 || rows[0] != in.AtMost(30) || rows[1].Method != Peer {
		t.Fatalf("rows = %+v", rows)
	}
	h := c.Hosts()
	if len(h) != 1 || h[0].Go == "" || h[0].NProc < 1 {
		t.Errorf("hosts = %+v", h)
	}
}

const sampleLog = "goos: linux\n" +
	"some test output mentioning OOMWATCH-BENCH without a tab\n" +
	"OOMWATCH-BENCH\t{not json\n" +
	"OOMWATCH-BENCH-HOST\t{\"os\":\"Debian 12\",\"kernel\":\"6.18.44\",\"nproc\":2,\"cpu\":\"AMD EPYC\",\"mem_gib\":23.5,\"cgroup\":\"v1 memory at /sys/fs/cgroup/memory\",\"go\":\"go1.26.8\",\"date\":\"2026-01-02 10:00:00 UTC\"}\n" +
	// rows of measurement 4 come first in the log, 2 after: the table orders by measurement
	"OOMWATCH-BENCH\t{\"measurement\":\"4 churn\",\"scenario\":\"v1 host, 1000/s\",\"method\":\"oomwatch\",\"metric\":\"missed while alive\",\"value\":0,\"unit\":\"\",\"target\":\"= 0\",\"met\":\"yes\",\"bench\":\"BenchmarkChurnV1Host\"}\r\n" +
	"BenchmarkChurnV1Host-2   \t       1\t13068308803 ns/op\t         0 missed\n" +
	"--- BENCH: BenchmarkChurnV1Host-2\n" +
	"    scale_test.go:116: a table\n" +
	"ok  \tgithub.com/oomwatch/oomwatch/test/scalebench\t13.1s\n" +
	// the testing package printed the name, then the benchmark's output on the same line
	"BenchmarkScaleV1Host-2   \tOOMWATCH-BENCH\t{\"measurement\":\"2 scale\",\"scenario\":\"v1 host, 1000 cgroups\",\"method\":\"oomwatch\",\"metric\":\"RSS\",\"value\":10.5,\"unit\":\"MiB\",\"target\":\"≤ 30 MiB\",\"met\":\"yes\",\"bench\":\"BenchmarkScaleV1Host\"}\n" +
	"OOMWATCH-BENCH\t{\"measurement\":\"2 scale\",\"scenario\":\"v1 host, 1000 cgroups\",\"method\":\"peer\",\"metric\":\"RSS\",\"value\":26.2,\"unit\":\"MiB\",\"target\":\"\",\"met\":\"\",\"bench\":\"BenchmarkScaleV1Host\"}\n" +
	"OOMWATCH-BENCH\t{\"measurement\":\"2 scale\",\"scenario\":\"v1 host, 1000 cgroups\",\"method\":\"oomwatch\",\"metric\":\"kernel notifications while idle\",\"value\":0,\"unit\":\"\",\"target\":\"= 0\",\"met\":\"yes\",\"bench\":\"BenchmarkScaleV1Host\"}\n" +
	"OOMWATCH-BENCH\t{\"measurement\":\"2 scale\",\"scenario\":\"v1 host, 10000 cgroups\",\"method\":\"oomwatch\",\"metric\":\"RSS\",\"value\":31,\"unit\":\"MiB\",\"target\":\"≤ 30 MiB\",\"met\":\"no\",\"bench\":\"BenchmarkScaleV1Host\"}\n" +
	"OOMWATCH-BENCH\t{\"measurement\":\"2 scale\",\"scenario\":\"v1 host, 10000 cgroups\",\"method\":\"peer\",\"metric\":\"crash\",\"value\":0,\"unit\":\"\",\"target\":\"\",\"met\":\"\",\"text\":\"crashed\",\"note\":\"thread exhaustion\",\"bench\":\"BenchmarkScaleV1Host\"}\n" +
	"       1\t23172586811 ns/op\t 6.6 baseline-0-RSS-MiB\n" +
	"pkg: github.com/oomwatch/oomwatch/eventfd\n" +
	"BenchmarkWatchDir-2   \t     100\t   1234567 ns/op\t      1234 ns/dir\t       0 B/op\t       0 allocs/op\n" +
	"PASS\n" +
	"ok  \tgithub.com/oomwatch/oomwatch/eventfd\t2.0s\n" +
	"--- SKIP: BenchmarkVMLoopBreak\n" +
	"    bench_test.go:44: tier \"vm\" not available: no qemu\n" +
	"--- FAIL: BenchmarkVMStorm\n" +
	"    scale_test.go:80: 6.12-v2: guest exit 1\n" +
	"FAIL\n" +
	"FAIL\tgithub.com/oomwatch/oomwatch/test/vmtest\t30.0s\n" +
	"FAIL"

func collect(t *testing.T, log string) *Collector {
	t.Helper()
	var c Collector
	if err := c.Copy(strings.NewReader(log), nil); err != nil {
		t.Fatal(err)
	}
	return &c
}

func TestCollectorParse(t *testing.T) {
	c := collect(t, sampleLog)
	rows := c.Rows()
	var got []string
	for _, r := range rows {
		got = append(got, r.Measurement+"|"+r.Scenario+"|"+r.Method+"|"+r.Metric+"|"+valueText(r))
	}
	want := []string{
		"4 churn|v1 host, 1000/s|oomwatch|missed while alive|0",
		"2 scale|v1 host, 1000 cgroups|oomwatch|RSS|10.5",
		"2 scale|v1 host, 1000 cgroups|peer|RSS|26.2",
		"2 scale|v1 host, 1000 cgroups|oomwatch|kernel notifications while idle|0",
		"2 scale|v1 host, 10000 cgroups|oomwatch|RSS|31",
		"2 scale|v1 host, 10000 cgroups|peer|crash|crashed",
		// the micro-benchmark's standard result line; the row benchmarks' are not repeated
		"micro|eventfd BenchmarkWatchDir|oomwatch|ns/op|1234567",
		"micro|eventfd BenchmarkWatchDir|oomwatch|ns/dir|1234",
		"micro|eventfd BenchmarkWatchDir|oomwatch|B/op|0",
		"micro|eventfd BenchmarkWatchDir|oomwatch|allocs/op|0",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("rows:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if c.badLines != 1 {
		t.Errorf("badLines = %d, want 1", c.badLines)
	}
	if len(c.skips) != 1 || c.skips[0].name != "BenchmarkVMLoopBreak" || c.skips[0].pkg != "github.com/oomwatch/oomwatch/test/vmtest" ||
		!strings.Contains(c.skips[0].msg, "no qemu") {
		t.Errorf("skips = %+v", c.skips)
	}
	if len(c.fails) != 1 || c.fails[0].name != "BenchmarkVMStorm" || !strings.Contains(c.fails[0].msg, "guest exit 1") {
		t.Errorf("fails = %+v", c.fails)
	}
	if len(c.pkgFail) != 1 || !strings.Contains(c.pkgFail[0], "test/vmtest") {
		t.Errorf("pkgFail = %q", c.pkgFail)
	}
}

func TestTableOrdersByMeasurementAndListsTargetsSkipsAndFailures(t *testing.T) {
	got := collect(t, sampleLog).Table(Host{Kernel: "not used"})
	want := `==== oomwatch benchmarks: one table ====
machine: Debian 12 · kernel 6.18.44 · nproc 2 · AMD EPYC · 23.5 GiB RAM · cgroup v1 memory at /sys/fs/cgroup/memory · go1.26.8 · 2026-01-02 10:00:00 UTC
target and met are oomwatch's; peer/poller = peer (2 scale)

measurement  scenario                   metric                           unit  oomwatch  peer/poller  target    met  notes
-----------  -------------------------  -------------------------------  ----  --------  -----------  --------  ---  -----------------------
2 scale      v1 host, 1000 cgroups      RSS                              MiB       10.5         26.2  ≤ 30 MiB  yes
                                        kernel notifications while idle               0               = 0       yes
             v1 host, 10000 cgroups     RSS                              MiB         31               ≤ 30 MiB  no
                                        crash                                                crashed                 peer: thread exhaustion

4 churn      v1 host, 1000/s            missed while alive                            0               = 0       yes

micro        eventfd BenchmarkWatchDir  ns/op                                   1234567
                                        ns/dir                                     1234
                                        B/op                                          0
                                        allocs/op                                     0

targets: 3 met, 1 not met
  not met: 2 scale · v1 host, 10000 cgroups · RSS 31 (target ≤ 30 MiB)
skipped: test/vmtest BenchmarkVMLoopBreak: bench_test.go:44: tier "vm" not available: no qemu
FAILED: test/vmtest BenchmarkVMStorm: scale_test.go:80: 6.12-v2: guest exit 1
go test FAIL: github.com/oomwatch/oomwatch/test/vmtest 30.0s
1 OOMWATCH-BENCH lines could not be parsed
`
	if got != want {
		t.Errorf("table:\n%s\nwant:\n%s", got, want)
	}
}

// A line with several comparison methods, a baseline column, repeated
// runs, and no host line (the fallback machine is named as such).
func TestTableColumns(t *testing.T) {
	var c Collector
	for _, r := range []Row{
		{Measurement: LoopBreak, Scenario: "6.1-v1", Method: Naive, Metric: "loop p50", Value: 812, Unit: "ms"},
		{Measurement: LoopBreak, Scenario: "6.1-v1", Method: Oomwatch, Metric: "loop p50", Value: 70, Unit: "ms", Target: "≤ 50 ms", Met: No},
		{Measurement: LoopBreak, Scenario: "6.1-v1", Method: Oomwatch, Metric: "loop p50", Value: 59, Unit: "ms", Target: "≤ 50 ms", Met: No},
		{Measurement: LoopBreak, Scenario: "6.1-v1", Method: "other", Metric: "loop p50", Value: 400, Unit: "ms"},
		{Measurement: Scale, Scenario: "0 cgroups", Method: Baseline, Metric: "RSS", Value: 6.2, Unit: "MiB"},
	} {
		c.Line(Prefix + string(Marshal(r)))
	}
	got := c.Table(Host{OS: "X", Kernel: "k", NProc: 4, CPU: "C", Cgroup: "none", Go: "go1", Date: "d"})
	for _, w := range []string{
		"machine: X · kernel k · nproc 4 · C · cgroup none · go1 · d (the collector's machine",
		"peer/poller = naive-1s, other (1 loop-break)",
		"baseline = the same binary with nothing armed",
		"measurement   scenario   metric            unit  oomwatch  peer/poller  baseline  target   met  notes",
		"1 loop-break  6.1-v1     loop p50          ms          59          812            ≤ 50 ms  no   (last of 2 runs)",
		"                         loop p50 [other]  ms                      400",
		"\n\n2 scale       0 cgroups  RSS               MiB                               6.2\n",
		"targets: 0 met, 1 not met",
	} {
		if !strings.Contains(got, w) {
			t.Errorf("table lacks %q:\n%s", w, got)
		}
	}
}

func TestTableEmpty(t *testing.T) {
	got := collect(t, "PASS\nok  \tx/y\t0.1s\n").Table(Host{})
	if !strings.Contains(got, "no result rows") || strings.Contains(got, "targets:") {
		t.Errorf("table:\n%s", got)
	}
}

// Copy passes every byte through unchanged, a last line without newline
// included.
func TestCopyPassThrough(t *testing.T) {
	var pass bytes.Buffer
	var c Collector
	if err := c.Copy(strings.NewReader(sampleLog), &pass); err != nil {
		t.Fatal(err)
	}
	if pass.String() != sampleLog {
		t.Error("pass-through differs from the input")
	}
}

func TestCgroupMounts(t *testing.T) {
	m := "cgroup2 /sys/fs/cgroup/unified cgroup2 rw,nosuid 0 0\n" +
		"cgroup /sys/fs/cgroup/cpu cgroup rw,cpu,cpuacct 0 0\n" +
		"cgroup /sys/fs/cgroup/memory cgroup rw,nosuid,memory 0 0\n"
	if got, want := cgroupMounts(m), "v2 at /sys/fs/cgroup/unified, v1 memory at /sys/fs/cgroup/memory"; got != want {
		t.Errorf("cgroupMounts = %q, want %q", got, want)
	}
	if got := cgroupMounts("proc /proc proc rw 0 0\n"); got != "none" {
		t.Errorf("cgroupMounts = %q", got)
	}
}
