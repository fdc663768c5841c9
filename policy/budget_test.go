package policy

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/oomwatch/oomwatch/test/testhost"
	"github.com/oomwatch/oomwatch/watchdog"
)

// fakeClock is a clock that moves only when told to.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// events counts the lines of event in a JSON log.
func events(logs *testhost.SyncBuf, event string) int {
	return strings.Count(logs.String(), `"event":"`+event+`"`)
}

// addFreezable adds a v2 cgroup to a fakeHost tree that this fake kernel
// freezes at once.
func addFreezable(t testing.TB, cgRoot, cg string) {
	t.Helper()
	dir := filepath.Join(cgRoot, cg)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]string{
		"cgroup.procs": "", "memory.events": "oom 50\noom_kill 0\n", "memory.max": "20971520\n",
		"cgroup.freeze": "0\n", "cgroup.events": "populated 1\nfrozen 1\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// ladders records finished ladders and the order of the actions done.
type ladders struct {
	mu    sync.Mutex
	done  map[string][]Action // cgroup → the ladder's results
	acted []string            // cgroups, in the order their actions were done
}

func watchLadders(p *Policy) *ladders {
	l := &ladders{done: map[string][]Action{}}
	p.report = hooks{
		action: func(inc *watchdog.Incident, r Action) {
			if r.Done {
				l.mu.Lock()
				l.acted = append(l.acted, inc.Cgroup)
				l.mu.Unlock()
			}
		},
		done: func(inc *watchdog.Incident, rs []Action) {
			l.mu.Lock()
			l.done[inc.Cgroup] = rs
			l.mu.Unlock()
		},
	}
	return l
}

func (l *ladders) finished(cg string) ([]Action, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	rs, ok := l.done[cg]
	return rs, ok
}

func (l *ladders) order() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.acted)
}

func loopAt(cg string) *watchdog.Incident {
	return &watchdog.Incident{ID: "inc" + strings.ReplaceAll(cg, "/", "-"), Verdict: watchdog.VerdictLoop, Cgroup: cg, Version: 2}
}

// freezeRig is a policy on a fakeHost tree with the given cgroups added
// (addFreezable), ladder [freeze], maxActions a minute (0: the default),
// its log in logs and its ladders watched.
type freezeRig struct {
	p      *Policy
	l      *ladders
	logs   *testhost.SyncBuf
	cancel context.CancelFunc
}

func newFreezeRig(t testing.TB, maxActions int, cgs ...string) freezeRig {
	t.Helper()
	h, proc, cgRoot, _ := fakeHost(t, "java")
	for _, cg := range cgs {
		addFreezable(t, cgRoot, cg)
	}
	opts := DefaultOptions()
	opts.Ladder = []string{Freeze}
	r := freezeRig{logs: &testhost.SyncBuf{}}
	var ctx context.Context
	ctx, r.cancel = context.WithCancel(context.Background())
	t.Cleanup(r.cancel)
	var err error
	r.p, err = New(ctx, Config{CG: h, Proc: proc, Options: opts, MaxActionsPerMinute: maxActions}, zerolog.New(r.logs))
	if err != nil {
		t.Fatal(err)
	}
	r.l = watchLadders(r.p)
	return r
}

// stop ends the waiting ladders and waits for them.
func (r freezeRig) stop() {
	r.cancel()
	r.p.Wait()
}

// A tenant whose 100 loops (each in a fresh cgroup of its container) all
// want an action at once takes its subtree's share of the budget and waits
// for the rest; another container's loop arriving after them is acted on at
// once. The clock stands still: no token comes back during the test, so
// "at once" means out of the budget left, not a race won.
func TestTenantLoopsDoNotStarveAnotherContainer(t *testing.T) {
	var tenant []string
	for i := 0; i < 100; i++ {
		tenant = append(tenant, fmt.Sprintf("/lxc/tenant/loop%03d", i))
	}
	r := newFreezeRig(t, 0, append(tenant, "/lxc/other")...)
	r.p.now = newFakeClock().Now
	for _, cg := range tenant {
		r.p.Open(loopAt(cg))
	}
	waitUntil(t, "every tenant ladder acted or waiting", func() bool { return len(r.l.order())+events(r.logs, "rate_limited") == 100 })
	tenantActs := len(r.l.order())

	r.p.Open(loopAt("/lxc/other"))
	waitUntil(t, "the other container's ladder (it waits behind the tenant's loops)", func() bool {
		_, ok := r.l.finished("/lxc/other")
		return ok
	})
	rs, _ := r.l.finished("/lxc/other")
	if len(rs) != 1 || !rs[0].Done || !rs[0].Verified {
		t.Fatalf("other container's ladder %+v, want a verified freeze", rs)
	}
	// The default 30 a minute, a third of it per subtree.
	if want := 10; tenantActs != want {
		t.Errorf("the tenant's loops got %d actions at once, want its subtree's share %d", tenantActs, want)
	}
	r.stop()
}

