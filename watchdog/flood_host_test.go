package watchdog

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/oomwatch/oomwatch/internal/cgroupfs"
	"github.com/oomwatch/oomwatch/internal/procfs"
	"github.com/oomwatch/oomwatch/test/fixture"
	"github.com/oomwatch/oomwatch/test/inotifyinfo"
	"github.com/oomwatch/oomwatch/test/testhost"
)

// The flood: floodDirs directories under the flood's top-level cgroup, each
// holding floodLeaves children: floodCgroups cgroups below the top.
const (
	floodPrefix       = "oomwatch-flood-"        // floodPrefix<pid>: the flooding "container"
	floodVictimPrefix = "oomwatch-flood-victim-" // floodVictimPrefix<pid>: another top-level cgroup
	floodDirs         = 50
	floodLeaves       = 999 // per directory: 50 + 50×999 = 50,000
	floodCgroups      = floodDirs + floodDirs*floodLeaves
	floodWorkers      = 4
	// memcgIDMax is MEM_CGROUP_ID_MAX: memory cgroup IDs are 16 bits, so at
	// most 65535 memory cgroups (the root, dying ones until their ID is
	// released, everyone's) exist at once; mkdir fails with ENOSPC beyond.
	memcgIDMax = 65535
)

// TestFlood50kCgroupsHost: a container that creates 50,000 real v1
// memory cgroups in its delegated subtree cannot exhaust oomwatch. The real
// watchdog, with its default caps, on the host's real v1 hierarchy, watches
// exactly MaxPerSubtree cgroups of the flood, says so once, still watches a
// top-level cgroup created after the flood and still reports a real OOM in
// it (paused: oom_kill_disable=1, as in TestWatchdogHostV1Paused).
//
// Shape: 50 directories × 999 children (+ the 50 directories = 50,000), not
// flat: a container's delegated cgroups are nested (systemd in a container:
// slices, services, scopes; kubepods: QoS class, pod, container), and the cap
// counts every descendant of the top-level cgroup, not its direct children
// (the fake-tree TestWatchdogPerSubtreeCap covers flat children).
func TestFlood50kCgroupsHost(t *testing.T) {
	if testing.Short() {
		t.Skip("creates 50,000 cgroups")
	}
	root := testhost.V1Root(t)
	for _, d := range sweepFlood(t, root) {
		t.Logf("removed leftover %s of a dead earlier run", d)
	}
	checkFloodFits(t, root)

	pid := os.Getpid()
	floodDir := filepath.Join(root, fmt.Sprintf("%s%d", floodPrefix, pid))
	victimDir := filepath.Join(root, fmt.Sprintf("%s%d", floodVictimPrefix, pid))
	floodCg, victimCg := "/"+filepath.Base(floodDir), "/"+filepath.Base(victimDir)
	// Registered first, so it runs last: after the watchdog is stopped and
	// the hog is dead. Also on failure, and after a partial creation.
	t.Cleanup(func() {
		start := time.Now()
		nv, verr := rmCgroupTree(victimDir, 1)
		nf, ferr := rmCgroupTree(floodDir, floodWorkers)
		t.Logf("removed %d flood and %d victim cgroups in %v; memory cgroups now %d (dying ones included)",
			nf, nv, time.Since(start).Round(time.Millisecond), memcgCount(t))
		if err := errors.Join(verr, ferr); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})

	start := time.Now()
	if err := mkFlood(floodDir); err != nil {
		if errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("create the flood: %v: memory cgroup IDs exhausted (%d memory cgroups now, limit %d; another run at the same time?)",
				err, memcgCount(t), memcgIDMax)
		}
		t.Fatalf("create the flood: %v", err)
	}
	t.Logf("created %d cgroups under %s in %v (%d workers); memory cgroups now %d",
		floodCgroups, floodDir, time.Since(start).Round(time.Millisecond), floodWorkers, memcgCount(t))

	h, err := cgroupfs.Open(root, "")
	if err != nil || h.Version != 1 {
		t.Fatalf("open %s: %+v %v", root, h, err)
	}
	var logs testhost.SyncBuf
	rec := newRecorder()
	ready := make(chan int, 1)
	w, err := New(Config{CG: h, Proc: procfs.New("/proc"), Detector: DefaultParams,
		Ready: func(n int) { ready <- n }}, rec, zerolog.New(&logs).Level(zerolog.InfoLevel).With().Timestamp().Logger())
	if err != nil {
		t.Fatal(err)
	}
	if w.cfg.MaxPerSubtree != DefaultMaxPerSubtree || w.cfg.MaxCgroups != DefaultMaxCgroups {
		t.Fatalf("caps %d/%d, want the defaults %d/%d", w.cfg.MaxPerSubtree, w.cfg.MaxCgroups, DefaultMaxPerSubtree, DefaultMaxCgroups)
	}
	fdsBefore := fixture.CountFDs(t)
	memBefore := readMem(t)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var runErr error
	var stopOnce sync.Once
	stop := func() error {
		stopOnce.Do(func() { cancel(); runErr = <-done })
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	defer func() {
		if t.Failed() {
			t.Logf("watchdog log (warnings and errors):\n%s", grepLevels(logs.String(), "warn", "error"))
		}
	}()
	armStart := time.Now()
	go func() { done <- w.Run(ctx) }()
	var armed int
	select {
	case armed = <-ready:
	case err := <-done:
		done <- err
		t.Fatalf("Run returned before ready: %v", err)
	case <-time.After(10 * time.Minute):
		t.Fatal("watchdog not ready after 10 minutes")
	}
	armTime := time.Since(armStart)
	memArmed := readMem(t)
	t.Logf("armed %d cgroups of the whole hierarchy in %v; %d fds before, %d after", armed, armTime.Round(time.Millisecond), fdsBefore, fixture.CountFDs(t))
	t.Logf("test process (test binary + watchdog, in-process) before arming: %v", memBefore)
	t.Logf("test process after arming:                                    %v", memArmed)
	t.Logf("growth: VmRSS %+.1f MiB, VmHWM %+.1f MiB, Go heap in use after GC %+.1f MiB",
		mib(memArmed.rssKB-memBefore.rssKB), mib(memArmed.hwmKB-memBefore.hwmKB), float64(int64(memArmed.heap)-int64(memBefore.heap))/(1<<20))
	if g := memArmed.hwmKB - memBefore.hwmKB; g > 256<<10 {
		t.Errorf("VmHWM grew by %.1f MiB while arming, want < 256 MiB", mib(g))
	}

	// The kernel's view: inotify marks of this process on flood cgroups.
	floodInodes := treeInodes(t, floodDir)
	if len(floodInodes) != floodCgroups+1 {
		t.Fatalf("flood holds %d cgroups, want %d", len(floodInodes), floodCgroups+1)
	}
	marks := inotifyInodes(t)
	inFlood := 0
	for ino := range marks {
		if floodInodes[ino] {
			inFlood++
		}
	}
	t.Logf("kernel: %d inotify marks in this process, %d of them on flood cgroups", len(marks), inFlood)
	if inFlood != DefaultMaxPerSubtree {
		t.Errorf("%d flood cgroups carry an inotify watch, want the per-subtree cap %d", inFlood, DefaultMaxPerSubtree)
	}

	// A second top-level cgroup, created after the flood and after arming:
	// the flood must not have taken its budget.
	if err := os.Mkdir(victimDir, 0o755); err != nil {
		t.Fatal(err)
	}
	victimIno := inodeOf(t, victimDir)
	rec.waitFor(t, "the victim cgroup watched (an inotify mark on its directory)", func() bool { return inotifyInodes(t)[victimIno] })
	testhost.MakeStalling(t, victimDir, 33554432)

	hog := testhost.StartHog(t, filepath.Join(victimDir, "cgroup.procs"), 128) // killed before the cgroups are removed
	ooms := time.Now()
	var inc *Incident
	rec.waitFor(t, "a paused incident in the victim cgroup", func() bool {
		for _, i := range rec.opened {
			if i.Cgroup == victimCg {
				inc = i
				return true
			}
		}
		return false
	})
	t.Logf("victim incident %s after %v: verdict %s, limit %d, %d tasks", inc.ID, time.Since(ooms).Round(time.Millisecond),
		inc.Verdict, inc.Evidence.Limit, len(inc.Candidates))
	if inc.Verdict != VerdictPaused || inc.Evidence.Limit != 33554432 {
		t.Errorf("victim incident %+v, want paused with the 32 MiB limit", inc)
	}
	st := w.Stats()
	t.Logf("stats: %+v", st)
	memEnd := readMem(t)
	t.Logf("test process at the end: %v", memEnd)

	if err := stop(); err != nil {
		t.Errorf("Run: %v", err)
	}
	hog.Kill() // its pipe and pidfd are not the watchdog's fds
	// Run has returned: its state can be read without a race.
	watchedFlood := 0
	for c := range w.cgroups {
		if cgroupfs.InSubtree(c, floodCg) {
			watchedFlood++
		}
	}
	t.Logf("watchdog: %d cgroups watched, %d under %s, per-subtree counts %d, arm errors %d, global cap reached %v",
		len(w.cgroups), watchedFlood, floodCg, w.perTop[floodCg], w.armErrors, w.full)
	if watchedFlood != DefaultMaxPerSubtree || w.perTop[floodCg] != DefaultMaxPerSubtree {
		t.Errorf("watched %d cgroups under the flood (counted %d), want the per-subtree cap %d", watchedFlood, w.perTop[floodCg], DefaultMaxPerSubtree)
	}
	if w.cgroups[victimCg] == nil || w.perTop[victimCg] != 1 {
		t.Errorf("victim %s not watched (per-subtree count %d)", victimCg, w.perTop[victimCg])
	}
	if w.full {
		t.Errorf("the global cap %d was reached", DefaultMaxCgroups)
	}
	if w.armErrors != 0 {
		t.Errorf("%d cgroups could not be armed (see the log)", w.armErrors)
	}
	if !w.capped[floodCg] || w.capped[victimCg] {
		t.Errorf("capped subtrees: flood %v, victim %v; want true, false", w.capped[floodCg], w.capped[victimCg])
	}

	// The log: one cap warning for the flood, none for anything else of ours,
	// no global cap warning.
	capLines := map[string]int{}
	overflows := 0
	for _, m := range CheckJSONLines(t, "watchdog log", logs.String()) {
		if msg, _ := m["message"].(string); strings.Contains(msg, "inotify queue overflow") {
			overflows++
		}
		if m["event"] != "cgroup_cap" {
			continue
		}
		if _, global := m["max_cgroups"]; global {
			t.Errorf("global cap reported: %v", m)
		}
		sub, _ := m["subtree"].(string)
		capLines[sub]++
		if sub == floodCg && m["max_per_subtree"] != float64(DefaultMaxPerSubtree) {
			t.Errorf("cap line %v, want max_per_subtree %d", m, DefaultMaxPerSubtree)
		}
	}
	t.Logf("event=cgroup_cap lines by subtree: %v; inotify queue overflows (rescans): %d", capLines, overflows)
	if capLines[floodCg] != 1 || capLines[victimCg] != 0 {
		t.Errorf("cap reported %d times for the flood and %d for the victim, want once and never", capLines[floodCg], capLines[victimCg])
	}
	if fds := fixture.CountFDs(t); fds != fdsBefore {
		t.Errorf("fd leak: %d fds before Run, %d after it returned", fdsBefore, fds)
	}
}

