package peerbench

import (
	"math"
	"strings"
	"testing"
)

func TestJudge(t *testing.T) {
	base := Run{Peer: Oomwatch, Variant: StandIn, N: 1, FirstOOM: 100, HogPID: 42, InitPID: 40, CapSec: 90}
	tests := []struct {
		name   string
		mod    func(*Run)
		status Status
		by     string
		secs   float64
		killed string
	}{
		{"kernel kill of the hog after a reset", func(r *Run) {
			r.HogExit, r.InitAlive = 100.08, true
			r.Kills = []Kill{{TS: 99, PID: 42}, {TS: 100.05, PID: 42, Comm: "hog"}}
		}, Broken, "kernel kill", 0.05, "hog"},
		{"a kill of another task is not the break", func(r *Run) {
			r.HogExit, r.InitAlive = 101, true
			r.Kills = []Kill{{TS: 100.5, PID: 7}}
		}, Spoilt, "", math.Inf(1), "hog"},
		{"oomd's cgroup kill", func(r *Run) {
			r.HogExit = 103.5
			r.Journal = []JournalLine{{TS: 103.6, Unit: "systemd-oomd.service", Message: "Killed /system.slice/peer-standin-1.service due to memory pressure for /system.slice/peer-standin-1.service being 99.00% > 0.01% for > 1s with reclaim activity"}}
		}, Broken, "systemd-oomd", 3.5, "init and all"},
		{"earlyoom's signal", func(r *Run) {
			r.Peer, r.HogExit, r.InitAlive = Earlyoom, 110, true
			r.Journal = []JournalLine{{TS: 109.9, Unit: "earlyoom.service", Message: `sending SIGTERM to process 42 uid 0 "hog": badness 900, VmRSS 47 MiB`}}
		}, Broken, "earlyoom", 10, "hog"},
		{"still looping at the cap", func(r *Run) {
			r.Peer, r.Capped, r.HogExit, r.InitAlive = Kernel, true, 190.1, true
		}, Never, "", math.Inf(1), "nothing"},
		{"the hog died by itself", func(r *Run) {
			r.HogExit, r.HogStatus, r.InitAlive = 100.5, "exit 2", true
		}, Spoilt, "", math.Inf(1), "hog"},
		{"no OOM", func(r *Run) { r.FirstOOM = 0 }, Spoilt, "", math.Inf(1), "nothing"},
		{"an oomd line of an earlier run is no kill", func(r *Run) {
			r.HogExit = 101
			r.Journal = []JournalLine{{TS: 50, Unit: "systemd-oomd.service", Message: "Killed /system.slice/x.service due to"}}
		}, Spoilt, "", math.Inf(1), "init and all"},
	}
	for _, tt := range tests {
		r := base
		tt.mod(&r)
		o := Judge(r)
		if o.Status != tt.status || o.By != tt.by || o.Killed != tt.killed || math.Abs(o.Secs-tt.secs) > 1e-9 && !(math.IsInf(o.Secs, 1) && math.IsInf(tt.secs, 1)) {
			t.Errorf("%s: Judge = %+v, want %s by %q after %v, killed %q", tt.name, o, tt.status, tt.by, tt.secs, tt.killed)
		}
		if tt.status == Spoilt && o.Why == "" {
			t.Errorf("%s: a spoilt run says why", tt.name)
		}
	}
}

func TestParseRuns(t *testing.T) {
	out := "boot noise\n" +
		`[  12.5] PEERRUN {"peer":"oomwatch","variant":"standin","n":2,"first_oom":10.5,"hog_exit":10.6,"hog_pid":9,"kills":[{"ts":10.55,"pid":9,"comm":"hog"}],"oom":6,"cpu_usec":80000,"init_alive":true,"running":true}` + "\n" +
		"PEERRUN {broken\n" +
		`PEERRUN {"variant":"lxc"}` + "\n" +
		"PEERNOTE lxc oomd-tight: refused\n"
	runs, errs := ParseRuns(out)
	if len(runs) != 1 || len(errs) != 2 {
		t.Fatalf("ParseRuns: %d runs %v, errors %v; want 1 run and 2 errors", len(runs), runs, errs)
	}
	r := runs[0]
	if r.Peer != Oomwatch || r.N != 2 || r.OOM != 6 || r.CPUUsec != 80000 || len(r.Kills) != 1 || r.Kills[0].PID != 9 || !r.Running {
		t.Errorf("ParseRuns: %+v", r)
	}
	if n := ParseNotes(out, "oomd-tight"); len(n) != 1 || n[0] != "oomd-tight: lxc oomd-tight: refused" {
		t.Errorf("ParseNotes = %q", n)
	}
}

