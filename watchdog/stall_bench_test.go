package watchdog

import (
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/oomwatch/oomwatch/eventfd"
	"github.com/oomwatch/oomwatch/internal/cgroupfs"
	"github.com/oomwatch/oomwatch/internal/procfs"
	"github.com/oomwatch/oomwatch/test/benchrow"
	"github.com/oomwatch/oomwatch/test/testhost"
)

// The stall benchmarks: how long one turn of the event loop takes (what
// /healthz's "event loop busy" and the systemd watchdog see, and how long
// every other cgroup's notification waits) when a v1 OOM at a parent with
// stallKids descendants notifies all of them, and under cgroup churn.
const (
	stallKids   = 2000
	stallTarget = 10 // ms, the longest turn
	// epollBatch is eventfd's maxEpollEvents: the v1 notifications one
	// wait returns at most.
	epollBatch = 128
)

// busySampler records the longest loop turn as Stats().BusySince shows it,
// sampled every 100 µs: a lower bound, short by at most one interval.
type busySampler struct {
	stop chan struct{}
	done chan struct{}
	max  atomic.Int64
}

func sampleBusy(w *Watchdog) *busySampler {
	s := &busySampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for {
			select {
			case <-s.stop:
				return
			default:
			}
			if b := w.Stats().BusySince; !b.IsZero() {
				if d := int64(time.Since(b)); d > s.max.Load() {
					s.max.Store(d)
				}
			}
			time.Sleep(100 * time.Microsecond)
		}
	}()
	return s
}

// end stops the sampler and returns the longest turn seen in ms.
func (s *busySampler) end() float64 {
	close(s.stop)
	<-s.done
	return float64(s.max.Load()) / 1e6
}

func stallRow(b *testing.B, m, scenario, metric string, v float64, note string) benchrow.Row {
	return benchrow.Row{Measurement: m, Scenario: scenario, Method: benchrow.Oomwatch, Metric: metric, Value: v, Unit: "ms",
		Bench: b.Name(), Note: note}.AtMost(stallTarget)
}

// BenchmarkNotificationStallHostV1: real v1 cgroups on the host. A parent
// with stallKids children (created after oom_kill_disable=1, so they
// inherit it) among filler cgroups up to the size, all watched by the real
// watchdog through real eventfds; a hog stalls under_oom in the parent, so
// the kernel signals all 2,001 eventfds. Then 1,000 mkdir and 1,000 rmdir
// per second (each cgroup lives 1 s) for OOMWATCH_STALL_CHURN (5 s). The
// size is 20,000 watched cgroups or what RLIMIT_NOFILE's hard limit allows
// (one eventfd per cgroup; raising it needs CAP_SYS_RESOURCE).
func BenchmarkNotificationStallHostV1(b *testing.B) {
	root := testhost.V1Root(b)
	churnFor := 5 * time.Second
	if s := os.Getenv("OOMWATCH_STALL_CHURN"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			b.Fatalf("OOMWATCH_STALL_CHURN=%q: %v", s, err)
		}
		churnFor = d
	}
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		b.Fatal(err)
	}
	old := rl
	rl.Cur = rl.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old) })
	size := min(20000, int(rl.Max)-1200) // the churn's cgroups, the test binary's own fds
	if n := memcgCount(b) + size + 1200; n > memcgIDMax {
		b.Fatalf("%d memory cgroups exist; %d more do not fit the %d memory cgroup IDs", memcgCount(b), size+1200, memcgIDMax)
	}

	base := filepath.Join(root, fmt.Sprintf("oomwatch-bench-stall-%d-%d", os.Getpid(), time.Now().UnixNano()))
	b.Cleanup(func() {
		if _, err := rmCgroupTree(base, floodWorkers); err != nil {
			b.Errorf("cleanup: %v", err)
		}
	})
	parent := filepath.Join(base, "parent")
	for _, d := range []string{base, parent, filepath.Join(base, "churn")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			b.Fatal(err)
		}
	}
	testhost.MakeStalling(b, parent, 33554432)
	start := time.Now()
	for i := 0; i < stallKids; i++ {
		if err := syscall.Mkdir(filepath.Join(parent, fmt.Sprintf("c%04d", i)), 0o755); err != nil {
			b.Fatal(err)
		}
	}
	filler := size - stallKids - 3 // "/", parent, churn
	dirs := (filler + 1000) / 1001 // each holding up to 1,000 leaves
	for i := 0; i < dirs; i++ {
		if err := os.Mkdir(filepath.Join(base, fmt.Sprintf("f%02d", i)), 0o755); err != nil {
			b.Fatal(err)
		}
	}
	for i := 0; i < filler-dirs; i++ {
		if err := syscall.Mkdir(filepath.Join(base, fmt.Sprintf("f%02d", i/1000), fmt.Sprintf("c%04d", i%1000)), 0o755); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("created %d cgroups in %v", size-1, time.Since(start).Round(time.Millisecond))

	h, err := cgroupfs.Open(base, "")
	if err != nil || h.Version != 1 {
		b.Fatalf("open %s: %+v %v", base, h, err)
	}
	rec := newRecorder()
	ready := make(chan int, 1)
	w, err := New(Config{CG: h, Proc: procfs.New("/proc"), Detector: DefaultParams, ResolveAfter: 200 * time.Millisecond,
		Ready: func(n int) { ready <- n }}, rec, zerolog.Nop())
	if err != nil {
		b.Fatal(err)
	}
	startRun(b, w)
	watched := <-ready
	time.Sleep(time.Second) // the arm's own inotify echoes

	scenario := fmt.Sprintf("v1 host %s (real cgroups), %d watched", benchrow.Machine().Kernel, watched)
	s := sampleBusy(w)
	ev0 := w.Stats().Events
	hog := testhost.StartHog(b, filepath.Join(parent, "cgroup.procs"), 64)
	rec.waitFor(b, "the paused incident", func() bool { return len(rec.opened) >= 1 })
	rec.waitFor(b, "every descendant's notification", func() bool { return w.Stats().Events-ev0 >= stallKids+1 })
	time.Sleep(500 * time.Millisecond) // rechecks settle at 100 ms
	oomStall := s.end()
	rec.mu.Lock()
	incidents := len(rec.opened)
	rec.mu.Unlock()
	hog.Kill()
	rec.waitFor(b, "the paused incident resolved", func() bool { return len(rec.resolved) >= 1 })

	s = sampleBusy(w)
	made, removed := churn(b, filepath.Join(base, "churn"), churnFor)
	time.Sleep(500 * time.Millisecond)
	churnStall := s.end()
	b.Logf("%s: OOM at a parent of %d: longest turn %.2f ms, %d incident(s); churn %d mkdir, %d rmdir in %v: longest turn %.2f ms",
		scenario, stallKids, oomStall, incidents, made, removed, churnFor, churnStall)
	benchrow.Emit(
		stallRow(b, benchrow.Scale, scenario+fmt.Sprintf(", OOM at a parent of %d", stallKids), "longest loop turn", oomStall,
			fmt.Sprintf("real under_oom pause, %d eventfds signalled; sampled BusySince; %d incident(s)", stallKids+1, incidents)),
		stallRow(b, benchrow.Churn, scenario+fmt.Sprintf(", %d mkdir + %d rmdir in %v", made, removed, churnFor), "longest loop turn", churnStall,
			"each cgroup alive 1 s; sampled BusySince"))
	b.ReportMetric(oomStall, "oom-turn-ms")
	b.ReportMetric(churnStall, "churn-turn-ms")
}

