package policy

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/oomwatch/oomwatch/internal/cgroupfs"
	"github.com/oomwatch/oomwatch/internal/procfs"
	"github.com/oomwatch/oomwatch/internal/testhost"
	"github.com/oomwatch/oomwatch/watchdog"
)

// TestPausedReleasedByRuleHost: on the host kernel, a real v1 cgroup with
// oom_kill_disable=1 stalls its task under_oom; with paused action
// raise-limit the policy is its userspace OOM handler and releases it.
func TestPausedReleasedByRuleHost(t *testing.T) {
	h, err := cgroupfs.Open(testhost.V1Root(t), "")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(h.Root, fmt.Sprintf("oomwatch-test-policy-%d-%d", os.Getpid(), time.Now().UnixNano()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for i := 0; i < 50 && os.Remove(dir) != nil; i++ {
			time.Sleep(20 * time.Millisecond)
		}
	})
	testhost.MakeStalling(t, dir, 33554432)
	hog := testhost.StartHog(t, filepath.Join(dir, "cgroup.procs"), 48)
	cg := "/" + filepath.Base(dir)
	waitUntil(t, "under_oom 1", func() bool { oc, err := h.OOMControl(cg); return err == nil && oc.UnderOOM })

	opts := DefaultOptions()
	opts.PausedAction = RaiseLimit
	// Large steps: the helper is this test binary (with -race, much bigger
	// than the 48 MiB it touches).
	opts.RaiseStep, opts.RaiseCeiling = Amount{Percent: 300}, Amount{Percent: 2000}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p, err := New(ctx, Config{CG: h, Proc: procfs.New("/proc"), Options: opts}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan []Result, 1)
	p.OnDone = func(_ *watchdog.Incident, _ string, rs []Result) { got <- rs }
	inc := &watchdog.Incident{ID: "p", Verdict: watchdog.VerdictPaused, Cgroup: cg, Version: 1}
	p.Open(inc)
	rs := <-got
	if n := len(rs); n == 0 || !rs[n-1].Verified || rs[n-1].Rung != RaiseLimit {
		t.Fatalf("results %+v, want a verified raise-limit", rs)
	}
	if oc, _ := h.OOMControl(cg); oc.UnderOOM || oc.OOMKill != 0 {
		t.Fatalf("after the raise: %+v, want released and nothing killed", oc)
	}
	if hog.Cmd.ProcessState != nil {
		t.Fatal("hog exited")
	}
	// Put the original back before cleanup (the reverter would, after 5m).
	hog.Kill()
	p.Resolved(inc, "test")
	cancel()
	p.Wait()
}