func TestPercentile(t *testing.T) {
	js := func(secs ...float64) []Judged {
		var out []Judged
		for _, s := range secs {
			j := Judged{Outcome: Outcome{Status: Broken, Secs: s}}
			if math.IsInf(s, 1) {
				j.Status = Never
			}
			if s < 0 {
				j.Status = Spoilt
			}
			out = append(out, j)
		}
		return out
	}
	secs := func(j Judged) float64 { return j.Secs }
	inf := math.Inf(1)
	for _, tt := range []struct {
		runs  []Judged
		p     float64
		want  float64
		never bool
		none  bool
	}{
		{js(5, 1, 3, 2, 4), 50, 3, false, false},
		{js(5, 1, 3, 2, 4), 95, 5, false, false},
		{js(1, 2, inf, inf, inf), 50, inf, true, false},
		{js(1, 2, 3, inf, inf), 50, 3, false, false},
		{js(1, 2, 3, inf, inf), 95, inf, true, false},
		{js(-1, 2), 50, 2, false, false},                         // spoilt runs do not count
		{js(-1), 50, 0, false, true},                             // nothing to take it from
		{js(7), 95, 7, false, false},                             // one run is every percentile
		{js(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 50, 5, false, false}, // nearest rank
	} {
		v := Percentile(tt.runs, tt.p, secs)
		if v.None != tt.none || v.Never != tt.never || !tt.none && v.V != tt.want {
			t.Errorf("Percentile(%v, p%v) = %+v, want %v never=%v none=%v", tt.runs, tt.p, v, tt.want, tt.never, tt.none)
		}
	}
}

func TestWriteAndRatios(t *testing.T) {
	mk := func(peer string, n int, secs float64, oom uint64) Run {
		r := Run{Peer: peer, Variant: StandIn, N: n, FirstOOM: 100, HogPID: 5, InitPID: 4, OOM: oom, CPUUsec: 250000, CapSec: 90, InitAlive: true, Running: true}
		switch {
		case secs < 0:
			r.Capped, r.HogExit = true, 190
		case peer == Oomwatch:
			r.HogExit, r.Kills = 100+secs, []Kill{{TS: 100 + secs, PID: 5}}
		default:
			r.HogExit, r.InitAlive, r.Running = 100+secs, false, false
			r.Journal = []JournalLine{{TS: 100 + secs, Unit: "systemd-oomd.service", Message: "Killed /system.slice/x.service due to memory pressure"}}
		}
		return r
	}
	var runs []Run
	for i := 1; i <= 3; i++ {
		runs = append(runs, mk(Oomwatch, i, 0.05*float64(i), uint64(3+i)), mk(OomdTight, i, 2+float64(i), uint64(300*i)), mk(Kernel, i, -1, 20000))
	}
	sums := Summarize(runs)
	if len(sums) != 3 || sums[0].Peer != Kernel || sums[1].Peer != OomdTight || sums[2].Peer != Oomwatch {
		t.Fatalf("Summarize order: %+v", sums)
	}
	if s := sums[0]; s.Nevers != 3 || !s.Secs50.Never || s.Killed != "nothing 3" || s.Running != "yes 3" {
		t.Errorf("kernel summary: %+v", s)
	}
	rs := Ratios(sums)
	if len(rs) != 1 || rs[0].Peer != OomdTight || math.Abs(rs[0].Secs50-0.1/4) > 1e-9 || math.Abs(rs[0].OOM50-5.0/600) > 1e-9 {
		t.Errorf("Ratios = %+v, want oomwatch/oomd-tight 0.025× time, 0.0083× OOMs", rs)
	}
	var b strings.Builder
	Write(&b, "kernel 6.1, TCG", runs)
	out := b.String()
	for _, want := range []string{
		"## kernel 6.1, TCG",
		"| standin | kernel | 3 | 0 / 3 / 0 | - | never | never | ≥ 20000 | ≥ 20000 |",
		"| standin | oomwatch | 3 | 3 / 0 / 0 | kernel kill | 100 ms | 150 ms | 5 | 6 | 0.25 s | 0.25 s | hog 3 | yes 3 |",
		"| standin | oomwatch ÷ oomd-tight | 0.025× | 0.03× | 0.0083× | 0.0067× |",
		"| standin | oomd-tight | 2 | broken | 4.00 s | 600 | 0.25 s | init and all | no | systemd-oomd |",
		"| standin | kernel | 1 | never | never (90 s cap) |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

func TestJudgeKillBeforeTheLoop(t *testing.T) {
	r := Run{Peer: OomdTight, Variant: StandIn, N: 1, HogPID: 5, HogExit: 44.1,
		Journal: []JournalLine{{TS: 44.11, Unit: "systemd-oomd.service", Message: "Killed /system.slice/peer-standin-1.service due to memory pressure for /system.slice/peer-standin-1.service being 0.36% > 0.01% for > 1s with reclaim activity"}}}
	o := Judge(r)
	if o.Status != Broken || !o.Before || o.Secs != 0 || o.By != "systemd-oomd" || o.Killed != "init and all" {
		t.Errorf("Judge = %+v, want broken before the first OOM by systemd-oomd, init and all killed", o)
	}
	ow := Run{Peer: Oomwatch, Variant: StandIn, N: 1, FirstOOM: 10, HogPID: 5, HogExit: 10.2, Kills: []Kill{{TS: 10.1, PID: 5}}, InitAlive: true}
	early := Run{Peer: OomdTight, Variant: StandIn, N: 1, HogPID: 5, HogExit: 3, Journal: r.Journal}
	late := Run{Peer: OomdDefault, Variant: StandIn, N: 1, FirstOOM: 10, HogPID: 5, HogExit: 50,
		Journal: []JournalLine{{TS: 50, Unit: "systemd-oomd.service", Message: "Killed /system.slice/x.service due to memory pressure"}}}
	rs := Ratios(Summarize([]Run{ow, early, late}))
	if len(rs) != 1 || rs[0].Peer != OomdDefault || math.Abs(rs[0].Secs50-0.1/40) > 1e-9 {
		t.Errorf("Ratios = %+v, want oomwatch ÷ oomd-default (oomd-tight killed before the loop)", rs)
	}
}
