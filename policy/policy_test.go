package policy

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
	"go.uber.org/goleak"

	"github.com/oomwatch/oomwatch/internal/cgroupfs"
	"github.com/oomwatch/oomwatch/internal/procfs"
	"github.com/oomwatch/oomwatch/test/fixture"
	"github.com/oomwatch/oomwatch/watchdog"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestOptionsValidate(t *testing.T) {
	mod := func(f func(*Options)) Options { o := DefaultOptions(); f(&o); return o }
	tests := []struct {
		name string
		o    Options
		want string
	}{
		{"unknown rung", mod(func(o *Options) { o.Ladder = []string{"reset-adj", "reboot"} }), `unknown ladder rung "reboot"`},
		{"duplicate rung", mod(func(o *Options) { o.Ladder = []string{"freeze", "freeze"} }), "appears twice"},
		{"empty ladder", mod(func(o *Options) { o.Ladder = nil }), "ladder is empty"},
		{"reset to -1000", mod(func(o *Options) { o.ResetTo = -1000 }), "keep the task unkillable"},
		{"bad glob", mod(func(o *Options) { o.ExemptComm = []string{"["} }), "exempt pattern"},
		{"bad kill mode", mod(func(o *Options) { o.KillMode = "all" }), `kill mode "all"`},
		{"ceiling below 100%", mod(func(o *Options) { o.RaiseCeiling = Amount{Percent: 90} }), "must be above 100%"},
		{"bad paused action", mod(func(o *Options) { o.PausedAction = "freeze" }), `paused action "freeze"`},
		{"quiet longer than verify", mod(func(o *Options) { o.QuietFor = 3 * time.Second }), "must be shorter"},
		{"no resets", mod(func(o *Options) { o.MaxResets = 0 }), "at least 1"},
	}
	for _, tt := range tests {
		if err := tt.o.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: got %v, want an error containing %q", tt.name, err, tt.want)
		}
	}
	if err := DefaultOptions().Validate(); err != nil {
		t.Fatal(err)
	}
}

