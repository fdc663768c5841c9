package watchdog

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/oomwatch/oomwatch/internal/cgroupfs"
	"github.com/oomwatch/oomwatch/internal/procfs"
	"github.com/oomwatch/oomwatch/test/fixture"
	"github.com/oomwatch/oomwatch/test/testhost"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// writeProc writes the files procfs reads for one process of a fake /proc.
func writeProc(t testing.TB, root string, pid, ppid int, comm string, adj, rssKB int) {
	t.Helper()
	dir := filepath.Join(root, fmt.Sprint(pid))
	must(t, os.MkdirAll(dir, 0o755))
	files := map[string]string{
		"stat":          fixture.StatLine(pid, comm, 'S', ppid, 0),
		"status":        fmt.Sprintf("Name:\t%s\nState:\tS\nPid:\t%d\nPPid:\t%d\nUid:\t0\t0\t0\t0\nVmRSS:\t%d kB\n", comm, pid, ppid, rssKB),
		"cmdline":       comm + "\x00",
		"oom_score_adj": fmt.Sprintf("%d\n", adj),
		"oom_adj":       fmt.Sprintf("%d\n", adj*17/1000),
		"cgroup":        "0::/\n",
	}
	for name, c := range files {
		must(t, os.WriteFile(filepath.Join(dir, name), []byte(c), 0o644))
	}
}

// writeV2Root makes root a fake cgroup2 root with the memory controller
// and no task of its own.
func writeV2Root(t testing.TB, root string) {
	t.Helper()
	must(t, os.WriteFile(filepath.Join(root, "cgroup.controllers"), []byte("memory\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(root, "cgroup.procs"), nil, 0o644))
}

// writeCgroup creates a fake v2 cgroup with the given tasks and counters.
// Like mkdir on cgroupfs it appears with all its files at once: it is built
// aside and renamed into place. The parent must exist.
func writeCgroup(t testing.TB, root, cg string, limit string, pids ...int) {
	t.Helper()
	final := filepath.Join(root, cg)
	dir := filepath.Join(t.TempDir(), "stage")
	must(t, os.MkdirAll(dir, 0o755))
	defer func() { must(t, os.Rename(dir, final)) }()
	procs := ""
	for _, p := range pids {
		procs += fmt.Sprintf("%d\n", p)
	}
	must(t, os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(procs), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "memory.max"), []byte(limit+"\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "memory.current"), []byte("1000\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "cgroup.events"), []byte("populated 1\nfrozen 0\n"), 0o644))
	writeEvents(t, dir, 0, 0, 0)
}

// setEvents rewrites memory.events.local then memory.events, as the kernel
// would count an OOM charged to cg itself; the write raises IN_MODIFY.
func setEvents(t *testing.T, root, cg string, oom, kill, localOOM uint64) {
	t.Helper()
	writeEvents(t, filepath.Join(root, cg), oom, kill, localOOM)
}

func writeEvents(t testing.TB, dir string, oom, kill, localOOM uint64) {
	t.Helper()
	must(t, os.WriteFile(filepath.Join(dir, "memory.events.local"), fmt.Appendf(nil, "low 0\nhigh 0\nmax 0\noom %d\noom_kill %d\noom_group_kill 0\n", localOOM, kill), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "memory.events"), fmt.Appendf(nil, "low 0\nhigh 0\nmax 0\noom %d\noom_kill %d\noom_group_kill 0\n", oom, kill), 0o644))
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// startRun runs w until the test ends, then stops it and checks that Run
// returned without error.
func startRun(t testing.TB, w *Watchdog) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// waitBaselines waits until the v2 counters of the cgroups found at start-up
// are read (Stats().Baselining), so a test's first counter change is seen as
// a change, not taken as the baseline.
func waitBaselines(t *testing.T, w *Watchdog) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for w.Stats().Baselining > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d baselines still unread after 10s", w.Stats().Baselining)
		}
		time.Sleep(time.Millisecond)
	}
}

type recorder struct {
	mu       sync.Mutex
	opened   []*Incident
	resolved map[string]string
	ch       chan struct{}
}

func newRecorder() *recorder {
	return &recorder{resolved: map[string]string{}, ch: make(chan struct{}, 100)}
}

func (r *recorder) Open(inc *Incident) {
	r.mu.Lock()
	r.opened = append(r.opened, inc)
	r.mu.Unlock()
	r.ch <- struct{}{}
}

