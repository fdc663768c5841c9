package benchrow

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Collector gathers what one table needs from `go test -bench` output: the
// rows and host lines the benchmarks emit, the standard result lines of
// benchmarks that emit no rows (micro-benchmarks), and which benchmarks
// were skipped or failed. Everything else is noise to it.
type Collector struct {
	rows  []Row
	hosts []Host
	// std are standard result lines, kept until the end: whether their
	// benchmark emitted rows is known only then.
	std     []stdResult
	skips   []event
	fails   []event
	pkgFail []string
	pkg     string // from the "pkg: …" header the testing package prints
	// last is the skip or fail event whose first message line is awaited.
	last     *event
	badLines int // prefixed lines whose JSON did not parse
}

type stdResult struct {
	pkg, name string
	metrics   []Row // Value and Metric (the unit, e.g. "ns/op") only
}

type event struct {
	pkg, name, msg string
}

var (
	benchLine = regexp.MustCompile(`^(Benchmark\S*)\s+(\d+)\s+(.+)$`)
	eventLine = regexp.MustCompile(`^\s*--- (SKIP|FAIL): (\S+)`)
	pkgEnd    = regexp.MustCompile(`^(ok|FAIL)\s*\t(\S+)`) // "ok  \tpkg\t1.2s", "FAIL\tpkg [build failed]"
	procsSfx  = regexp.MustCompile(`-\d+$`)
)

// Line feeds one line of output (without its newline).
func (c *Collector) Line(l string) {
	l = strings.TrimRight(l, "\r\n")
	if i := strings.Index(l, HostPrefix); i >= 0 {
		var h Host
		if json.Unmarshal([]byte(l[i+len(HostPrefix):]), &h) == nil {
			c.hosts = append(c.hosts, h)
		} else {
			c.badLines++
		}
		return
	}
	if i := strings.Index(l, Prefix); i >= 0 {
		var r Row
		if err := json.Unmarshal([]byte(l[i+len(Prefix):]), &r); err == nil && r.Metric != "" {
			c.rows = append(c.rows, r)
		} else {
			c.badLines++
		}
		return
	}
	if c.last != nil {
		// The first indented line after "--- SKIP/FAIL" is its message
		// ("    file_test.go:12: why").
		if m := strings.TrimSpace(l); m != "" && strings.HasPrefix(l, "    ") && !strings.HasPrefix(m, "---") {
			c.last.msg = m
			c.last = nil
			return
		}
		c.last = nil
	}
	if m := eventLine.FindStringSubmatch(l); m != nil {
		e := event{pkg: c.pkg, name: procsSfx.ReplaceAllString(m[2], "")}
		if m[1] == "SKIP" {
			c.skips = append(c.skips, e)
			c.last = &c.skips[len(c.skips)-1]
		} else {
			c.fails = append(c.fails, e)
			c.last = &c.fails[len(c.fails)-1]
		}
		return
	}
	if p, ok := strings.CutPrefix(l, "pkg: "); ok {
		c.pkg = strings.TrimSpace(p)
		return
	}
	if m := pkgEnd.FindStringSubmatch(l); m != nil {
		c.endPackage(m[1], m[2], l)
		return
	}
	if m := benchLine.FindStringSubmatch(l); m != nil {
		if ms := parseMetrics(m[3]); len(ms) > 0 {
			c.std = append(c.std, stdResult{pkg: c.pkg, name: procsSfx.ReplaceAllString(m[1], ""), metrics: ms})
		}
	}
}

// endPackage handles "ok  \tpkg\t1.2s" and "FAIL\tpkg [build failed]": what
// came since the previous package's end belongs to pkg.
func (c *Collector) endPackage(status, pkg, line string) {
	for i := range c.std {
		if c.std[i].pkg == "" {
			c.std[i].pkg = pkg
		}
	}
	for _, es := range [][]event{c.skips, c.fails} {
		for i := range es {
			if es[i].pkg == "" {
				es[i].pkg = pkg
			}
		}
	}
	if status == "FAIL" {
		c.pkgFail = append(c.pkgFail, strings.Join(strings.Fields(strings.TrimPrefix(line, "FAIL")), " "))
	}
	c.pkg = ""
}