// fakeHost builds a v2 cgroup /ct holding pid 4242 at -1000 and a fake /proc.
func fakeHost(t testing.TB, comm string) (cgroupfs.Hierarchy, procfs.FS, string, string) {
	t.Helper()
	cgRoot, procRoot := t.TempDir(), t.TempDir()
	files := map[string]string{
		filepath.Join(cgRoot, "cgroup.controllers"):   "memory\n",
		filepath.Join(cgRoot, "ct/cgroup.procs"):      "4242\n",
		filepath.Join(cgRoot, "ct/memory.events"):     "oom 50\noom_kill 0\n",
		filepath.Join(cgRoot, "ct/memory.max"):        "20971520\n",
		filepath.Join(cgRoot, "ct/cgroup.freeze"):     "0\n",
		filepath.Join(cgRoot, "ct/cgroup.events"):     "populated 1\nfrozen 1\n", // this fake kernel freezes at once
		filepath.Join(procRoot, "4242/stat"):          fixture.StatLine(4242, comm, 'R', 1, 0),
		filepath.Join(procRoot, "4242/status"):        "Name:\tx\nUid:\t0\t0\t0\t0\nVmRSS:\t 20000 kB\n",
		filepath.Join(procRoot, "4242/cmdline"):       comm + "\x00",
		filepath.Join(procRoot, "4242/oom_score_adj"): "-1000\n",
		filepath.Join(procRoot, "4242/oom_adj"):       "-17\n",
		filepath.Join(procRoot, "4242/cgroup"):        "0::/ct\n",
		filepath.Join(procRoot, "1/stat"):             fixture.StatLine(1, "init", 'S', 0, 0),
		filepath.Join(procRoot, "1/status"):           "Name:\tinit\nUid:\t0\t0\t0\t0\n",
		filepath.Join(procRoot, "1/cmdline"):          "init\x00",
		filepath.Join(procRoot, "1/oom_score_adj"):    "0\n",
		filepath.Join(procRoot, "1/oom_adj"):          "0\n",
		filepath.Join(procRoot, "1/cgroup"):           "0::/\n",
	}
	for p, c := range files {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	h, err := cgroupfs.Open(cgRoot, "")
	if err != nil {
		t.Fatal(err)
	}
	h.AnyFS = true
	return h, procfs.New(procRoot), cgRoot, procRoot
}

func runLadder(t *testing.T, opts Options, h cgroupfs.Hierarchy, proc procfs.FS) []Action {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p, err := New(ctx, Config{CG: h, Proc: proc, Options: opts}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan []Action, 1)
	p.report = hooks{done: func(_ *watchdog.Incident, rs []Action) { got <- rs }}
	inc := &watchdog.Incident{ID: "t", Verdict: watchdog.VerdictLoop, Cgroup: "/ct", Version: 2}
	p.Open(inc)
	p.Open(inc) // a second open while one ladder runs is dropped
	rs := <-got
	cancel() // stops the reverter a raise starts
	p.Wait()
	select {
	case <-got:
		t.Fatal("two ladders ran for one cgroup")
	default:
	}
	return rs
}

func TestDryRunChangesNothing(t *testing.T) {
	h, proc, cgRoot, procRoot := fakeHost(t, "java")
	opts := DefaultOptions()
	opts.DryRun = true
	rs := runLadder(t, opts, h, proc)
	if len(rs) != 1 || rs[0].Name != ResetAdj || rs[0].Done || rs[0].PID != 4242 || !strings.Contains(rs[0].Detail, "dry-run") {
		t.Fatalf("results %+v, want one undone dry-run reset-adj of pid 4242", rs)
	}
	if b, _ := os.ReadFile(filepath.Join(procRoot, "4242/oom_score_adj")); string(b) != "-1000\n" {
		t.Fatalf("oom_score_adj changed to %q in dry-run", b)
	}
	if b, _ := os.ReadFile(filepath.Join(cgRoot, "ct/cgroup.freeze")); string(b) != "0\n" {
		t.Fatalf("cgroup.freeze changed to %q in dry-run", b)
	}
}

func TestExemptTaskEscalatesToFreeze(t *testing.T) {
	h, proc, cgRoot, procRoot := fakeHost(t, "containerd-shim")
	opts := DefaultOptions()
	opts.ExemptComm = []string{"containerd-shim*"}
	opts.FreezeTimeout = time.Second
	rs := runLadder(t, opts, h, proc)
	if len(rs) != 1 || rs[0].Name != Freeze || !rs[0].Done || !rs[0].Verified {
		t.Fatalf("results %+v, want a verified freeze", rs)
	}
	if b, _ := os.ReadFile(filepath.Join(cgRoot, "ct/cgroup.freeze")); strings.TrimSpace(string(b)) != "1" {
		t.Fatalf("cgroup.freeze = %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(procRoot, "4242/oom_score_adj")); string(b) != "-1000\n" {
		t.Fatalf("exempt task's oom_score_adj changed to %q", b)
	}
}

// On a fake /proc no pidfd can be had: reset-adj must refuse to act rather
// than write to a file that may not be the task's, and the ladder goes on.
func TestResetAdjRefusesWithoutPidfd(t *testing.T) {
	h, proc, _, procRoot := fakeHost(t, "java")
	opts := DefaultOptions()
	opts.Ladder = []string{ResetAdj}
	rs := runLadder(t, opts, h, proc)
	if len(rs) != 1 || rs[0].Done || rs[0].Error == "" {
		t.Fatalf("results %+v, want one refused reset", rs)
	}
	if b, _ := os.ReadFile(filepath.Join(procRoot, "4242/oom_score_adj")); string(b) != "-1000\n" {
		t.Fatalf("oom_score_adj changed to %q without a pidfd", b)
	}
}

func TestOutcomeIsContainedResolvedOrDryRun(t *testing.T) {
	if o := outcome([]Action{{Name: Freeze, Verified: true}}, false); o != "contained" {
		t.Fatal(o)
	}
	if o := outcome([]Action{{Name: ResetAdj, Verified: true}}, false); o != "resolved" {
		t.Fatal(o)
	}
	if o := outcome(nil, true); o != "dry-run" {
		t.Fatal(o)
	}
}

// spentPolicy is a policy on fakeHost whose rate limit allows one action
// per period and whose token is spent; finished ladders arrive on the
// channel.
func spentPolicy(t *testing.T, opts Options, period time.Duration) (*Policy, chan []Action, string, context.CancelFunc) {
	t.Helper()
	h, proc, cgRoot, _ := fakeHost(t, "java")
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	p, err := New(ctx, Config{CG: h, Proc: proc, Options: opts, MaxActionsPerMinute: 1}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	p.budget = newBudget(1, period)
	p.budget.take("/ct", false, time.Now())
	got := make(chan []Action, 1)
	p.report = hooks{done: func(_ *watchdog.Incident, rs []Action) { got <- rs }}
	return p, got, cgRoot, cancel
}

// A rung the global rate limit refuses waits for a token and then runs:
// the rate limit delays rungs, it never skips one. Here reset-adj (refused
// for want of a pidfd on the fake /proc, but only once it had its token)
// comes before freeze, one token every 200 ms.
func TestRateLimitedRungWaitsNotSkipped(t *testing.T) {
	opts := DefaultOptions()
	opts.FreezeTimeout = time.Second
	p, got, cgRoot, cancel := spentPolicy(t, opts, 200*time.Millisecond)
	inc := &watchdog.Incident{ID: "t", Verdict: watchdog.VerdictLoop, Cgroup: "/ct", Version: 2}
	p.Open(inc)
	rs := <-got
	if len(rs) != 2 || rs[0].Name != ResetAdj || rs[0].Error == "" || strings.Contains(rs[0].Error, "rate limited") ||
		rs[1].Name != Freeze || !rs[1].Done || !rs[1].Verified {
		t.Fatalf("results %+v, want reset-adj tried (refused without a pidfd), then a verified freeze", rs)
	}
	if b, _ := os.ReadFile(filepath.Join(cgRoot, "ct/cgroup.freeze")); strings.TrimSpace(string(b)) != "1" {
		t.Fatalf("cgroup.freeze = %q", b)
	}
	p.Resolved(inc, "test")
	cancel()
	p.Wait()
}

// A ladder waiting for the rate limit when its incident is resolved ends
// without acting, and, having changed nothing, starts no cooldown: the
// cgroup's next loop gets a ladder at once.
func TestRateLimitedLadderEndsWithIncident(t *testing.T) {
	opts := DefaultOptions()
	opts.Ladder = []string{Freeze}
	opts.FreezeTimeout = time.Second
	p, got, cgRoot, cancel := spentPolicy(t, opts, time.Minute) // the next token is a minute away
	first := &watchdog.Incident{ID: "t1", Verdict: watchdog.VerdictLoop, Cgroup: "/ct", Version: 2}
	p.Open(first)
	time.Sleep(50 * time.Millisecond) // the ladder is waiting for a token (60 s away)
	p.Resolved(first, "no OOM")
	var rs []Action
	select {
	case rs = <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("the ladder kept waiting after its incident was resolved")
	}
	if len(rs) != 1 || rs[0].Done || !strings.Contains(rs[0].Error, "rate limited") {
		t.Fatalf("results %+v, want one refused freeze", rs)
	}
	if b, _ := os.ReadFile(filepath.Join(cgRoot, "ct/cgroup.freeze")); string(b) != "0\n" {
		t.Fatalf("cgroup.freeze = %q after a refused ladder", b)
	}
	p.budget = newBudget(1, time.Minute) // a fresh token
	second := &watchdog.Incident{ID: "t2", Verdict: watchdog.VerdictLoop, Cgroup: "/ct", Version: 2}
	p.Open(second)
	select {
	case rs = <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("no ladder for the next loop: a refused ladder started the cooldown")
	}
	if len(rs) != 1 || !rs[0].Done || !rs[0].Verified {
		t.Fatalf("second ladder %+v, want a verified freeze", rs)
	}
	p.Resolved(second, "test")
	cancel()
	p.Wait()
}

// A restarted policy reports the cgroups a previous one froze that are
// still frozen, and forgets those thawed since.
func TestFrozenCgroupsReportedAfterRestart(t *testing.T) {
	h, proc, cgRoot, _ := fakeHost(t, "java")
	state := t.TempDir()
	opts := DefaultOptions()
	opts.Ladder = []string{Freeze}
	ctx, cancel := context.WithCancel(context.Background())
	p, err := New(ctx, Config{CG: h, Proc: proc, Options: opts, StateDir: state}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan []Action, 1)
	p.report = hooks{done: func(_ *watchdog.Incident, rs []Action) { got <- rs }}
	p.Open(&watchdog.Incident{ID: "f1", Verdict: watchdog.VerdictLoop, Cgroup: "/ct", Version: 2})
	if rs := <-got; len(rs) != 1 || !rs[0].Verified {
		t.Fatalf("freeze: %+v", rs)
	}
	cancel()
	p.Wait()

	var logs strings.Builder
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	if _, err := New(ctx2, Config{CG: h, Proc: proc, Options: opts, StateDir: state}, zerolog.New(&logs)); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), `"event":"still_frozen"`) || !strings.Contains(logs.String(), `"cgroup":"/ct"`) {
		t.Fatalf("restart did not report the frozen cgroup: %s", logs.String())
	}
	// Thawed meanwhile (this fake kernel: cgroup.freeze 0, frozen 0): forgotten.
	if err := os.WriteFile(filepath.Join(cgRoot, "ct/cgroup.freeze"), []byte("0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cgRoot, "ct/cgroup.events"), []byte("populated 1\nfrozen 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	logs.Reset()
	if _, err := New(ctx2, Config{CG: h, Proc: proc, Options: opts, StateDir: state}, zerolog.New(&logs)); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs.String(), "still_frozen") {
		t.Fatalf("a thawed cgroup was reported: %s", logs.String())
	}
	if b, _ := os.ReadFile(filepath.Join(state, frozenFile)); strings.TrimSpace(string(b)) != "[]" {
		t.Fatalf("frozen.json after the thaw: %s", b)
	}
}

// Seen from a private cgroup namespace PID 1's cgroup reads "/../..": where
// it is cannot be told, so freeze refuses rather than risk freezing it.
func TestFreezeRefusedWhenPID1OutsideNamespace(t *testing.T) {
	h, proc, cgRoot, procRoot := fakeHost(t, "containerd-shim")
	if err := os.WriteFile(filepath.Join(procRoot, "1/cgroup"), []byte("0::/../..\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	opts := DefaultOptions()
	opts.ExemptComm = []string{"containerd-shim*"}
	opts.FreezeTimeout = time.Second
	rs := runLadder(t, opts, h, proc)
	if len(rs) != 1 || rs[0].Name != Freeze || rs[0].Done || !strings.Contains(rs[0].Error, `PID 1's cgroup reads "/../.."`) {
		t.Fatalf("results %+v, want a refused freeze", rs)
	}
	if b, _ := os.ReadFile(filepath.Join(cgRoot, "ct/cgroup.freeze")); string(b) != "0\n" {
		t.Fatalf("cgroup.freeze changed to %q", b)
	}
}

// The reports of one incident come in lifecycle order, whatever the timing:
// a resolution that arrives while the ladder runs is reported after the
// ladder's end, never between its actions.
func TestReportsComeInLifecycleOrder(t *testing.T) {
	h, proc, _, _ := fakeHost(t, "java")
	opts := DefaultOptions()
	opts.Ladder = []string{ResetAdj, Freeze} // reset-adj fails (no such process), freeze succeeds
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p, err := New(ctx, Config{CG: h, Proc: proc, Options: opts}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var steps []string
	step := func(s string) { mu.Lock(); steps = append(steps, s); mu.Unlock() }
	resolved := make(chan struct{})
	var inc *watchdog.Incident
	p.report = lifecycle{
		// The resolution arrives while the ladder runs, right before its
		// freeze.
		pending: func(a Action) {
			if a.Name == Freeze {
				p.Resolved(inc, "no more OOMs")
			}
		},
		hooks: hooks{
			opened:   func(*watchdog.Incident) { step("opened") },
			done:     func(*watchdog.Incident, []Action) { step("ladder_done") },
			resolved: func(_ *watchdog.Incident, why string) { step("resolved: " + why); close(resolved) },
		},
		step: step,
	}
	inc = &watchdog.Incident{ID: "t", Verdict: watchdog.VerdictLoop, Cgroup: "/ct", Version: 2}
	p.Open(inc)
	select {
	case <-resolved:
	case <-time.After(10 * time.Second):
		t.Fatal("the resolution was never reported")
	}
	p.Wait()
	want := []string{"opened", "action reset-adj", "action pending freeze", "action freeze", "ladder_done", "resolved: no more OOMs"}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(steps, want) {
		t.Fatalf("steps %q, want %q", steps, want)
	}

	// An incident without a ladder (stalled) is resolved at once.
	steps = nil
	mu.Unlock()
	resolved = make(chan struct{})
	stalled := &watchdog.Incident{ID: "s", Verdict: watchdog.VerdictStalled, Cgroup: "/ct", Version: 2}
	p.Open(stalled)
	p.Resolved(stalled, "gone")
	<-resolved
	mu.Lock()
	if want := []string{"opened", "resolved: gone"}; !slices.Equal(steps, want) {
		t.Fatalf("stalled: steps %q, want %q", steps, want)
	}
}

// lifecycle records actions, pending ones too.
type lifecycle struct {
	hooks
	step    func(string)
	pending func(Action)
}

func (l lifecycle) Action(_ *watchdog.Incident, a Action) {
	if a.Pending {
		l.step("action pending " + a.Name)
		l.pending(a)
		return
	}
	l.step("action " + a.Name)
}