// mkFlood creates dir and floodCgroups cgroups below it: floodDirs
// directories first, then their children with floodWorkers goroutines. The
// kernel serialises cgroup mkdir on cgroup_mutex: on 6.18, 1 and 4 workers
// both took about 4 s for the 50,000; the goroutines cost nothing either.
func mkFlood(dir string) error {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	dirs := make(chan string, floodDirs)
	for i := 0; i < floodDirs; i++ {
		d := filepath.Join(dir, fmt.Sprintf("d%02d", i))
		if err := os.Mkdir(d, 0o755); err != nil {
			return err
		}
		dirs <- d
	}
	close(dirs)
	var wg sync.WaitGroup
	var firstErr atomic.Pointer[error]
	for i := 0; i < floodWorkers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for d := range dirs {
				for j := 0; j < floodLeaves && firstErr.Load() == nil; j++ {
					if err := syscall.Mkdir(filepath.Join(d, fmt.Sprintf("c%03d", j)), 0o755); err != nil {
						err = fmt.Errorf("mkdir %s/c%03d: %w", d, j, err)
						firstErr.CompareAndSwap(nil, &err)
					}
				}
			}
		}()
	}
	wg.Wait()
	if p := firstErr.Load(); p != nil {
		return *p
	}
	return nil
}