func (r *recorder) Resolved(inc *Incident, why string) {
	r.mu.Lock()
	r.resolved[inc.Cgroup] = why
	r.mu.Unlock()
	r.ch <- struct{}{}
}

// waitFor waits for cond, re-checking after every handler call; a missed
// condition fails after a generous deadline (correctness, not timing).
func (r *recorder) waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		r.mu.Lock()
		ok := cond()
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-r.ch:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func TestWatchdogFakeV2(t *testing.T) {
	cgRoot, procRoot := t.TempDir(), t.TempDir()
	must(t, os.WriteFile(filepath.Join(cgRoot, "cgroup.controllers"), []byte("memory pids\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(cgRoot, "cgroup.procs"), []byte("1\n"), 0o644))
	writeProc(t, procRoot, 1, 0, "init", 0, 1000)
	writeProc(t, procRoot, 50, 1, "sshd", -1000, 2000)
	writeProc(t, procRoot, 60, 50, "bash", -1000, 3000)
	writeProc(t, procRoot, 100, 60, "java", -1000, 900000)
	writeProc(t, procRoot, 200, 1, "worker", 0, 5000)
	writeCgroup(t, cgRoot, "lxc", "max")
	writeCgroup(t, cgRoot, "lxc/web1", "20971520", 100)

	h, err := cgroupfs.Open(cgRoot, "")
	must(t, err)
	h.AnyFS = true
	rec := newRecorder()
	ready := make(chan int, 1)
	w, err := New(Config{CG: h, Proc: procfs.New(procRoot), Detector: DefaultParams, ResolveAfter: 300 * time.Millisecond,
		Ready: func(n int) { ready <- n }}, rec, zerolog.Nop())
	must(t, err)
	startRun(t, w)
	if n := <-ready; n != 3 {
		t.Fatalf("armed %d cgroups, want 3 (/, /lxc, /lxc/web1)", n)
	}
	waitBaselines(t, w)

	// A loop in /lxc/web1: OOMs charged to it (local rises), no kill.
	setEvents(t, cgRoot, "lxc/web1", 2, 0, 2)
	setEvents(t, cgRoot, "lxc/web1", 9, 0, 9)
	// The parent's hierarchical counters move too, but not its local ones.
	setEvents(t, cgRoot, "lxc", 9, 0, 0)
	rec.waitFor(t, "loop incident", func() bool { return len(rec.opened) >= 1 })
	inc := rec.opened[0]
	if inc.Verdict != VerdictLoop || inc.Cgroup != "/lxc/web1" || inc.Evidence.OOMs < 3 || inc.Evidence.Kills != 0 {
		t.Fatalf("incident %+v", inc)
	}
	if inc.Evidence.Limit != 20971520 || len(inc.Candidates) != 1 || inc.Candidates[0].PID != 100 {
		t.Fatalf("evidence %+v candidates %+v", inc.Evidence, inc.Candidates)
	}
	if inc.Origin == nil || inc.Origin.PID != 50 || inc.Origin.Comm != "sshd" || inc.Origin.ParentPID != 1 || inc.Origin.Depth != 2 {
		t.Fatalf("origin %+v, want sshd (pid 50) two generations up", inc.Origin)
	}

	// A cgroup created later is picked up without a rescan; a normal OOM
	// with a kill opens nothing.
	writeCgroup(t, cgRoot, "system.slice", "max")
	writeCgroup(t, cgRoot, "system.slice/app.service", "10485760", 200)
	rec.waitFor(t, "new cgroups watched", func() bool { return w.Stats().Watched == 5 })
	setEvents(t, cgRoot, "system.slice/app.service", 1, 1, 1)
	setEvents(t, cgRoot, "system.slice/app.service", 5, 1, 5)

	// Kill-less OOMs with a killable task: stalled.
	writeCgroup(t, cgRoot, "stuck", "10485760", 200)
	rec.waitFor(t, "stuck watched", func() bool { return w.Stats().Watched == 6 })
	setEvents(t, cgRoot, "stuck", 3, 0, 3)
	setEvents(t, cgRoot, "stuck", 8, 0, 8)
	rec.waitFor(t, "stalled incident", func() bool { return len(rec.opened) >= 2 })
	if got := rec.opened[1]; got.Verdict != VerdictStalled || got.Cgroup != "/stuck" {
		t.Fatalf("second incident %+v, want stalled /stuck", got)
	}

	// OOMs stop: the incidents resolve.
	rec.waitFor(t, "resolution", func() bool { return rec.resolved["/lxc/web1"] != "" && rec.resolved["/stuck"] != "" })

	// Removing a cgroup drops its watch.
	must(t, os.RemoveAll(filepath.Join(cgRoot, "system.slice")))
	rec.waitFor(t, "removed cgroups dropped", func() bool { return w.Stats().Watched == 4 })
	for _, inc := range rec.opened {
		if inc.Cgroup == "/system.slice/app.service" || inc.Cgroup == "/lxc" {
			t.Fatalf("unexpected incident %+v", inc)
		}
	}
}

func TestWatchdogMaxCgroups(t *testing.T) {
	cgRoot := t.TempDir()
	writeV2Root(t, cgRoot)
	for i := 0; i < 10; i++ {
		writeCgroup(t, cgRoot, fmt.Sprintf("c%d", i), "max")
	}
	h, err := cgroupfs.Open(cgRoot, "")
	must(t, err)
	ready := make(chan int, 1)
	w, err := New(Config{CG: h, Proc: procfs.New(t.TempDir()), Detector: DefaultParams, MaxCgroups: 4,
		Ready: func(n int) { ready <- n }}, newRecorder(), zerolog.Nop())
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	select {
	case n := <-ready:
		if n != 4 {
			t.Errorf("armed %d cgroups, want the bound 4", n)
		}
	case err := <-done:
		t.Fatalf("Run returned before ready: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// A v2 cgroup created before its parent enabled +memory has no
// memory.events at first; enabling the controller (a write to the parent's
// cgroup.subtree_control) must make the watchdog watch it.
func TestWatchdogMemoryEnabledLater(t *testing.T) {
	cgRoot, procRoot := t.TempDir(), t.TempDir()
	writeV2Root(t, cgRoot)
	must(t, os.WriteFile(filepath.Join(cgRoot, "cgroup.subtree_control"), nil, 0o644))
	writeProc(t, procRoot, 1, 0, "init", 0, 1000)
	writeProc(t, procRoot, 100, 1, "java", -1000, 9000)
	stage := filepath.Join(t.TempDir(), "web1")
	must(t, os.MkdirAll(stage, 0o755))
	must(t, os.WriteFile(filepath.Join(stage, "cgroup.procs"), []byte("100\n"), 0o644))
	must(t, os.Rename(stage, filepath.Join(cgRoot, "web1"))) // no memory files yet

	h, err := cgroupfs.Open(cgRoot, "")
	must(t, err)
	rec := newRecorder()
	ready := make(chan int, 1)
	w, err := New(Config{CG: h, Proc: procfs.New(procRoot), Detector: DefaultParams, Ready: func(n int) { ready <- n }}, rec, zerolog.Nop())
	must(t, err)
	startRun(t, w)
	<-ready

	// The kernel adds the files, then the write to subtree_control lands.
	dir := filepath.Join(cgRoot, "web1")
	must(t, os.WriteFile(filepath.Join(dir, "memory.max"), []byte("20971520\n"), 0o644))
	writeEvents(t, dir, 0, 0, 0)
	must(t, os.WriteFile(filepath.Join(cgRoot, "cgroup.subtree_control"), []byte("+memory"), 0o644))
	time.Sleep(200 * time.Millisecond) // let the loop handle the write before the OOMs
	setEvents(t, cgRoot, "web1", 4, 0, 4)
	setEvents(t, cgRoot, "web1", 9, 0, 9)
	rec.waitFor(t, "loop in a cgroup whose memory controller came later", func() bool { return len(rec.opened) == 1 })
	if inc := rec.opened[0]; inc.Cgroup != "/web1" || inc.Verdict != VerdictLoop {
		t.Fatalf("incident %+v", inc)
	}
}

// A container that creates many cgroups in its delegated subtree cannot
// take the global budget: the per-subtree cap stops it, others still count.
func TestWatchdogPerSubtreeCap(t *testing.T) {
	cgRoot := t.TempDir()
	writeV2Root(t, cgRoot)
	writeCgroup(t, cgRoot, "evil", "max")
	for i := 0; i < 20; i++ {
		writeCgroup(t, cgRoot, fmt.Sprintf("evil/c%d", i), "max")
	}
	h, err := cgroupfs.Open(cgRoot, "")
	must(t, err)
	rec := newRecorder()
	ready := make(chan int, 1)
	w, err := New(Config{CG: h, Proc: procfs.New(t.TempDir()), Detector: DefaultParams, MaxCgroups: 100, MaxPerSubtree: 5,
		Ready: func(n int) { ready <- n }}, rec, zerolog.Nop())
	must(t, err)
	startRun(t, w)
	if n := <-ready; n != 6 { // "/" and 5 under /evil
		t.Fatalf("armed %d cgroups, want 6", n)
	}
	writeCgroup(t, cgRoot, "evil/late", "max")
	writeCgroup(t, cgRoot, "good", "max")
	rec.waitFor(t, "/good watched despite /evil at its cap", func() bool { return w.Stats().Watched == 7 })
	// Removing /evil's cgroups frees its budget.
	for i := 0; i < 20; i++ {
		must(t, os.RemoveAll(filepath.Join(cgRoot, fmt.Sprintf("evil/c%d", i))))
	}
	rec.waitFor(t, "/evil's budget freed", func() bool { return w.Stats().Watched == 3 })
}

// Containers that share a parent (/docker/<id>, /lxc/<name>) each have their
// own per-subtree budget: one flooding its subtree must not blind the
// watchdog to its siblings, at start-up or later.
func TestWatchdogPerSubtreeCapPerContainer(t *testing.T) {
	cgRoot := t.TempDir()
	writeV2Root(t, cgRoot)
	id := func(c byte) string { return strings.Repeat(string(c), 64) }
	for _, d := range []string{"docker", "docker/" + id('a'), "docker/" + id('b'), "lxc", "lxc/web1", "lxc/web2"} {
		writeCgroup(t, cgRoot, d, "max")
	}
	for i := 0; i < 20; i++ {
		writeCgroup(t, cgRoot, fmt.Sprintf("docker/%s/c%d", id('a'), i), "max")
		writeCgroup(t, cgRoot, fmt.Sprintf("lxc/web1/c%d", i), "max")
	}
	h, err := cgroupfs.Open(cgRoot, "")
	must(t, err)
	rec := newRecorder()
	ready := make(chan int, 1)
	logs := &testhost.SyncBuf{}
	w, err := New(Config{CG: h, Proc: procfs.New(t.TempDir()), Detector: DefaultParams, MaxCgroups: 100, MaxPerSubtree: 5,
		Ready: func(n int) { ready <- n }}, rec, zerolog.New(logs))
	must(t, err)
	startRun(t, w)
	// "/", /docker, /lxc, 5 of docker/a's, 5 of web1's, docker/b, web2.
	if n := <-ready; n != 15 {
		t.Fatalf("armed %d cgroups, want 15", n)
	}
	writeCgroup(t, cgRoot, "docker/"+id('c'), "max")
	writeCgroup(t, cgRoot, "lxc/web3", "max")
	writeCgroup(t, cgRoot, "lxc/web1/late", "max")
	rec.waitFor(t, "new sibling containers watched", func() bool { return w.Stats().Watched == 17 })
	out := logs.String()
	for _, sub := range []string{`"subtree":"/docker/` + id('a') + `"`, `"subtree":"/lxc/web1"`} {
		if strings.Count(out, sub) != 1 {
			t.Errorf("cap for %s logged %d times, want once:\n%s", sub, strings.Count(out, sub), out)
		}
	}
	if strings.Contains(out, `"subtree":"/docker"`) || strings.Contains(out, `"subtree":"/lxc"`) {
		t.Errorf("the shared parent was capped:\n%s", out)
	}
}

// Subtree is the per-container key outside the watchdog (the policy's
// action budget): the outermost container, else the top-level cgroup.
func TestSubtreeIsTheOutermostContainerElseTheTopLevelCgroup(t *testing.T) {
	id := strings.Repeat("a", 64)
	for cg, want := range map[string]string{
		"/":                                  "",
		"/lxc/web1/fresh/loop7":              "/lxc/web1",
		"/lxc.payload.web1/a/lxc.payload.db": "/lxc.payload.web1",
		"/docker/" + id + "/x":               "/docker/" + id,
		"/system.slice/cron.service":         "/system.slice",
		"/lxc":                               "/lxc",
		"user.slice//":                       "/user.slice",
	} {
		if got := Subtree(cg); got != want {
			t.Errorf("Subtree(%q) = %q, want %q", cg, got, want)
		}
	}
}

// On a 4.19–5.15 kernel, kill-less OOMs with usage above the limit are a
// forced charge, reported as such; on 5.16+ the same counters are a loop.
func TestWatchdogForcedCharge(t *testing.T) {
	for _, forcedKernel := range []bool{true, false} {
		cgRoot, procRoot := t.TempDir(), t.TempDir()
		writeV2Root(t, cgRoot)
		writeProc(t, procRoot, 1, 0, "init", 0, 1000)
		writeProc(t, procRoot, 100, 1, "java", -1000, 9000)
		writeCgroup(t, cgRoot, "ct", "20971520", 100)
		must(t, os.WriteFile(filepath.Join(cgRoot, "ct/memory.current"), []byte("20979712\n"), 0o644))
		h, err := cgroupfs.Open(cgRoot, "")
		must(t, err)
		rec := newRecorder()
		ready := make(chan int, 1)
		w, err := New(Config{CG: h, Proc: procfs.New(procRoot), Detector: DefaultParams, ForcedChargeKernel: forcedKernel,
			Ready: func(n int) { ready <- n }}, rec, zerolog.Nop())
		must(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- w.Run(ctx) }()
		<-ready
		waitBaselines(t, w)
		setEvents(t, cgRoot, "ct", 2, 0, 2)
		setEvents(t, cgRoot, "ct", 7, 0, 7)
		rec.waitFor(t, "incident", func() bool { return len(rec.opened) == 1 })
		want := VerdictLoop
		if forcedKernel {
			want = VerdictForced
		}
		if got := rec.opened[0].Verdict; got != want {
			t.Errorf("forced-charge kernel %v: verdict %v, want %v", forcedKernel, got, want)
		}
		cancel()
		must(t, <-done)
	}
}

// oomwatch's own cgroup (Config.Ignore) and its subtree are not watched.
func TestWatchdogIgnoresOwnCgroup(t *testing.T) {
	cgRoot := t.TempDir()
	writeV2Root(t, cgRoot)
	writeCgroup(t, cgRoot, "system.slice", "max")
	writeCgroup(t, cgRoot, "system.slice/oomwatch.service", "536870912")
	writeCgroup(t, cgRoot, "system.slice/oomwatch.service/child", "max")
	writeCgroup(t, cgRoot, "system.slice/other.service", "max")
	h, err := cgroupfs.Open(cgRoot, "")
	must(t, err)
	ready := make(chan int, 1)
	w, err := New(Config{CG: h, Proc: procfs.New(t.TempDir()), Detector: DefaultParams,
		Ignore: []string{"/system.slice/oomwatch.service", "/"}, Ready: func(n int) { ready <- n }}, newRecorder(), zerolog.Nop())
	must(t, err)
	startRun(t, w)
	if n := <-ready; n != 3 { // "/", system.slice, other.service
		t.Fatalf("watched %d cgroups, want 3 (own cgroup and its child ignored, \"/\" never)", n)
	}
}

// v2 baselines of cgroups found at start-up are read after the watches are
// armed. Old OOMs in memory.events (here: 40 kill-less ones in every
// cgroup, a loop if they counted) must never count as new, whether a
// notification comes before or after the deferred read.
// TestStatsNeverShowWatchedCgroupsAsBaselined: while the start-up walk arms
// cgroups, Stats must count their unread baselines. Tests (and status) take
// Baselining == 0 with cgroups watched as "every baseline read"; a counter
// stored only after the walk showed 0 during it, so a counter change made
// then was taken as the baseline and a loop went unseen.
func TestStatsNeverShowWatchedCgroupsAsBaselined(t *testing.T) {
	cgRoot, procRoot := t.TempDir(), t.TempDir()
	writeV2Root(t, cgRoot)
	const n = 2000
	for i := 0; i < n; i++ {
		writeCgroup(t, cgRoot, fmt.Sprintf("c%d", i), "20971520")
	}
	h, err := cgroupfs.Open(cgRoot, "")
	must(t, err)
	h.AnyFS = true
	var logs testhost.SyncBuf
	w, err := New(Config{CG: h, Proc: procfs.New(procRoot), Detector: DefaultParams, ResolveAfter: 300 * time.Millisecond},
		newRecorder(), zerolog.New(&logs).Level(zerolog.DebugLevel))
	must(t, err)
	startRun(t, w)
	zeroAt, done := 0, false
	for deadline := time.Now().Add(20 * time.Second); !done; {
		if time.Now().After(deadline) {
			t.Fatal("baselines not read after 20s")
		}
		// Read before the sample: once logged, every baseline is read
		// and the sample must say so.
		done = strings.Contains(logs.String(), `"event":"baselines_read"`)
		st := w.Stats()
		switch {
		case st.Baselining > 0 && zeroAt != 0:
			t.Fatalf("Stats showed %d cgroups watched and no baseline unread, then %d baselines unread", zeroAt, st.Baselining)
		case st.Watched >= 3 && st.Baselining == 0 && zeroAt == 0:
			zeroAt = st.Watched
		}
	}
	if zeroAt == 0 {
		t.Fatal("every baseline read, and Stats still counts some unread")
	}
}

func TestWatchdogDeferredBaselines(t *testing.T) {
	cgRoot, procRoot := t.TempDir(), t.TempDir()
	writeV2Root(t, cgRoot)
	writeProc(t, procRoot, 100, 1, "java", -1000, 900000)
	const n = 2*baselineBatch + 37
	for i := 0; i < n; i++ {
		writeCgroup(t, cgRoot, fmt.Sprintf("c%d", i), "20971520", 100)
		setEvents(t, cgRoot, fmt.Sprintf("c%d", i), 40, 0, 40)
	}
	h, err := cgroupfs.Open(cgRoot, "")
	must(t, err)
	h.AnyFS = true
	rec := newRecorder()
	ready := make(chan int, 1)
	logs := &testhost.SyncBuf{}
	w, err := New(Config{CG: h, Proc: procfs.New(procRoot), Detector: DefaultParams, ResolveAfter: 300 * time.Millisecond,
		Ready: func(n int) { ready <- n }}, rec, zerolog.New(logs).Level(zerolog.DebugLevel))
	must(t, err)
	startRun(t, w)
	if got := <-ready; got != n+1 {
		t.Fatalf("armed %d cgroups, want %d", got, n+1)
	}
	// Right after ready, likely before its deferred read: one new OOM each
	// in the first and the last cgroup of the start-up walk.
	setEvents(t, cgRoot, "c0", 41, 0, 41)
	setEvents(t, cgRoot, fmt.Sprintf("c%d", n-1), 41, 0, 41)
	rec.waitFor(t, "baselines read", func() bool { return strings.Contains(logs.String(), `"event":"baselines_read"`) })

	// A real loop afterwards counts only its own OOMs.
	setEvents(t, cgRoot, "c7", 42, 0, 42)
	setEvents(t, cgRoot, "c7", 47, 0, 47)
	rec.waitFor(t, "loop incident", func() bool { return len(rec.opened) >= 1 })
	// Let the first two cgroups' notifications be handled for sure.
	time.Sleep(100 * time.Millisecond)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.opened) != 1 {
		for _, inc := range rec.opened {
			t.Errorf("incident %s %s OOMs %d", inc.Cgroup, inc.Verdict, inc.Evidence.OOMs)
		}
		t.Fatalf("%d incidents, want only /c7's", len(rec.opened))
	}
	if inc := rec.opened[0]; inc.Cgroup != "/c7" || inc.Verdict != VerdictLoop || inc.Evidence.OOMs < 3 || inc.Evidence.OOMs > 7 {
		t.Fatalf("incident %s %s with %d OOMs, want /c7 loop with 3..7 (old ones not counted)", inc.Cgroup, inc.Verdict, inc.Evidence.OOMs)
	}
	// The OOM metric counts new OOMs only: /c7's 7, and at most one each
	// for /c0 and the last cgroup (none if notified before their read).
	if st := w.Stats(); st.OOMs < 7 || st.OOMs > 9 {
		t.Fatalf("Stats().OOMs = %d, want 7..9: old OOMs were counted", st.OOMs)
	}
}

// TestWatchdogFollowsKilllessOOMs: the kernel notifies a memory.events
// change at most once per 10 ms, and a loop's next OOMs often come before the
// next notification. After a kill-less OOM the watchdog reads the counters
// itself (followEvery) for a while: here the counters reach the loop's count
// with no notification at all (memory.events rewritten through a shared
// mapping, which inotify does not see), and the loop must still be found.
func TestWatchdogFollowsKilllessOOMs(t *testing.T) {
	cgRoot, procRoot := t.TempDir(), t.TempDir()
	writeV2Root(t, cgRoot)
	writeProc(t, procRoot, 1, 0, "init", 0, 1000)
	writeProc(t, procRoot, 100, 1, "java", -1000, 900000)
	writeCgroup(t, cgRoot, "web1", "20971520", 100)
	// Fixed-width counters, so that they can change in place.
	events := func(oom int) []byte {
		return fmt.Appendf(nil, "low 0\nhigh 0\nmax 0\noom %010d\noom_kill 0000000000\noom_group_kill 0\n", oom)
	}
	file := filepath.Join(cgRoot, "web1", "memory.events")
	must(t, os.WriteFile(file, events(0), 0o644))

	h, err := cgroupfs.Open(cgRoot, "")
	must(t, err)
	h.AnyFS = true
	rec := newRecorder()
	// Followed for a minute, not 50 ms: the test's steps are not timed.
	w, err := New(Config{CG: h, Proc: procfs.New(procRoot), Detector: Params{Window: time.Minute, MinOOMs: 3},
		ResolveAfter: 300 * time.Millisecond, FollowFor: time.Minute}, rec, zerolog.Nop())
	must(t, err)
	startRun(t, w)
	rec.waitFor(t, "2 cgroups watched", func() bool { return w.Stats().Watched == 2 })
	waitBaselines(t, w)

	// One kill-less OOM, notified: the watchdog counts it.
	must(t, os.WriteFile(filepath.Join(cgRoot, "web1", "memory.events.local"), events(5), 0o644))
	must(t, os.WriteFile(file, events(1), 0o644))
	rec.waitFor(t, "the first OOM counted", func() bool { return w.Stats().OOMs == 1 })

	// Four more, not notified.
	f, err := os.OpenFile(file, os.O_RDWR, 0)
	must(t, err)
	defer f.Close()
	m, err := unix.Mmap(int(f.Fd()), 0, len(events(0)), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	must(t, err)
	defer unix.Munmap(m)
	// The writes above notify more than once (truncate, write): let the
	// loop take them all before counting what comes after.
	events0 := w.Stats().Events
	for settled := time.Now(); time.Since(settled) < 100*time.Millisecond; time.Sleep(5 * time.Millisecond) {
		if ev := w.Stats().Events; ev != events0 {
			events0, settled = ev, time.Now()
		}
	}
	copy(m, events(5))
	rec.waitFor(t, "a loop found without a notification", func() bool { return len(rec.opened) == 1 })
	if inc := rec.opened[0]; inc.Verdict != VerdictLoop || inc.Cgroup != "/web1" || inc.Evidence.OOMs < 3 {
		t.Fatalf("incident %+v, want a loop in /web1 with the 5 OOMs", inc)
	}
	if ev := w.Stats().Events; ev != events0 {
		t.Fatalf("%d notifications after the in-place change: the test needs none", ev-events0)
	}
}

// An ordinary OOM kill is logged at info, once per detection window and
// only at the cgroup whose limit was hit, not at every ancestor that
// counts it hierarchically.
func TestWatchdogLogsOrdinaryKillAtInfo(t *testing.T) {
	cgRoot := t.TempDir()
	writeV2Root(t, cgRoot)
	writeCgroup(t, cgRoot, "lxc", "max")
	writeCgroup(t, cgRoot, "lxc/web1", "20971520")
	h, err := cgroupfs.Open(cgRoot, "")
	must(t, err)
	rec := newRecorder()
	ready := make(chan int, 1)
	logs := &testhost.SyncBuf{}
	w, err := New(Config{CG: h, Proc: procfs.New(t.TempDir()), Detector: DefaultParams,
		Ready: func(n int) { ready <- n }}, rec, zerolog.New(logs).Level(zerolog.InfoLevel))
	must(t, err)
	startRun(t, w)
	<-ready
	waitBaselines(t, w)
	// Two kills in one window: the parent counts them too (hierarchical
	// memory.events), only web1's local oom counter moves.
	for i := uint64(1); i <= 2; i++ {
		setEvents(t, cgRoot, "lxc/web1", i, i, i)
		setEvents(t, cgRoot, "lxc", i, i, 0)
	}
	rec.waitFor(t, "kill logged", func() bool { return strings.Contains(logs.String(), `"event":"oom_kill"`) })
	rec.waitFor(t, "all four notifications handled", func() bool { return w.Stats().Kills >= 4 })
	out := logs.String()
	if n := strings.Count(out, `"event":"oom_kill"`); n != 1 {
		t.Errorf("%d oom_kill lines for two kills in one window, want 1:\n%s", n, out)
	}
	if !strings.Contains(out, `"event":"oom_kill","cgroup":"/lxc/web1","container":"web1"`) {
		t.Errorf("kill not logged at /lxc/web1 with its container name:\n%s", out)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.opened) != 0 {
		t.Errorf("an ordinary kill opened %d incidents", len(rec.opened))
	}
}

// Watched lists every watched cgroup from the running loop, with its open
// incident; before Run and after it returns it says the loop is not running.
func TestWatchedListsCgroupsWithOpenIncident(t *testing.T) {
	cgRoot, procRoot := t.TempDir(), t.TempDir()
	writeV2Root(t, cgRoot)
	writeProc(t, procRoot, 100, 1, "java", -1000, 9000)
	writeCgroup(t, cgRoot, "lxc", "max")
	writeCgroup(t, cgRoot, "lxc/web1", "20971520", 100)
	writeCgroup(t, cgRoot, "lxc/web2", "20971520")
	h, err := cgroupfs.Open(cgRoot, "")
	must(t, err)
	rec := newRecorder()
	ready := make(chan int, 1)
	w, err := New(Config{CG: h, Proc: procfs.New(procRoot), Detector: DefaultParams,
		Ready: func(n int) { ready <- n }}, rec, zerolog.Nop())
	must(t, err)
	if _, err := w.Watched(context.Background()); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("Watched before Run: %v, want ErrNotRunning", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	<-ready
	waitBaselines(t, w)
	setEvents(t, cgRoot, "lxc/web1", 2, 0, 2)
	setEvents(t, cgRoot, "lxc/web1", 7, 0, 7)
	rec.waitFor(t, "incident", func() bool { return len(rec.opened) == 1 })
	qctx, qcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer qcancel()
	l, err := w.Watched(qctx)
	must(t, err)
	var got []string
	for _, c := range l {
		s := c.Cgroup
		if c.Incident != "" {
			s += " " + string(c.Verdict)
		}
		got = append(got, s)
	}
	if want := []string{"/", "/lxc", "/lxc/web1 loop", "/lxc/web2"}; !slices.Equal(got, want) {
		t.Errorf("Watched = %q, want %q", got, want)
	}
	cancel()
	must(t, <-done)
	if _, err := w.Watched(context.Background()); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Watched after Run: %v, want ErrNotRunning", err)
	}
}

// The tasks of a limit holder are read at its first kill-less OOM, while
// the loop's next OOMs arrive, not after the detector has its evidence:
// the verdict does not wait for them. Here the only task is gone by the
// time the evidence is complete, and the incident still names it, as read
// at the first OOM.
func TestWatchdogReadsTasksAtTheFirstKilllessOOM(t *testing.T) {
	cgRoot, procRoot := t.TempDir(), t.TempDir()
	writeV2Root(t, cgRoot)
	writeProc(t, procRoot, 1, 0, "init", 0, 1000)
	writeProc(t, procRoot, 100, 1, "java", -1000, 900000)
	writeCgroup(t, cgRoot, "web1", "20971520", 100)
	h, err := cgroupfs.Open(cgRoot, "")
	must(t, err)
	h.AnyFS = true
	rec := newRecorder()
	w, err := New(Config{CG: h, Proc: procfs.New(procRoot), Detector: Params{Window: time.Minute, MinOOMs: 3},
		ResolveAfter: time.Minute, FollowFor: time.Minute}, rec, zerolog.Nop())
	must(t, err)
	startRun(t, w)
	rec.waitFor(t, "2 cgroups watched", func() bool { return w.Stats().Watched == 2 })
	waitBaselines(t, w)

	setEvents(t, cgRoot, "web1", 1, 0, 1)
	rec.waitFor(t, "the first OOM counted", func() bool { return w.Stats().OOMs == 1 })
	must(t, os.RemoveAll(filepath.Join(procRoot, "100")))
	setEvents(t, cgRoot, "web1", 4, 0, 4)
	rec.waitFor(t, "the loop", func() bool { return len(rec.opened) == 1 })
	inc := rec.opened[0]
	if inc.Verdict != VerdictLoop || len(inc.Candidates) != 1 || inc.Candidates[0].PID != 100 {
		t.Fatalf("incident %s with candidates %+v: want the loop of java (pid 100), read at the first OOM", inc.Verdict, inc.Candidates)
	}
}