// Actions waiting for the rate limit are served in the order they began to
// wait: a token that comes back goes to the first waiter, not to a ladder
// that asks for it later (here: the same container's next loop).
func TestRateLimitWaitersServedInOrder(t *testing.T) {
	r := newFreezeRig(t, 1, "/lxc/t/a", "/lxc/t/b", "/lxc/t/c")
	clock := newFakeClock()
	r.p.now = clock.Now
	r.p.Open(loopAt("/lxc/t/a"))
	waitUntil(t, "the first ladder", func() bool { _, ok := r.l.finished("/lxc/t/a"); return ok })
	r.p.Open(loopAt("/lxc/t/b"))
	waitUntil(t, "the second ladder waiting", func() bool { return events(r.logs, "rate_limited") == 1 })
	clock.Advance(time.Minute) // one token back
	r.p.Open(loopAt("/lxc/t/c"))
	waitUntil(t, "the waiting ladder served first", func() bool { _, ok := r.l.finished("/lxc/t/b"); return ok })
	waitUntil(t, "the later ladder waiting", func() bool { return events(r.logs, "rate_limited") == 2 })
	if got, want := r.l.order(), []string{"/lxc/t/a", "/lxc/t/b"}; !slices.Equal(got, want) {
		t.Fatalf("actions done in the order %v, want %v", got, want)
	}
	r.stop()
}

// The cooldown's memory of finished ladders keeps only the cgroups still in
// their cooldown: a tenant looping in ever new cgroups cannot grow it.
func TestLastDoneBounded(t *testing.T) {
	r := newFreezeRig(t, 0) // ladders on cgroups that do not exist: each ends at once
	clock := newFakeClock()
	r.p.now = clock.Now
	done := make(chan struct{}, 1)
	r.p.report = hooks{done: func(*watchdog.Incident, []Action) { done <- struct{}{} }}
	const n = 1000
	for i := 0; i < n; i++ {
		clock.Advance(time.Second)
		r.p.Open(loopAt(fmt.Sprintf("/fresh%04d", i)))
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("ladder %d did not end", i)
		}
	}
	r.p.mu.Lock()
	kept := len(r.p.lastDone)
	r.p.mu.Unlock()
	// 30 s cooldown, one ladder a second: 30 still cooling down, plus what
	// accumulates between two sweeps.
	if kept > 100 {
		t.Errorf("%d cgroups remembered after %d ladders one second apart, want at most 100 (30 in their cooldown)", kept, n)
	}
	r.p.Open(loopAt(fmt.Sprintf("/fresh%04d", n-1)))
	if events(r.logs, "cooldown") != 1 {
		t.Errorf("the last cgroup's next loop was not held back by its cooldown")
	}
	r.stop()
}

// The budget's order, step by step on a still clock: waiters of one subtree
// in the order they came, subtrees taking turns one action each.
func TestBudgetOrder(t *testing.T) {
	now := newFakeClock().Now()
	b := newBudget(3, time.Minute) // share 1; one token every 20 s
	take := func(cg string) bool { ok, _ := b.take(cg, true, now); return ok }
	if !take("/lxc/a/x") || !take("/lxc/b/x") || !take("/lxc/c/x") {
		t.Fatal("three subtrees, three tokens: each should get one")
	}
	// Subtree a queues three actions, then b one, then a a fourth.
	var ws []*waiter
	for _, cg := range []string{"/lxc/a/1", "/lxc/a/2", "/lxc/a/3", "/lxc/b/1", "/lxc/a/4"} {
		if take(cg) {
			t.Fatalf("%s got a token from an empty budget", cg)
		}
		ws = append(ws, b.enqueue(cg, now))
	}
	var served []string
	for i := 0; i < 5; i++ {
		// Two tokens back a minute on: only the first subtree in turn can
		// use its own (share 1), the other goes to the next subtree in turn.
		now = now.Add(20 * time.Second)
		for _, w := range ws {
			if _, ok := b.poll(w, now); ok && !slices.Contains(served, w.cg) {
				served = append(served, w.cg)
				if !take(w.cg) {
					t.Fatalf("%s was granted a token it cannot spend", w.cg)
				}
			}
		}
	}
	if want := []string{"/lxc/a/1", "/lxc/b/1", "/lxc/a/2", "/lxc/a/3", "/lxc/a/4"}; !slices.Equal(served, want) {
		t.Fatalf("served %v, want %v", served, want)
	}
	// A newcomer does not jump a queue: with a token back, it goes to the
	// subtree's waiter.
	w := b.enqueue("/lxc/a/5", now)
	now = now.Add(time.Minute)
	if take("/lxc/a/6") {
		t.Fatal("a newcomer took the token its subtree's waiter was owed")
	}
	if _, ok := b.poll(w, now); !ok {
		t.Fatal("the waiter did not get the token that came back")
	}
	// A granted token the rung did not use goes back; so does a cancelled
	// grant.
	b.release("/lxc/a/5", now)
	if !take("/lxc/a/6") {
		t.Fatal("a released token was not given back")
	}
}

