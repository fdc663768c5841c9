package policy

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/oomwatch/oomwatch/test/benchrow"
)

// starvationRun is one run of the starvation benchmark: how the other
// container's single loop fared.
type starvationRun struct {
	took        time.Duration // its Open → its ladder's end
	waits       int           // its actions refused by the rate limit
	tenantFirst int           // tenant actions done before its own
	tenantActed int           // tenant actions done by the time it was
}

// runStarvation opens tenant loops in fresh cgroups of one container
// (/lxc/tenant/loopN), lets every one of their ladders act or queue, then
// opens one loop in another container (/lxc/other) and times its ladder;
// after pause (the tenant's waiting ladders taking every token that comes
// back) the same for a third container (/lxc/third). Real clock,
// default budget (30 actions a minute), ladder [freeze] on a fake v2 tree
// whose kernel freezes at once: what is measured is the wait for the rate
// limit, not the kernel. With tenant 0, the loops are alone.
func runStarvation(b *testing.B, tenant int, pause time.Duration) (first, later starvationRun) {
	var tenantCgs []string
	for i := 0; i < tenant; i++ {
		tenantCgs = append(tenantCgs, fmt.Sprintf("/lxc/tenant/loop%04d", i))
	}
	rig := newFreezeRig(b, 0, append(tenantCgs, "/lxc/other", "/lxc/third")...)
	p, l, logs := rig.p, rig.l, rig.logs
	for _, cg := range tenantCgs {
		p.Open(loopAt(cg))
	}
	deadline := time.Now().Add(time.Minute)
	for len(l.order())+events(logs, "rate_limited") < tenant {
		if time.Now().After(deadline) {
			b.Fatalf("tenant ladders neither acted nor waiting after a minute")
		}
		time.Sleep(time.Millisecond)
	}
	serve := func(cg string) starvationRun {
		waited := events(logs, "rate_limited")
		start := time.Now()
		p.Open(loopAt(cg))
		var r starvationRun
		for {
			if rs, ok := l.finished(cg); ok {
				r.took = time.Since(start)
				if len(rs) != 1 || !rs[0].Verified {
					b.Fatalf("the ladder of %s: %+v", cg, rs)
				}
				break
			}
			if time.Since(start) > 10*time.Minute {
				b.Fatalf("the loop of %s not broken after 10 minutes", cg)
			}
			time.Sleep(100 * time.Microsecond)
		}
		// Every tenant ladder was already acting or waiting: new
		// rate_limited lines are this loop's.
		r.waits = events(logs, "rate_limited") - waited
		order := l.order()
		at := slices.Index(order, cg)
		for i, c := range order {
			if strings.HasPrefix(c, "/lxc/tenant/") {
				r.tenantActed++
				if i < at {
					r.tenantFirst++
				}
			}
		}
		return r
	}
	first = serve("/lxc/other")
	time.Sleep(pause)
	later = serve("/lxc/third")
	rig.stop()
	return first, later
}

// BenchmarkTenantStarvation: one tenant with 100 (and 1,000) loops in fresh
// cgroups of its container, then another container's single loop; the time
// until the second loop's ladder has acted, against the same loop alone
// (baseline), right after the tenant's burst and 5 s later.
func BenchmarkTenantStarvation(b *testing.B) {
	// Alone: sub-millisecond and noisy on a shared machine, so the median
	// of 10.
	var solo []float64
	for i := 0; i < 5; i++ {
		f, l := runStarvation(b, 0, 0)
		solo = append(solo, float64(f.took)/1e6, float64(l.took)/1e6)
	}
	slices.Sort(solo)
	aloneMs := benchrow.Percentile(solo, 50)
	var rows []benchrow.Row
	for _, tenant := range []int{100, 1000} {
		first, later := runStarvation(b, tenant, 5*time.Second)
		for _, c := range []struct {
			when string
			r    starvationRun
		}{{"right after the tenant's burst", first}, {"5 s later", later}} {
			ms := float64(c.r.took) / 1e6
			scenario := fmt.Sprintf("fake v2 tree, 30 actions/min: a tenant's %d loops, another container's 1 %s", tenant, c.when)
			row := func(metric string, v float64, unit string) benchrow.Row {
				return benchrow.Row{Measurement: benchrow.Storm, Scenario: scenario, Method: benchrow.Oomwatch,
					Metric: metric, Value: v, Unit: unit, Bench: b.Name()}
			}
			base := row("other container's loop acted on", aloneMs, "ms")
			base.Method, base.Note = benchrow.Baseline, "the same loop with no tenant, median of 10"
			rows = append(rows,
				row("other container's loop acted on", ms, "ms").
					Check(fmt.Sprintf("≤ alone + 250 ms (%s ms)", benchrow.Num(aloneMs+250)), ms <= aloneMs+250),
				base,
				row("its rate-limit waits", float64(c.r.waits), "").Equal(0, "served out of what the tenant leaves"),
				row("tenant actions before it", float64(c.r.tenantFirst), ""))
			fmt.Printf("tenant %4d loops, %s: other container's loop acted on after %.2f ms (alone %.2f ms), %d rate-limit waits, %d tenant actions before it, %d tenant loops acted on in all\n",
				tenant, c.when, ms, aloneMs, c.r.waits, c.r.tenantFirst, c.r.tenantActed)
		}
		b.ReportMetric(float64(first.took)/1e6, fmt.Sprintf("other-ms-%d", tenant))
		b.ReportMetric(float64(later.took)/1e6, fmt.Sprintf("later-ms-%d", tenant))
	}
	b.ReportMetric(aloneMs, "alone-ms")
	benchrow.Emit(rows...)
}