// rmCgroupTree removes the cgroup directory dir and everything below it,
// deepest first; the subtrees of dir's children are removed by workers
// goroutines. A missing dir is not an error. It returns how many cgroups it
// removed.
func rmCgroupTree(dir string, workers int) (int, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	kids := make(chan string, len(ents))
	for _, e := range ents {
		if e.IsDir() {
			kids <- filepath.Join(dir, e.Name())
		}
	}
	close(kids)
	var n atomic.Int64
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range kids {
				c, err := rmCgroupTree(k, 1)
				n.Add(int64(c))
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return int(n.Load()), err
	}
	// EBUSY while a killed task is still leaving the cgroup: retry briefly.
	for i := 0; ; i++ {
		err := syscall.Rmdir(dir)
		switch {
		case err == nil:
			return int(n.Load()) + 1, nil
		case errors.Is(err, syscall.ENOENT):
			return int(n.Load()), nil
		case i >= 100:
			return int(n.Load()), fmt.Errorf("rmdir %s: %w", dir, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sweepFlood removes the flood and victim cgroups of earlier runs whose
// process is gone (a run killed before its cleanup), killing what is left
// in them (a hog waits under_oom for an hour). Nothing else is touched.
func sweepFlood(t *testing.T, root string) []string {
	t.Helper()
	ents, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	var removed []string
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), floodPrefix)
		if !e.IsDir() || !ok {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimPrefix(rest, "victim-"))
		if err != nil || pid == os.Getpid() {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			continue // still running: someone else's
		}
		d := filepath.Join(root, e.Name())
		h := cgroupfs.Hierarchy{Version: 1, Root: d}
		if pids, err := h.SubtreeProcs("/", 0); err == nil {
			for _, p := range pids {
				_ = syscall.Kill(p, syscall.SIGKILL)
			}
		}
		if _, err := rmCgroupTree(d, floodWorkers); err != nil {
			t.Fatalf("remove leftover %s: %v", d, err)
		}
		removed = append(removed, d)
	}
	return removed
}

// checkFloodFits fails unless the flood fits the host: memory cgroup IDs,
// file descriptors (v1: one eventfd per watched cgroup) and inotify watches
// (one per watched cgroup).
func checkFloodFits(t *testing.T, root string) {
	t.Helper()
	n := memcgCount(t)
	if need := floodCgroups + 2; n+need > memcgIDMax {
		t.Fatalf("%d memory cgroups exist (/proc/cgroups, dying ones included) and this test needs %d more: "+
			"v1 memory cgroup IDs are limited to %d system-wide, mkdir would fail with ENOSPC; remove cgroups or wait for dying ones to be freed",
			n, need, memcgIDMax)
	}
	// The watchdog watches everything outside the flood, MaxPerSubtree
	// inside it, and the victim.
	visible := 0
	_ = cgroupfs.Hierarchy{Version: 1, Root: root}.Walk("/", 0, func(string) error { visible++; return nil })
	want := uint64(visible + DefaultMaxPerSubtree + 256)
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	if rl.Cur < want {
		t.Fatalf("RLIMIT_NOFILE is %d (hard %d), the watchdog needs about %d here (one eventfd per watched v1 cgroup): raise ulimit -Hn",
			rl.Cur, rl.Max, want)
	}
	if b, err := os.ReadFile("/proc/sys/fs/inotify/max_user_watches"); err == nil {
		if v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil && v < want {
			t.Fatalf("fs.inotify.max_user_watches is %d, the watchdog needs about %d here (one per watched cgroup)", v, want)
		}
	}
}

// memcgCount reads the number of memory cgroups from /proc/cgroups (every
// cgroup of the memory hierarchy, dying ones included).
func memcgCount(t testing.TB) int {
	t.Helper()
	b, err := os.ReadFile("/proc/cgroups")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 3 && f[0] == "memory" {
			n, err := strconv.Atoi(f[2])
			if err != nil {
				t.Fatalf("/proc/cgroups: %q", l)
			}
			return n
		}
	}
	t.Fatal("/proc/cgroups has no memory line")
	return 0
}

