package watchdog

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/oomwatch/oomwatch/internal/cgroupfs"
	"github.com/oomwatch/oomwatch/internal/procfs"
	"github.com/oomwatch/oomwatch/test/testhost"
)

type riskEvents struct {
	mu          sync.Mutex
	found, gone []string
}

func (e *riskEvents) RiskFound(r Risk) {
	e.mu.Lock()
	e.found = append(e.found, r.Cgroup)
	e.mu.Unlock()
}
func (e *riskEvents) RiskGone(r Risk, _ string) {
	e.mu.Lock()
	e.gone = append(e.gone, r.Cgroup)
	e.mu.Unlock()
}

func riskPaths(rs []Risk) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Cgroup)
	}
	return out
}

// The daemon's would-loop finding: a limited cgroup whose every task is
// unkillable is at risk; one with a killable task, or without a limit, is
// not; the finding goes when the task becomes killable. With a budget of
// one cgroup per sweep, successive sweeps cover them all.
func TestRiskMonitorFindsWouldLoopCgroups(t *testing.T) {
	cgRoot, procRoot := t.TempDir(), t.TempDir()
	writeV2Root(t, cgRoot)
	writeProc(t, procRoot, 100, 1, "java", -1000, 9000)
	writeProc(t, procRoot, 200, 1, "nginx", 0, 9000)
	writeProc(t, procRoot, 300, 1, "sshd", -1000, 9000)
	writeCgroup(t, cgRoot, "lxc", "max")
	writeCgroup(t, cgRoot, "lxc/db", "20971520", 100)  // at risk
	writeCgroup(t, cgRoot, "lxc/web", "20971520", 200) // killable task
	writeCgroup(t, cgRoot, "lxc/free", "max", 300)     // no limit
	h, err := cgroupfs.Open(cgRoot, "")
	must(t, err)
	ready := make(chan int, 1)
	w, err := New(Config{CG: h, Proc: procfs.New(procRoot), Detector: DefaultParams,
		Ready: func(n int) { ready <- n }}, newRecorder(), zerolog.Nop())
	must(t, err)
	startRun(t, w)
	<-ready
	ev := &riskEvents{}
	logs := &testhost.SyncBuf{}
	m := &RiskMonitor{List: w, Insp: Inspector{CG: h, Proc: procfs.New(procRoot)}, MaxChecks: 1, Events: ev, Log: zerolog.New(logs)}
	ctx := context.Background()
	// Limited cgroups in path order: /lxc/db, /lxc/web; one per sweep.
	must(t, m.Sweep(ctx))
	if got := riskPaths(m.AtRisk()); !slices.Equal(got, []string{"/lxc/db"}) {
		t.Fatalf("after the first sweep at risk %q, want [/lxc/db]", got)
	}
	must(t, m.Sweep(ctx))
	if got := riskPaths(m.AtRisk()); !slices.Equal(got, []string{"/lxc/db"}) {
		t.Fatalf("after the second sweep at risk %q, want [/lxc/db]", got)
	}
	r := m.AtRisk()[0]
	if r.Container != "db" || r.Tasks != 1 || r.Limit != 20971520 || r.Since.IsZero() {
		t.Errorf("risk %+v", r)
	}
	// The task becomes killable: the risk goes at the sweep that checks it.
	must(t, os.WriteFile(filepath.Join(procRoot, "100/oom_score_adj"), []byte("0\n"), 0o644))
	for range 2 {
		must(t, m.Sweep(ctx))
	}
	if got := m.AtRisk(); len(got) != 0 {
		t.Fatalf("still at risk: %+v", got)
	}
	ev.mu.Lock()
	defer ev.mu.Unlock()
	if !slices.Equal(ev.found, []string{"/lxc/db"}) || !slices.Equal(ev.gone, []string{"/lxc/db"}) {
		t.Errorf("events found %q gone %q, want /lxc/db once each", ev.found, ev.gone)
	}
	if out := logs.String(); !containsAll(out, `"event":"risk"`, `"cgroup":"/lxc/db"`, `"event":"risk_gone"`) {
		t.Errorf("log:\n%s", out)
	}
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// The monitor wakes only for its sweeps: between two there is nothing,
// and a cancelled context ends Run.
func TestRiskMonitorRunStops(t *testing.T) {
	cgRoot := t.TempDir()
	writeV2Root(t, cgRoot)
	h, err := cgroupfs.Open(cgRoot, "")
	must(t, err)
	ready := make(chan int, 1)
	w, err := New(Config{CG: h, Proc: procfs.New(t.TempDir()), Detector: DefaultParams, Ready: func(n int) { ready <- n }}, newRecorder(), zerolog.Nop())
	must(t, err)
	startRun(t, w)
	<-ready
	m := &RiskMonitor{List: w, Insp: Inspector{CG: h, Proc: procfs.New(t.TempDir())}, Every: time.Hour, Log: zerolog.Nop()}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for m.Swept().IsZero() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if m.Swept().IsZero() {
		t.Fatal("no first sweep at start")
	}
	cancel()
	<-done
}

// Between sweeps the event loop brings a cgroup's check forward: a new
// cgroup whose tasks are all unkillable, and a cgroup where an OOM killed
// the only killable task, are found RiskHintDelay later, not at the next
// sweep an hour away.
func TestRiskHintChecksEarly(t *testing.T) {
	cgRoot, procRoot := t.TempDir(), t.TempDir()
	writeV2Root(t, cgRoot)
	writeProc(t, procRoot, 100, 1, "java", -1000, 9000)
	writeProc(t, procRoot, 200, 1, "nginx", 0, 9000)
	writeCgroup(t, cgRoot, "lxc", "max")
	writeCgroup(t, cgRoot, "lxc/web", "20971520", 100, 200) // a killable task
	h, err := cgroupfs.Open(cgRoot, "")
	must(t, err)
	ev := &riskEvents{}
	m := &RiskMonitor{Insp: Inspector{CG: h, Proc: procfs.New(procRoot)}, Every: time.Hour, Events: ev, Log: zerolog.Nop()}
	ready := make(chan int, 1)
	w, err := New(Config{CG: h, Proc: procfs.New(procRoot), Detector: DefaultParams, RiskHint: m.Hint, Ready: func(n int) { ready <- n }}, newRecorder(), zerolog.Nop())
	must(t, err)
	m.List = w
	startRun(t, w)
	<-ready // the loop runs: the first sweep can list it
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); m.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	waitRisk := func(what string, want []string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !slices.Equal(riskPaths(m.AtRisk()), want) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: at risk %q, want %q", what, riskPaths(m.AtRisk()), want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	for deadline := time.Now().Add(10 * time.Second); m.Swept().IsZero(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no first sweep")
		}
	}
	if got := m.AtRisk(); len(got) != 0 {
		t.Fatalf("at risk %v before anything changed", riskPaths(got))
	}
	swept := m.Swept()

	writeCgroup(t, cgRoot, "lxc/new", "20971520", 100)
	waitRisk("a new cgroup", []string{"/lxc/new"})

	// The kernel killed nginx: only the unkillable java is left.
	must(t, os.WriteFile(filepath.Join(cgRoot, "lxc/web/cgroup.procs"), []byte("100\n"), 0o644))
	setEvents(t, cgRoot, "lxc/web", 1, 1, 1)
	waitRisk("an OOM kill", []string{"/lxc/new", "/lxc/web"})
	if !m.Swept().Equal(swept) {
		t.Error("a sweep ran: the test shows nothing about hints")
	}
	ev.mu.Lock()
	defer ev.mu.Unlock()
	if !slices.Equal(ev.found, []string{"/lxc/new", "/lxc/web"}) || len(ev.gone) != 0 {
		t.Errorf("events found %q gone %q", ev.found, ev.gone)
	}
}