// churn creates 1,000 cgroups per second under dir and removes each 1 s
// after its creation, for d; everything it made is gone when it returns.
func churn(b *testing.B, dir string, d time.Duration) (made, removed int) {
	var alive []string
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	for time.Since(start) < d {
		<-tick.C
		for want := int(time.Since(start) / time.Millisecond); made < want; made++ {
			p := filepath.Join(dir, fmt.Sprintf("k%d", made))
			if err := syscall.Mkdir(p, 0o755); err != nil {
				b.Fatal(err)
			}
			alive = append(alive, p)
		}
		for len(alive) > 1000 {
			if err := syscall.Rmdir(alive[0]); err != nil {
				b.Fatal(err)
			}
			alive, removed = alive[1:], removed+1
		}
	}
	for _, p := range alive {
		if err := syscall.Rmdir(p); err != nil {
			b.Fatal(err)
		}
		removed++
	}
	return made, removed
}

// BenchmarkNotificationStallFakeV1: the same OOM at 20,000 and 65,536
// watched cgroups, beyond what real v1 cgroups allow here (65,535 memory
// cgroup IDs system-wide, one eventfd per cgroup under a 20,000-fd hard
// limit). The tree is fake (files on disk); the watchdog is armed on it
// for real and given the notifications the kernel would send, in batches
// of epoll's 128, each batch one loop turn (turn), then the rechecks. The
// parent stalls (oom_kill_disable 1, under_oom 1, inherited by its
// children) as in the host benchmark.
func BenchmarkNotificationStallFakeV1(b *testing.B) {
	var rows []benchrow.Row
	for _, size := range []int{20000, 65536} {
		root := b.TempDir()
		writeV1Cgroup(b, root, 0)
		kids := []eventfd.Event{{Key: "/parent", Kind: eventfd.OOM, Count: 1}}
		writeV1Stalling(b, filepath.Join(root, "parent"))
		for i := 0; i < stallKids; i++ {
			c := fmt.Sprintf("/parent/c%04d", i)
			writeV1Stalling(b, filepath.Join(root, c))
			kids = append(kids, eventfd.Event{Key: c, Kind: eventfd.OOM, Count: 1})
		}
		filler := size - stallKids - 2 // "/", parent
		dirs := (filler + 1000) / 1001 // each holding up to 1,000 leaves
		for i := 0; i < dirs; i++ {
			writeV1Cgroup(b, filepath.Join(root, fmt.Sprintf("f%02d", i)), 0)
		}
		for i := 0; i < filler-dirs; i++ {
			writeV1Cgroup(b, filepath.Join(root, fmt.Sprintf("f%02d", i/1000), fmt.Sprintf("c%04d", i%1000)), 0)
		}
		var inc countHandler
		w, err := New(Config{CG: cgroupfs.Hierarchy{Version: 1, Root: root}, Proc: procfs.New(b.TempDir()), Detector: DefaultParams},
			&inc, zerolog.Nop())
		if err != nil {
			b.Fatal(err)
		}
		armFake(b, w)
		watched := len(w.cgroups)

		var longest, total time.Duration
		turns := 0
		measure := func(now time.Time, evs []eventfd.Event) {
			t0 := time.Now()
			w.turn(now, evs, t0)
			d := time.Since(t0)
			longest, total, turns = max(longest, d), total+d, turns+1
		}
		now := time.Now()
		for i := 0; i < len(kids); i += epollBatch {
			measure(now, kids[i:min(i+epollBatch, len(kids))])
		}
		later := now.Add(2 * settleV1)
		for len(w.rechecks) > 0 && turns < 10000 {
			measure(later, nil)
		}
		incidents := inc.opened.Load()
		scenario := fmt.Sprintf("v1 fake tree (notifications injected), %d watched, OOM at a parent of %d", watched, stallKids)
		b.Logf("%s: longest turn %.2f ms, %d turns, %.1f ms in all, %d incident(s)", scenario,
			float64(longest)/1e6, turns, float64(total)/1e6, incidents)
		rows = append(rows, stallRow(b, benchrow.Scale, scenario, "longest loop turn", float64(longest)/1e6,
			fmt.Sprintf("%d turns, %.1f ms in all, %d incident(s)", turns, float64(total)/1e6, incidents)))
		b.ReportMetric(float64(longest)/1e6, fmt.Sprintf("turn-ms-%d", size))
	}
	benchrow.Emit(rows...)
}

