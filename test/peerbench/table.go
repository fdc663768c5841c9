package peerbench

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
)

// Judged is a run with its outcome.
type Judged struct {
	Run
	Outcome
}

// Value is one percentile: a number, or a bound when the run it falls on
// never broke the loop (its count at the cap: "≥ N").
type Value struct {
	V     float64
	Never bool // the run at this rank was still looping at the cap
	None  bool // no run to take it from
}

// Summary is one peer in one variant.
type Summary struct {
	Variant, Peer       string
	Runs                int
	Broken, Nevers, Bad int // broken, never, spoilt
	Secs50, Secs95      Value
	OOM50, OOM95        Value
	CPU50, CPU95        Value // s
	Killed, Running     string
	List                []Judged
	By                  string // what broke the loop ("kernel kill" after oomwatch's reset, "systemd-oomd", …)
}

// Percentile is the nearest-rank percentile p (0–100) of the runs that are
// not spoilt, ordered by key with never runs after every broken one.
func Percentile(runs []Judged, p float64, key func(Judged) float64) Value {
	var ok []Judged
	for _, r := range runs {
		if r.Status != Spoilt {
			ok = append(ok, r)
		}
	}
	if len(ok) == 0 {
		return Value{None: true}
	}
	sort.SliceStable(ok, func(i, j int) bool {
		a, b := ok[i], ok[j]
		if (a.Status == Never) != (b.Status == Never) {
			return b.Status == Never
		}
		return key(a) < key(b)
	})
	rank := int(math.Ceil(p / 100 * float64(len(ok))))
	if rank < 1 {
		rank = 1
	}
	r := ok[rank-1]
	return Value{V: key(r), Never: r.Status == Never}
}

// Summarize judges runs and groups them by variant and peer, in the
// table's order (Variants, then Peers; unknown names after them).
func Summarize(runs []Run) []Summary {
	type key struct{ v, p string }
	groups := map[key][]Judged{}
	var keys []key
	for _, r := range runs {
		k := key{r.Variant, r.Peer}
		if _, ok := groups[k]; !ok {
			keys = append(keys, k)
		}
		groups[k] = append(groups[k], Judged{r, Judge(r)})
	}
	sort.SliceStable(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		if a.v != b.v {
			return order(Variants, a.v) < order(Variants, b.v)
		}
		return order(Peers, a.p) < order(Peers, b.p)
	})
	var out []Summary
	for _, k := range keys {
		js := groups[k]
		sort.SliceStable(js, func(i, j int) bool { return js[i].N < js[j].N })
		s := Summary{Variant: k.v, Peer: k.p, Runs: len(js), List: js}
		by := map[string]bool{}
		killed, running := map[string]int{}, map[bool]int{}
		for _, j := range js {
			switch j.Status {
			case Broken:
				s.Broken++
				by[j.By] = true
			case Never:
				s.Nevers++
			default:
				s.Bad++
				continue
			}
			killed[j.Killed]++
			running[j.Running]++
		}
		secs := func(j Judged) float64 { return j.Secs }
		ooms := func(j Judged) float64 { return float64(j.OOM) }
		cpu := func(j Judged) float64 { return float64(j.CPUUsec) / 1e6 }
		s.Secs50, s.Secs95 = Percentile(js, 50, secs), Percentile(js, 95, secs)
		s.OOM50, s.OOM95 = Percentile(js, 50, ooms), Percentile(js, 95, ooms)
		s.CPU50, s.CPU95 = Percentile(js, 50, cpu), Percentile(js, 95, cpu)
		s.Killed = counts(killed)
		s.Running = counts(map[string]int{"yes": running[true], "no": running[false]})
		s.By = strings.Join(sorted(by), ", ")
		out = append(out, s)
	}
	return out
}

func order(list []string, s string) int {
	for i, e := range list {
		if e == s {
			return i
		}
	}
	return len(list)
}

func sorted(m map[string]bool) []string {
	var s []string
	for k := range m {
		s = append(s, k)
	}
	sort.Strings(s)
	return s
}

// counts renders "hog 5" or "hog 3, init and all 2" (zero counts left out).
func counts(m map[string]int) string {
	var ks []string
	for k, n := range m {
		if n > 0 {
			ks = append(ks, k)
		}
	}
	sort.Strings(ks)
	var b []string
	for _, k := range ks {
		b = append(b, k+" "+strconv.Itoa(m[k]))
	}
	if len(b) == 0 {
		return "-"
	}
	return strings.Join(b, ", ")
}

// Ratio compares oomwatch with the fastest other peer that breaks the loop
// at all (by p50 time, then p95) in one variant.
type Ratio struct {
	Variant, Peer                string  // the fastest other peer
	Secs50, Secs95, OOM50, OOM95 float64 // oomwatch ÷ that peer
	Ok                           bool
}

