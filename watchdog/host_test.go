package watchdog

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/oomwatch/oomwatch/internal/cgroupfs"
	"github.com/oomwatch/oomwatch/internal/procfs"
	"github.com/oomwatch/oomwatch/test/fixture"
	"github.com/oomwatch/oomwatch/test/testhost"
)

// removeCgroup removes a test cgroup, retrying while its killed tasks are
// still being reaped.
func removeCgroup(dir string) {
	for i := 0; i < 100; i++ {
		if err := os.Remove(dir); err == nil || os.IsNotExist(err) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func writeFile(t testing.TB, p, v string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(v), 0); err != nil {
		t.Fatalf("write %q to %s: %v", v, p, err)
	}
}

// TestWatchdogHostV1Paused: a real v1 memory cgroup with oom_kill_disable=1
// stalls its task under_oom; the watchdog reports it as paused through the
// real eventfd, sees it released when the limit is raised, and drops the
// cgroup when it is removed. Only cgroups this test created are touched.
func TestWatchdogHostV1Paused(t *testing.T) {
	root := testhost.V1Root(t)
	fdsBefore := fixture.CountFDs(t)
	base := filepath.Join(root, fmt.Sprintf("oomwatch-test-wd-%d-%d", os.Getpid(), time.Now().UnixNano()))
	victim := filepath.Join(base, "victim")
	for _, d := range []string{base, victim} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		removeCgroup(victim)
		removeCgroup(base)
	})
	testhost.MakeStalling(t, victim, 33554432)

	h, err := cgroupfs.Open(base, "")
	if err != nil || h.Version != 1 {
		t.Fatalf("open %s: %+v %v", base, h, err)
	}
	rec := newRecorder()
	ready := make(chan int, 1)
	w, err := New(Config{CG: h, Proc: procfs.New("/proc"), Detector: DefaultParams, ResolveAfter: 200 * time.Millisecond,
		Ready: func(n int) { ready <- n }}, rec, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	if n := <-ready; n != 2 {
		t.Fatalf("armed %d cgroups, want 2", n)
	}
	// Registering a v1 eventfd writes cgroup.event_control; the directory
	// watch must not echo it (at 16,384 cgroups the echoes overflowed the
	// inotify queue), nor a write to any other cgroup file.
	writeFile(t, filepath.Join(victim, "memory.soft_limit_in_bytes"), "33554432")
	time.Sleep(200 * time.Millisecond)
	if ev := w.Stats().Events; ev != 0 {
		t.Errorf("%d notifications handled before any OOM: v1 directory watches report file writes", ev)
	}

	hog := testhost.StartHog(t, filepath.Join(victim, "cgroup.procs"), 128)

	rec.waitFor(t, "paused incident", func() bool { return len(rec.opened) >= 1 })
	inc := rec.opened[0]
	if inc.Verdict != VerdictPaused || inc.Cgroup != "/victim" || inc.Evidence.Limit != 33554432 {
		t.Fatalf("incident %+v, want paused /victim with the 32 MiB limit", inc)
	}

	// The kernel's documented remedy: raise the limit; the task resumes.
	if _, err := os.Stat(filepath.Join(victim, "memory.memsw.limit_in_bytes")); err == nil {
		writeFile(t, filepath.Join(victim, "memory.memsw.limit_in_bytes"), "268435456")
	}
	writeFile(t, filepath.Join(victim, "memory.limit_in_bytes"), "268435456")
	rec.waitFor(t, "paused incident resolved", func() bool { return strings.Contains(rec.resolved["/victim"], "under_oom") })

	// Removal is a normal event: the cgroup is dropped, nothing breaks.
	hog.Kill()
	removeCgroup(victim)
	rec.waitFor(t, "removed cgroup dropped", func() bool { return w.Stats().Watched == 1 })

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if fdsAfter := fixture.CountFDs(t); fdsAfter != fdsBefore {
		t.Errorf("fd leak: %d fds before, %d after", fdsBefore, fdsAfter)
	}
}

// TestWatchdogHostV1PausedParentOnce: a v1 OOM at a cgroup notifies every
// descendant's eventfd, and descendants created after oom_kill_disable=1
// inherit it and share the parent's under_oom. The watchdog reports one
// paused incident, for the parent, with the stalled task found below it,
// not one per descendant.
func TestWatchdogHostV1PausedParentOnce(t *testing.T) {
	root := testhost.V1Root(t)
	base := filepath.Join(root, fmt.Sprintf("oomwatch-test-once-%d-%d", os.Getpid(), time.Now().UnixNano()))
	parent := filepath.Join(base, "parent")
	const kids = 20
	dirs := []string{base, parent}
	for i := 0; i < kids; i++ {
		dirs = append(dirs, filepath.Join(parent, fmt.Sprintf("c%02d", i)))
	}
	t.Cleanup(func() {
		for i := len(dirs) - 1; i >= 0; i-- {
			removeCgroup(dirs[i])
		}
	})
	for i, d := range dirs {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if i == 1 {
			testhost.MakeStalling(t, parent, 33554432) // before its children: they inherit oom_kill_disable
		}
	}
	if b, err := os.ReadFile(filepath.Join(dirs[2], "memory.oom_control")); err != nil || !strings.Contains(string(b), "oom_kill_disable 1") {
		t.Fatalf("child oom_control %q, %v: want oom_kill_disable inherited", b, err)
	}

	h, err := cgroupfs.Open(base, "")
	if err != nil || h.Version != 1 {
		t.Fatalf("open %s: %+v %v", base, h, err)
	}
	rec := newRecorder()
	ready := make(chan int, 1)
	w, err := New(Config{CG: h, Proc: procfs.New("/proc"), Detector: DefaultParams, ResolveAfter: 200 * time.Millisecond,
		Ready: func(n int) { ready <- n }}, rec, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	startRun(t, w)
	if n := <-ready; n != kids+2 {
		t.Fatalf("armed %d cgroups, want %d", n, kids+2)
	}
	hog := testhost.StartHog(t, filepath.Join(dirs[len(dirs)-1], "cgroup.procs"), 128)
	rec.waitFor(t, "paused incident", func() bool { return len(rec.opened) >= 1 })
	// Every descendant's notification is handled by now: they come in the
	// parent's batch or right after it, and the recheck settles at 100 ms.
	deadline := time.Now().Add(2 * time.Second)
	for w.Stats().Events < kids+1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	rec.mu.Lock()
	opened := append([]*Incident(nil), rec.opened...)
	rec.mu.Unlock()
	if len(opened) != 1 || opened[0].Cgroup != "/parent" || opened[0].Verdict != VerdictPaused {
		var got []string
		for _, inc := range opened {
			got = append(got, inc.Cgroup+" "+string(inc.Verdict))
		}
		t.Fatalf("incidents %v (after %d notifications), want one paused /parent", got, w.Stats().Events)
	}
	found := false
	for _, c := range opened[0].Candidates {
		found = found || c.PID == hog.Pid()
	}
	if !found {
		t.Errorf("candidates %+v lack the stalled hog %d", opened[0].Candidates, hog.Pid())
	}
	hog.Kill()
}
