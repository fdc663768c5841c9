// Package benchrow is the machine-readable side of `make bench`: every
// benchmark prints its results as rows, one per line,
//
//	OOMWATCH-BENCH<TAB>{"measurement":"2 scale","scenario":"v1 host 6.18.44, 1000 cgroups","method":"oomwatch",
//	                    "metric":"arm time","value":0.16,"unit":"s","target":"≤ 2 s","met":"yes",...}
//
// next to its own human table, and the collector (./benchtable) reads the
// whole `go test` output and ends it with one table of every row. The first
// row a process emits is preceded by one OOMWATCH-BENCH-HOST line with the
// machine's facts (kernel, CPUs, Go version, date), so a saved log can be
// re-tabled elsewhere.
package benchrow

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Line prefixes. A row or host line may start anywhere in a line (the
// testing package prints a benchmark's name before re-running it, without a
// newline); the JSON runs to the end of the line.
const (
	Prefix     = "OOMWATCH-BENCH\t"
	HostPrefix = "OOMWATCH-BENCH-HOST\t"
)

// Measurements (numbered as docs/BENCHMARKS.md numbers them); the table
// lists them in this order.
const (
	LoopBreak = "1 loop-break"
	Scale     = "2 scale"
	Storm     = "3 storm"
	Churn     = "4 churn"
	Micro     = "micro"
)

// Methods. Targets apply to Oomwatch; Naive and Peer are what an operator
// could run instead; Baseline is the same process with nothing armed.
const (
	Oomwatch = "oomwatch"
	Naive    = "naive-1s" // a poller reading the OOM counters once a second
	Peer     = "peer"     // containerd/cgroups' way: one eventfd/EventChan per cgroup
	Baseline = "baseline"
)

// Met values.
const (
	Yes = "yes"
	No  = "no"
)

// Row is one number (or, where there is none, one short text) of one
// method in one scenario of one measurement.
type Row struct {
	Measurement string  `json:"measurement"` // LoopBreak, Scale, Storm, Churn, Micro
	Scenario    string  `json:"scenario"`    // e.g. "6.1-v1 VM (TCG)", "v1 host 6.18.44, 10000 cgroups"
	Method      string  `json:"method"`      // Oomwatch, Naive, Peer, Baseline
	Metric      string  `json:"metric"`      // e.g. "loop p50", "RSS"
	Value       float64 `json:"value"`
	Unit        string  `json:"unit"`   // "ms", "MiB", "×", "" for counts
	Target      string  `json:"target"` // the target for this number, "" if none
	Met         string  `json:"met"`    // Yes, No, "" (no target)
	// Text replaces Value where there is no number ("crashed", "resolved:47
	// exhausted:3"); keep it short, details go to Note.
	Text  string `json:"text,omitempty"`
	Note  string `json:"note,omitempty"`
	Bench string `json:"bench,omitempty"` // the emitting benchmark (b.Name()); its standard result line is then not a micro row
}

// Missing reports whether r has no number.
func (r Row) Missing() bool {
	return r.Text != "" || math.IsNaN(r.Value) || math.IsInf(r.Value, 0)
}

// AtMost sets the target "≤ limit unit" and whether r meets it.
func (r Row) AtMost(limit float64) Row {
	return r.Check("≤ "+Num(limit)+unitSuffix(r.Unit), !r.Missing() && r.Value <= limit)
}

// AtLeast sets the target "≥ limit unit" and whether r meets it.
func (r Row) AtLeast(limit float64) Row {
	return r.Check("≥ "+Num(limit)+unitSuffix(r.Unit), !r.Missing() && r.Value >= limit)
}

// Equal sets the target "= want unit" (with why, if any, in parentheses)
// and whether r meets it.
func (r Row) Equal(want float64, why string) Row {
	t := "= " + Num(want) + unitSuffix(r.Unit)
	if why != "" {
		t += " (" + why + ")"
	}
	return r.Check(t, !r.Missing() && r.Value == want)
}

// Check sets a free-text target and whether it is met.
func (r Row) Check(target string, ok bool) Row {
	r.Target, r.Met = target, No
	if ok {
		r.Met = Yes
	}
	return r
}

// trimZeros drops a fraction's trailing zeros (and a bare point).
func trimZeros(s string) string {
	return strings.TrimSuffix(strings.TrimRight(s, "0"), ".")
}

func unitSuffix(u string) string {
	switch u {
	case "":
		return ""
	case "×", "%":
		return u
	}
	return " " + u
}

// Num formats a number for tables: integers as such, otherwise about three
// significant digits, at most two decimals (0.16, 6.2, 23.5, 413).
func Num(v float64) string {
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return "n/a"
	case v == math.Trunc(v) && math.Abs(v) < 1e15:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case math.Abs(v) >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case math.Abs(v) >= 10:
		return trimZeros(strconv.FormatFloat(v, 'f', 1, 64))
	case math.Abs(v) >= 0.01:
		return trimZeros(strconv.FormatFloat(v, 'f', 2, 64))
	}
	return strconv.FormatFloat(v, 'g', 2, 64)
}