// writeV1Stalling is writeV1Cgroup for a cgroup stalled under_oom with
// oom_kill_disable=1.
func writeV1Stalling(b *testing.B, dir string) {
	writeV1Cgroup(b, dir, 0)
	if err := os.WriteFile(filepath.Join(dir, "memory.oom_control"), []byte("oom_kill_disable 1\nunder_oom 1\noom_kill 0\n"), 0o644); err != nil {
		b.Fatal(err)
	}
}

// countHandler counts incidents without ever blocking the loop.
type countHandler struct{ opened, resolved atomic.Int64 }

func (c *countHandler) Open(*Incident)             { c.opened.Add(1) }
func (c *countHandler) Resolved(*Incident, string) { c.resolved.Add(1) }

// BenchmarkOverflowRescanStallFakeV1: the rescan after an inotify queue
// overflow at 20,000 and 65,536 watched cgroups (a fake tree, as
// BenchmarkNotificationStallFakeV1) with 1,000 cgroups created unseen: the
// longest loop turn, the turns the rescan is spread over and its total.
func BenchmarkOverflowRescanStallFakeV1(b *testing.B) {
	var rows []benchrow.Row
	for _, size := range []int{20000, 65536} {
		root := b.TempDir()
		writeV1Cgroup(b, root, 0)
		const missed = 1000
		dirs := (size + 1000) / 1001
		for i := 0; i < dirs; i++ {
			writeV1Cgroup(b, filepath.Join(root, fmt.Sprintf("f%02d", i)), 0)
		}
		for i := 0; i < size-dirs-1-missed; i++ {
			writeV1Cgroup(b, filepath.Join(root, fmt.Sprintf("f%02d", i/1000), fmt.Sprintf("c%04d", i%1000)), 0)
		}
		w, err := New(Config{CG: cgroupfs.Hierarchy{Version: 1, Root: root}, Proc: procfs.New(b.TempDir()), Detector: DefaultParams},
			&countHandler{}, zerolog.Nop())
		if err != nil {
			b.Fatal(err)
		}
		armFake(b, w)
		for i := 0; i < missed; i++ {
			writeV1Cgroup(b, filepath.Join(root, fmt.Sprintf("f%02d", i%dirs), fmt.Sprintf("new%04d", i)), 0)
		}
		var longest, total time.Duration
		turns := 0
		now := time.Now()
		evs := []eventfd.Event{{Kind: eventfd.Overflow}}
		for turns == 0 || len(w.rescan) > 0 && turns < 1000000 {
			t0 := time.Now()
			w.turn(now, evs, t0)
			d := time.Since(t0)
			longest, total, turns, evs = max(longest, d), total+d, turns+1, nil
		}
		scenario := fmt.Sprintf("v1 fake tree, inotify overflow at %d watched, %d created unseen", len(w.cgroups)-missed, missed)
		b.Logf("%s: longest turn %.2f ms, %d turns, %.1f ms in all, %d watched after", scenario,
			float64(longest)/1e6, turns, float64(total)/1e6, len(w.cgroups))
		rows = append(rows, stallRow(b, benchrow.Scale, scenario, "longest loop turn", float64(longest)/1e6,
			fmt.Sprintf("%d turns, %.1f ms in all", turns, float64(total)/1e6)))
		b.ReportMetric(float64(longest)/1e6, fmt.Sprintf("turn-ms-%d", size))
	}
	benchrow.Emit(rows...)
}