// The budget's memory: subtrees whose bucket is full again are forgotten,
// and beyond maxTracked subtrees in use, the others share one budget.
func TestBudgetBounded(t *testing.T) {
	now := newFakeClock().Now()
	b := newBudget(100000, time.Minute)
	b.max = 100
	for i := 0; i < 10000; i++ {
		now = now.Add(time.Second) // a full refill of a share (33,333) takes 20 s
		if ok, why := b.take(fmt.Sprintf("/lxc/t%d/x", i), true, now); !ok {
			t.Fatalf("take %d: %s", i, why)
		}
	}
	if n := len(b.subtrees); n > 64 {
		t.Fatalf("%d subtrees tracked, want the idle ones forgotten (at most 64 between sweeps)", n)
	}
	if b.capReached() {
		t.Fatal("the cap was reported while idle subtrees could be forgotten")
	}
	// One subtree that acted and 100 with a waiter: none can be forgotten,
	// the 100th waiter's subtree shares the overflow budget.
	b = newBudget(1, time.Hour)
	b.max = 100
	b.take("/lxc/first/x", true, now)
	var ws []*waiter
	for i := 0; i < 100; i++ {
		ws = append(ws, b.enqueue(fmt.Sprintf("/lxc/w%d/x", i), now))
	}
	if n := len(b.subtrees); n != 100 {
		t.Fatalf("%d subtrees tracked, want the cap 100", n)
	}
	if !b.capReached() || b.capReached() {
		t.Fatal("the cap is reported once")
	}
	if ws[98].sub.key != "/lxc/w98" || ws[99].sub.key != overflowKey {
		t.Fatalf("subtrees %s and %s, want /lxc/w98 and the overflow", ws[98].sub.key, ws[99].sub.key)
	}
	// The overflow waits its turn like any subtree.
	now = now.Add(time.Hour)
	for i, w := range ws {
		if _, ok := b.poll(w, now); ok != (i == 0) {
			t.Fatalf("waiter %d granted %v after one token", i, ok)
		}
	}
}

// A loop that starts again within its cgroup's cooldown (the workload
// restarted and loops once more) gets its ladder when the cooldown ends:
// the incident stays open, so nothing else would start one, and the loop
// would go on for ever. Resolved within the cooldown, it gets none.
func TestLoopInTheCooldownIsActedOnWhenItEnds(t *testing.T) {
	r := newFreezeRig(t, 0, "/lxc/web", "/lxc/db")
	r.p.cfg.Options.Cooldown = 300 * time.Millisecond
	r.p.Open(loopAt("/lxc/web"))
	waitUntil(t, "the first ladder", func() bool { _, ok := r.l.finished("/lxc/web"); return ok })
	again := loopAt("/lxc/web")
	again.ID = "again"
	t0 := time.Now()
	r.p.Open(again)
	if events(r.logs, "cooldown") != 1 {
		t.Fatalf("no event=cooldown for a loop 0 s after the last ladder:\n%s", r.logs.String())
	}
	waitUntil(t, "the second ladder, once the cooldown ended", func() bool { return len(r.l.order()) == 2 })
	if d := time.Since(t0); d < 250*time.Millisecond {
		t.Errorf("second ladder after %v, inside the 300 ms cooldown", d)
	}

	r.p.Open(loopAt("/lxc/db"))
	waitUntil(t, "db's first ladder", func() bool { return len(r.l.order()) == 3 })
	waitUntil(t, "db's ladder done", func() bool { _, ok := r.l.finished("/lxc/db"); return ok })
	db := loopAt("/lxc/db")
	db.ID = "db-again"
	r.p.Open(db)
	r.p.Resolved(db, "test") // the loop ended by itself within the cooldown
	time.Sleep(500 * time.Millisecond)
	if n := len(r.l.order()); n != 3 {
		t.Errorf("%d actions: a loop resolved within the cooldown was acted on after it", n)
	}
	r.stop()
}