// Ratios returns, per variant, oomwatch ÷ the fastest other peer that
// broke the loop in at least one run; a peer whose median run killed
// before the first OOM has no ratio and is passed over. Variants without
// oomwatch or without such a peer are left out.
func Ratios(sums []Summary) []Ratio {
	var out []Ratio
	for _, v := range variantsOf(sums) {
		var ow *Summary
		var best *Summary
		for i := range sums {
			s := &sums[i]
			if s.Variant != v || s.Broken == 0 {
				continue
			}
			if s.Peer != Oomwatch && !s.Secs50.Never && s.Secs50.V == 0 {
				continue // it kills before the loop begins: no ratio to take
			}
			if s.Peer == Oomwatch {
				ow = s
				continue
			}
			if best == nil || faster(*s, *best) {
				best = s
			}
		}
		if ow == nil || best == nil {
			continue
		}
		out = append(out, Ratio{Variant: v, Peer: best.Peer, Ok: true,
			Secs50: div(ow.Secs50, best.Secs50), Secs95: div(ow.Secs95, best.Secs95),
			OOM50: div(ow.OOM50, best.OOM50), OOM95: div(ow.OOM95, best.OOM95)})
	}
	return out
}

func faster(a, b Summary) bool {
	if a.Secs50.Never != b.Secs50.Never {
		return !a.Secs50.Never
	}
	if a.Secs50.V != b.Secs50.V {
		return a.Secs50.V < b.Secs50.V
	}
	return a.Secs95.V < b.Secs95.V
}

// div is a ÷ b; NaN when either is a bound or missing or b is 0.
func div(a, b Value) float64 {
	if a.Never || b.Never || a.None || b.None || b.V == 0 || math.IsInf(a.V, 0) || math.IsInf(b.V, 0) {
		return math.NaN()
	}
	return a.V / b.V
}

func variantsOf(sums []Summary) []string {
	seen := map[string]bool{}
	var vs []string
	for _, s := range sums {
		if !seen[s.Variant] {
			seen[s.Variant] = true
			vs = append(vs, s.Variant)
		}
	}
	return vs
}

func fmtSecs(v Value) string {
	switch {
	case v.None:
		return "-"
	case v.Never:
		return "never"
	}
	return fmtDur(v.V)
}

func fmtDur(s float64) string {
	if s < 1 {
		return strconv.FormatFloat(s*1000, 'f', 0, 64) + " ms"
	}
	return strconv.FormatFloat(s, 'f', 2, 64) + " s"
}

func fmtNum(v Value, prec int) string {
	if v.None {
		return "-"
	}
	s := strconv.FormatFloat(v.V, 'f', prec, 64)
	if v.Never {
		return "≥ " + s
	}
	return s
}

func fmtRatio(x float64) string {
	if math.IsNaN(x) {
		return "-"
	}
	if x >= 0.1 {
		return strconv.FormatFloat(x, 'f', 2, 64) + "×"
	}
	return strconv.FormatFloat(x, 'g', 2, 64) + "×"
}

// Write prints the summary table (peer × p50/p95), the ratios, and every
// run, as Markdown tables. title heads it (kernel, machine).
func Write(w io.Writer, title string, runs []Run) {
	sums := Summarize(runs)
	fmt.Fprintf(w, "## %s\n\n", title)
	fmt.Fprintln(w, "| variant | peer | runs | broken / never / spoilt | broken by | loop p50 | loop p95 | OOMs p50 | OOMs p95 | CPU p50 | CPU p95 | killed | still running |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, s := range sums {
		by := s.By
		if by == "" {
			by = "-"
		}
		fmt.Fprintf(w, "| %s | %s | %d | %d / %d / %d | %s | %s | %s | %s | %s | %s s | %s s | %s | %s |\n",
			s.Variant, s.Peer, s.Runs, s.Broken, s.Nevers, s.Bad, by,
			fmtSecs(s.Secs50), fmtSecs(s.Secs95), fmtNum(s.OOM50, 0), fmtNum(s.OOM95, 0),
			fmtNum(s.CPU50, 2), fmtNum(s.CPU95, 2), s.Killed, s.Running)
	}
	if rs := Ratios(sums); len(rs) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| variant | oomwatch ÷ the fastest peer that breaks the loop | loop p50 | loop p95 | OOMs p50 | OOMs p95 |")
		fmt.Fprintln(w, "|---|---|---|---|---|---|")
		for _, r := range rs {
			fmt.Fprintf(w, "| %s | oomwatch ÷ %s | %s | %s | %s | %s |\n", r.Variant, r.Peer,
				fmtRatio(r.Secs50), fmtRatio(r.Secs95), fmtRatio(r.OOM50), fmtRatio(r.OOM95))
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| variant | peer | run | outcome | loop | OOMs | CPU | killed | still running | note |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|")
	for _, s := range sums {
		for _, j := range s.List {
			loop, note := "-", j.Why
			switch j.Status {
			case Broken:
				loop = fmtDur(j.Secs)
				note = j.By
				if j.Before {
					loop = "0 (killed before the 1st OOM)"
				}
			case Never:
				loop = "never (" + strconv.FormatFloat(j.CapSec, 'f', 0, 64) + " s cap)"
			}
			running := "no"
			if j.Running {
				running = "yes"
			}
			fmt.Fprintf(w, "| %s | %s | %d | %s | %s | %d | %.2f s | %s | %s | %s |\n",
				j.Variant, j.Peer, j.N, j.Status, loop, j.OOM, float64(j.CPUUsec)/1e6, j.Killed, running, note)
		}
	}
}