// parseMetrics parses "123 ns/op\t4.5 ns/dir\t0 B/op": value-unit pairs.
func parseMetrics(s string) []Row {
	f := strings.Fields(s)
	if len(f) == 0 || len(f)%2 != 0 {
		return nil
	}
	var out []Row
	for i := 0; i < len(f); i += 2 {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return nil
		}
		out = append(out, Row{Metric: f[i+1], Value: v})
	}
	return out
}

// Copy feeds every line of r to c and, if pass is not nil, writes it to pass
// unchanged as it arrives.
func (c *Collector) Copy(r io.Reader, pass io.Writer) error {
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		l, err := br.ReadString('\n')
		if len(l) > 0 {
			if pass != nil {
				if _, werr := io.WriteString(pass, l); werr != nil {
					return werr
				}
			}
			c.Line(l)
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// Rows are every row: the emitted ones, then one per metric of each
// standard result line whose benchmark emitted none (measurement Micro,
// scenario "<package> <benchmark>", method Oomwatch).
func (c *Collector) Rows() []Row {
	emitted := map[string]bool{}
	for _, r := range c.rows {
		if r.Bench != "" {
			emitted[r.Bench] = true
		}
	}
	out := append([]Row(nil), c.rows...)
	for _, s := range c.std {
		if emitted[s.name] {
			continue
		}
		for _, m := range s.metrics {
			out = append(out, Row{Measurement: Micro, Scenario: strings.TrimSpace(shortPkg(s.pkg) + " " + s.name),
				Method: Oomwatch, Metric: m.Metric, Value: m.Value, Bench: s.name})
		}
	}
	return out
}

func shortPkg(p string) string {
	if i := strings.Index(p, "oomwatch/oomwatch/"); i >= 0 {
		return p[i+len("oomwatch/oomwatch/"):]
	}
	return p
}

// Hosts are the host lines seen, one per distinct machine (the date is the
// earliest seen).
func (c *Collector) Hosts() []Host {
	var out []Host
	for _, h := range c.hosts {
		dup := false
		for i, o := range out {
			x, y := h, o
			x.Date, y.Date = "", ""
			if x == y {
				dup = true
				if h.Date < o.Date {
					out[i].Date = h.Date
				}
			}
		}
		if !dup {
			out = append(out, h)
		}
	}
	return out
}

// ---- the table ----

var measurementOrder = []string{LoopBreak, Scale, Storm, Churn, Micro}

func measurementRank(m string) int {
	for i, x := range measurementOrder {
		if x == m {
			return i
		}
	}
	return len(measurementOrder)
}

type line struct {
	meas, scen, metric string
	unit               string
	byMethod           map[string]Row
	count              map[string]int // rows per method (more than one: repeated runs, the last is shown)
	methods            []string       // in order of appearance
}

func isOther(m string) bool { return m != Oomwatch && m != Baseline }

// Table renders everything collected as one table. fallback describes the
// machine when the output carries no host line (then it is the
// collector's own machine, and the header says so).
func (c *Collector) Table(fallback Host) string {
	rows := c.Rows()
	// group: measurement → scenario → metric, each in order of first appearance
	var lines []*line
	idx := map[[3]string]*line{}
	scenOrder := map[[2]string]int{}
	for _, r := range rows {
		k := [3]string{r.Measurement, r.Scenario, r.Metric}
		l := idx[k]
		if l == nil {
			l = &line{meas: r.Measurement, scen: r.Scenario, metric: r.Metric, byMethod: map[string]Row{}, count: map[string]int{}}
			idx[k] = l
			lines = append(lines, l)
		}
		if _, ok := scenOrder[[2]string{r.Measurement, r.Scenario}]; !ok {
			scenOrder[[2]string{r.Measurement, r.Scenario}] = len(scenOrder)
		}
		if _, ok := l.byMethod[r.Method]; !ok {
			l.methods = append(l.methods, r.Method)
		}
		l.byMethod[r.Method] = r
		l.count[r.Method]++
		if l.unit == "" {
			l.unit = r.Unit
		}
	}
	sort.SliceStable(lines, func(i, j int) bool {
		a, b := lines[i], lines[j]
		if ra, rb := measurementRank(a.meas), measurementRank(b.meas); ra != rb {
			return ra < rb
		}
		return scenOrder[[2]string{a.meas, a.scen}] < scenOrder[[2]string{b.meas, b.scen}]
	})

	// which value columns are needed, and which methods the peer/poller column holds
	hasOther, hasBase := false, false
	otherBy := map[string][]string{} // measurement → other methods
	for _, l := range lines {
		for _, m := range l.methods {
			if m == Baseline {
				hasBase = true
			} else if isOther(m) {
				hasOther = true
				if !slices.Contains(otherBy[l.meas], m) {
					otherBy[l.meas] = append(otherBy[l.meas], m)
				}
			}
		}
	}
	head := []string{"measurement", "scenario", "metric", "unit", "oomwatch"}
	right := []bool{false, false, false, false, true}
	if hasOther {
		head, right = append(head, "peer/poller"), append(right, true)
	}
	if hasBase {
		head, right = append(head, "baseline"), append(right, true)
	}
	head, right = append(head, "target", "met", "notes"), append(right, false, false, false)

	var body [][]string
	met, missed := 0, 0
	var misses []string
	prevMeas, prevScen := "", ""
	for _, l := range lines {
		others := []string{""}
		for _, m := range l.methods {
			if isOther(m) {
				if others[0] == "" {
					others[0] = m
				} else {
					others = append(others, m)
				}
			}
		}
		for oi, om := range others {
			metric := l.metric
			if oi > 0 {
				metric += " [" + om + "]"
			}
			cells := []string{"", "", metric, l.unit, cell(l, Oomwatch, oi == 0)}
			if l.meas != prevMeas {
				if prevMeas != "" {
					body = append(body, nil) // blank line between measurements
				}
				cells[0] = l.meas
			}
			if l.meas != prevMeas || l.scen != prevScen {
				cells[1] = l.scen
			}
			prevMeas, prevScen = l.meas, l.scen
			if hasOther {
				cells = append(cells, cell(l, om, true))
			}
			if hasBase {
				cells = append(cells, cell(l, Baseline, oi == 0))
			}
			// target and met are oomwatch's; else the first row that has one
			var tr Row
			for _, m := range append([]string{Oomwatch}, l.methods...) {
				if r, ok := l.byMethod[m]; ok && r.Target != "" {
					tr = r
					break
				}
			}
			if oi > 0 {
				tr = Row{}
			}
			cells = append(cells, tr.Target, tr.Met, notes(l, oi == 0, om))
			switch tr.Met {
			case Yes:
				met++
			case No:
				missed++
				misses = append(misses, fmt.Sprintf("%s · %s · %s %s (target %s)", l.meas, l.scen, l.metric, valueText(tr), tr.Target))
			}
			body = append(body, cells)
		}
	}

	var b strings.Builder
	b.WriteString("==== oomwatch benchmarks: one table ====\n")
	hosts := c.Hosts()
	if len(hosts) == 0 {
		fmt.Fprintf(&b, "machine: %s (the collector's machine: the output has no %s line)\n", hostText(fallback), strings.TrimSpace(HostPrefix))
	}
	for _, h := range hosts {
		fmt.Fprintf(&b, "machine: %s\n", hostText(h))
	}
	if len(lines) == 0 {
		b.WriteString("no result rows in the output\n")
	} else {
		var legend []string
		var unknown []string
		for m := range otherBy {
			if measurementRank(m) == len(measurementOrder) {
				unknown = append(unknown, m)
			}
		}
		sort.Strings(unknown)
		for _, m := range append(append([]string(nil), measurementOrder...), unknown...) {
			if len(otherBy[m]) > 0 {
				legend = append(legend, strings.Join(otherBy[m], ", ")+" ("+m+")")
			}
		}
		b.WriteString("target and met are oomwatch's")
		if len(legend) > 0 {
			b.WriteString("; peer/poller = " + strings.Join(legend, ", "))
		}
		if hasBase {
			b.WriteString("; baseline = the same binary with nothing armed")
		}
		b.WriteString("\n\n")
		b.WriteString(render(head, right, body))
	}
	b.WriteString("\n")
	if met+missed > 0 {
		fmt.Fprintf(&b, "targets: %d met, %d not met\n", met, missed)
		for _, m := range misses {
			fmt.Fprintf(&b, "  not met: %s\n", m)
		}
	}
	for _, e := range c.skips {
		fmt.Fprintf(&b, "skipped: %s\n", eventText(e))
	}
	for _, e := range c.fails {
		fmt.Fprintf(&b, "FAILED: %s\n", eventText(e))
	}
	for _, p := range c.pkgFail {
		fmt.Fprintf(&b, "go test FAIL: %s\n", p)
	}
	if c.badLines > 0 {
		fmt.Fprintf(&b, "%d %s lines could not be parsed\n", c.badLines, strings.TrimSpace(Prefix))
	}
	return b.String()
}

func valueText(r Row) string {
	if r.Missing() {
		if r.Text != "" {
			return r.Text
		}
		return "n/a"
	}
	return Num(r.Value)
}

// cell is method m's value on l ("" if it has none or show is false); a
// method that appeared more than once shows its last value.
func cell(l *line, m string, show bool) string {
	r, ok := l.byMethod[m]
	if !ok || !show {
		return ""
	}
	return clip(valueText(r), 28)
}

func notes(l *line, first bool, other string) string {
	var ns []string
	for _, m := range l.methods {
		if !first && m != other || first && isOther(m) && m != other {
			continue
		}
		r := l.byMethod[m]
		n := r.Note
		if l.count[m] > 1 {
			n = strings.TrimSpace(fmt.Sprintf("%s (last of %d runs)", n, l.count[m]))
		}
		if n == "" {
			continue
		}
		if m != Oomwatch {
			n = m + ": " + n
		}
		ns = append(ns, n)
	}
	return strings.Join(ns, "; ")
}

func clip(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

func hostText(h Host) string {
	parts := []string{h.OS, "kernel " + h.Kernel, fmt.Sprintf("nproc %d", h.NProc), h.CPU}
	if h.MemGiB > 0 {
		parts = append(parts, fmt.Sprintf("%.1f GiB RAM", h.MemGiB))
	}
	parts = append(parts, "cgroup "+h.Cgroup, h.Go, h.Date)
	return strings.Join(parts, " · ")
}

func eventText(e event) string {
	s := strings.TrimSpace(shortPkg(e.pkg) + " " + e.name)
	if e.msg != "" {
		s += ": " + clip(e.msg, 200)
	}
	return s
}

// render pads columns (by runes); the last column is not padded. A nil
// row is a blank line.
func render(head []string, right []bool, body [][]string) string {
	w := make([]int, len(head))
	for _, r := range append([][]string{head}, body...) {
		for i, c := range r {
			w[i] = max(w[i], utf8.RuneCountInString(c))
		}
	}
	var b strings.Builder
	row := func(r []string) {
		var sb strings.Builder
		for i, c := range r {
			if i > 0 {
				sb.WriteString("  ")
			}
			pad := strings.Repeat(" ", w[i]-utf8.RuneCountInString(c))
			switch {
			case i == len(r)-1:
				sb.WriteString(c)
			case right[i]:
				sb.WriteString(pad + c)
			default:
				sb.WriteString(c + pad)
			}
		}
		b.WriteString(strings.TrimRight(sb.String(), " ") + "\n")
	}
	row(head)
	rule := make([]string, len(head))
	for i := range rule {
		rule[i] = strings.Repeat("-", max(w[i], 1))
	}
	row(rule)
	for _, r := range body {
		if r == nil {
			b.WriteString("\n")
			continue
		}
		row(r)
	}
	return b.String()
}
