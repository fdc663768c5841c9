package watchdog

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/oomwatch/oomwatch/internal/cgroupfs"
	"github.com/oomwatch/oomwatch/internal/procfs"
)

// limitScenario is a v2 cgroup /web1 with a 20M limit and one task of the
// given oom_score_adj, watched, with memory.events mapped so its counters
// change in place, without a notification.
type limitScenario struct {
	w    *Watchdog
	rec  *recorder
	file string
	m    []byte
}

func limitEvents(max, oom int) []byte {
	return fmt.Appendf(nil, "low 0\nhigh 0\nmax %010d\noom %010d\noom_kill 0000000000\noom_group_kill 0\n", max, oom)
}

func newLimitScenario(t *testing.T, adj int) *limitScenario {
	cgRoot, procRoot := t.TempDir(), t.TempDir()
	writeV2Root(t, cgRoot)
	writeProc(t, procRoot, 1, 0, "init", 0, 1000)
	writeProc(t, procRoot, 100, 1, "java", adj, 900000)
	writeCgroup(t, cgRoot, "web1", "20971520", 100)
	file := filepath.Join(cgRoot, "web1", "memory.events")
	must(t, os.WriteFile(file, limitEvents(0, 0), 0o644))
	h, err := cgroupfs.Open(cgRoot, "")
	must(t, err)
	h.AnyFS = true
	rec := newRecorder()
	// Followed for a minute, not 15 ms: the test's steps are not timed.
	w, err := New(Config{CG: h, Proc: procfs.New(procRoot), Detector: Params{Window: time.Minute, MinOOMs: 3},
		ResolveAfter: 300 * time.Millisecond, FollowFor: time.Minute}, rec, zerolog.Nop())
	must(t, err)
	startRun(t, w)
	rec.waitFor(t, "2 cgroups watched", func() bool { return w.Stats().Watched == 2 })
	waitBaselines(t, w)
	s := &limitScenario{w: w, rec: rec, file: file}
	// /web1's own limit is where the OOMs to come are charged.
	must(t, os.WriteFile(filepath.Join(cgRoot, "web1", "memory.events.local"), limitEvents(0, 5), 0o644))
	// The limit is hit, notified: max rises, no OOM yet.
	must(t, os.WriteFile(file, limitEvents(1, 0), 0o644))
	s.settle()
	f, err := os.OpenFile(file, os.O_RDWR, 0)
	must(t, err)
	t.Cleanup(func() { f.Close() })
	s.m, err = unix.Mmap(int(f.Fd()), 0, len(limitEvents(0, 0)), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	must(t, err)
	t.Cleanup(func() { unix.Munmap(s.m) })
	return s
}

// settle waits until the loop has taken every notification of the writes
// so far (a write notifies more than once: truncate, write).
func (s *limitScenario) settle() {
	ev := s.w.Stats().Events
	for settled := time.Now(); time.Since(settled) < 100*time.Millisecond; time.Sleep(5 * time.Millisecond) {
		if e := s.w.Stats().Events; e != ev {
			ev, settled = e, time.Now()
		}
	}
}

// A limit hit by tasks that are all unkillable is followed: the OOMs that
// come before the kernel's next notification are counted as they happen,
// and the loop is found with no OOM notification at all.
func TestWatchdogFollowsALimitHitByUnkillableTasks(t *testing.T) {
	s := newLimitScenario(t, -1000)
	events0 := s.w.Stats().Events
	copy(s.m, limitEvents(3, 5))
	s.rec.waitFor(t, "a loop found without an OOM notification", func() bool { return len(s.rec.opened) == 1 })
	if inc := s.rec.opened[0]; inc.Verdict != VerdictLoop || inc.Cgroup != "/web1" || inc.Evidence.OOMs < 3 {
		t.Fatalf("incident %+v, want a loop in /web1 with the 5 OOMs", inc)
	}
	if ev := s.w.Stats().Events; ev != events0 {
		t.Fatalf("%d notifications after the in-place change: the test needs none", ev-events0)
	}
}

// A limit hit where the kernel can kill is not followed: an OOM there is
// answered by a kill, and reading it every millisecond would only cost.
// The same OOMs are found at the next notification.
func TestWatchdogDoesNotFollowALimitHitByKillableTasks(t *testing.T) {
	s := newLimitScenario(t, 0)
	copy(s.m, limitEvents(3, 5))
	time.Sleep(300 * time.Millisecond)
	if n := s.w.Stats().OOMs; n != 0 {
		t.Fatalf("%d OOMs counted without a notification: the limit hit of a killable task was followed", n)
	}
	must(t, os.WriteFile(s.file, limitEvents(3, 5), 0o644))
	s.rec.waitFor(t, "the OOMs counted at the notification", func() bool { return s.w.Stats().OOMs == 5 })
}