func inodeOf(t *testing.T, p string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// treeInodes returns the inode numbers of dir and every directory below it.
func treeInodes(t *testing.T, dir string) map[uint64]bool {
	t.Helper()
	inos := map[uint64]bool{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		inos[fi.Sys().(*syscall.Stat_t).Ino] = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return inos
}

// inotifyInodes returns the inodes this process's inotify instances watch,
// as the kernel lists them. The watchdog's poller is the only inotify user in
// the test binary.
func inotifyInodes(t *testing.T) map[uint64]bool {
	t.Helper()
	fds, err := inotifyinfo.FDs(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	inos := map[uint64]bool{}
	for _, fd := range fds {
		_ = inotifyinfo.Inodes(os.Getpid(), fd, inos) // an fd closed meanwhile has nothing to say
	}
	return inos
}

type memSnap struct {
	rssKB, hwmKB int64
	heap         uint64 // Go HeapInuse after a GC
}

func (m memSnap) String() string {
	return fmt.Sprintf("VmRSS %.1f MiB, VmHWM %.1f MiB, Go heap in use after GC %.1f MiB", mib(m.rssKB), mib(m.hwmKB), float64(m.heap)/(1<<20))
}

func mib(kb int64) float64 { return float64(kb) / 1024 }

// readMem reads VmRSS and VmHWM of this process (the test binary: the
// watchdog runs in-process) and the Go heap after a GC.
func readMem(t testing.TB) memSnap {
	t.Helper()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	s := memSnap{heap: ms.HeapInuse}
	for _, l := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			s.rssKB = n
		case "VmHWM":
			s.hwmKB = n
		}
	}
	return s
}

// grepLevels keeps the JSON log lines of the given levels.
func grepLevels(out string, levels ...string) string {
	var b strings.Builder
	for _, l := range strings.Split(out, "\n") {
		for _, lv := range levels {
			if strings.Contains(l, `"level":"`+lv+`"`) {
				b.WriteString(l + "\n")
				break
			}
		}
	}
	return b.String()
}