// Host is what the table's header says about the machine.
type Host struct {
	OS     string  `json:"os"`     // PRETTY_NAME of /etc/os-release
	Kernel string  `json:"kernel"` // uname -r
	NProc  int     `json:"nproc"`  // CPUs this process may use (as nproc counts)
	CPU    string  `json:"cpu"`    // "model name" of /proc/cpuinfo
	MemGiB float64 `json:"mem_gib"`
	Cgroup string  `json:"cgroup"` // cgroup mounts: "v1 memory at …, v2 at …"
	Go     string  `json:"go"`     // runtime.Version() of the binary that measured
	Date   string  `json:"date"`   // when the line was written
}

// Machine reads the facts of this machine now.
func Machine() Host {
	h := Host{Kernel: "?", CPU: "?", OS: "?", Cgroup: "?", NProc: runtime.NumCPU(), Go: runtime.Version(),
		Date: time.Now().Format("2006-01-02 15:04:05 MST")}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		h.Kernel = strings.TrimSpace(string(b))
	}
	if v := field("/proc/cpuinfo", "model name", ':'); v != "" {
		h.CPU = v
	}
	if v := field("/etc/os-release", "PRETTY_NAME", '='); v != "" {
		h.OS = strings.Trim(v, `"`)
	}
	if v := field("/proc/meminfo", "MemTotal", ':'); v != "" {
		if kib, err := strconv.ParseFloat(strings.TrimSuffix(v, " kB"), 64); err == nil {
			h.MemGiB = math.Round(kib/(1<<20)*10) / 10
		}
	}
	if b, err := os.ReadFile("/proc/self/mounts"); err == nil {
		h.Cgroup = cgroupMounts(string(b))
	}
	return h
}

// field is the value of the first "key<sep>value" line of path.
func field(path, key string, sep byte) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), string(sep))
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// cgroupMounts describes the memory-relevant cgroup mounts of a
// /proc/self/mounts text.
func cgroupMounts(mounts string) string {
	var out []string
	for _, l := range strings.Split(mounts, "\n") {
		f := strings.Fields(l)
		if len(f) < 4 {
			continue
		}
		switch {
		case f[2] == "cgroup2":
			out = append(out, "v2 at "+f[1])
		case f[2] == "cgroup" && hasOpt(f[3], "memory"):
			out = append(out, "v1 memory at "+f[1])
		}
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ", ")
}

func hasOpt(opts, o string) bool {
	for _, x := range strings.Split(opts, ",") {
		if x == o {
			return true
		}
	}
	return false
}

var (
	mu       sync.Mutex
	hostOnce bool
	// Out is where Emit writes: the test binary's stdout, which `go test`
	// passes on.
	Out io.Writer = os.Stdout
)

// Emit prints rows, one line each, preceded (once per process) by the host
// line. A value that JSON cannot carry (NaN, ±Inf) becomes Text "n/a".
func Emit(rows ...Row) {
	mu.Lock()
	defer mu.Unlock()
	if !hostOnce {
		hostOnce = true
		b, _ := json.Marshal(Machine())
		fmt.Fprintf(Out, "\n%s%s\n", HostPrefix, b)
	}
	for _, r := range rows {
		fmt.Fprintf(Out, "%s%s\n", Prefix, Marshal(r))
	}
}

// Marshal is r's JSON (NaN and ±Inf become Value 0, Text "n/a").
func Marshal(r Row) []byte {
	if math.IsNaN(r.Value) || math.IsInf(r.Value, 0) {
		r.Value = 0
		if r.Text == "" {
			r.Text = "n/a"
		}
	}
	b, _ := json.Marshal(r)
	return b
}

// Percentile is the nearest-rank percentile p (0-100) of sorted v; NaN for
// an empty v.
func Percentile(v []float64, p float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	i := int(math.Ceil(p/100*float64(len(v)))) - 1
	if i < 0 {
		i = 0
	}
	return v[i]
}
