package policy

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/oomwatch/oomwatch/internal/cgroupfs"
	"github.com/oomwatch/oomwatch/internal/procfs"
	"github.com/oomwatch/oomwatch/test/testhost"
	"github.com/oomwatch/oomwatch/test/testtier"
	"github.com/oomwatch/oomwatch/watchdog"
)

// hostV1Cgroup creates a uniquely named cgroup in the host's v1 memory
// hierarchy, removed when the test ends (after its hog is killed).
func hostV1Cgroup(t *testing.T, what string) (h cgroupfs.Hierarchy, dir, cg string) {
	t.Helper()
	h, err := cgroupfs.Open(testhost.V1Root(t), "")
	if err != nil {
		t.Fatal(err)
	}
	dir = filepath.Join(h.Root, fmt.Sprintf("oomwatch-test-%s-%d-%d", what, os.Getpid(), time.Now().UnixNano()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for i := 0; i < 50 && os.Remove(dir) != nil; i++ {
			time.Sleep(20 * time.Millisecond)
		}
	})
	return h, dir, "/" + filepath.Base(dir)
}

// TestPausedReleasedByRuleHost: on the host kernel, a real v1 cgroup with
// oom_kill_disable=1 stalls its task under_oom; with paused action
// raise-limit the policy is its userspace OOM handler and releases it.
func TestPausedReleasedByRuleHost(t *testing.T) {
	h, dir, cg := hostV1Cgroup(t, "policy")
	testhost.MakeStalling(t, dir, 33554432)
	hog := testhost.StartHog(t, filepath.Join(dir, "cgroup.procs"), 48)
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
	inc := &watchdog.Incident{ID: "p", Verdict: watchdog.VerdictPaused, Cgroup: cg, Version: 1}
	rs := runIncident(t, p, inc)
	if n := len(rs); n == 0 || !rs[n-1].Verified || rs[n-1].Name != RaiseLimit {
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

// TestRaiseRevertsExactlyHostV1: a real v1 cgroup with limit 48M and memsw
// 96M whose task stalls under_oom (oom_kill_disable). raise-limit with the
// default 10% step climbs to the 200% ceiling in steps that are not whole
// pages (48M + 10% = 55364812, which the kernel stores as 55361536), memsw
// each time by the same amount; the task stays stalled. Once it is gone and
// the hold has passed, the reverter puts back the limit and memsw exactly.
func TestRaiseRevertsExactlyHostV1(t *testing.T) {
	const limit, memsw = 48 << 20, 96 << 20
	h, dir, cg := hostV1Cgroup(t, "raise")
	if _, ok, _ := h.MemswLimit(cg); !ok {
		testtier.Require(t, testtier.Host, "needs v1 swap accounting (memory.memsw.*)")
	}
	testhost.MakeStalling(t, dir, limit)
	if err := os.WriteFile(filepath.Join(dir, "memory.memsw.limit_in_bytes"), []byte(strconv.Itoa(memsw)), 0); err != nil {
		t.Fatal(err)
	}
	orig := cgroupfs.Limits{Mem: limit, Memsw: memsw, HasMemsw: true}
	if got, err := h.Limits(cg); err != nil || got != orig {
		t.Fatalf("limits %+v, %v; want %+v", got, err, orig)
	}
	// More than the 96M ceiling: the task stays stalled at every step.
	hog := testhost.StartHog(t, filepath.Join(dir, "cgroup.procs"), 160)
	waitUntil(t, "under_oom 1", func() bool { oc, err := h.OOMControl(cg); return err == nil && oc.UnderOOM })

	opts := DefaultOptions()
	opts.PausedAction = RaiseLimit
	// quiet long enough that a stalled task descheduled on a busy host is not
	// taken for a broken loop
	opts.VerifyTimeout, opts.QuietFor = 500*time.Millisecond, 250*time.Millisecond
	opts.RevertHold = 300 * time.Millisecond
	var logs testhost.SyncBuf
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p, err := New(ctx, Config{CG: h, Proc: procfs.New("/proc"), Options: opts, StateDir: t.TempDir()}, zerolog.New(&logs))
	if err != nil {
		t.Fatal(err)
	}
	inc := &watchdog.Incident{ID: "raise-v1", Verdict: watchdog.VerdictPaused, Cgroup: cg, Version: 1}
	rs := runIncident(t, p, inc)
	if len(rs) < 2 || !rs[0].Done || rs[0].Error != "" {
		t.Fatalf("results %+v, want raises step by step", rs)
	}
	for _, r := range rs {
		if !r.Done || r.Verified || r.Error != "" {
			t.Fatalf("result %+v: want a raise done and the task still stalled\nall: %+v", r, rs)
		}
	}
	// Every step: the limit read back, memsw up by as much, both whole pages.
	raised, err := h.Limits(cg)
	if err != nil {
		t.Fatal(err)
	}
	if raised.Mem != 2*limit || raised.Memsw != memsw+raised.Mem-limit {
		t.Fatalf("raised to %+v, want the ceiling %d and memsw %d", raised, 2*limit, memsw+limit)
	}
	if !p.Raised(cg) {
		t.Fatalf("Raised(%s) false while the raise is held", cg)
	}
	rec := p.raised.get(cg)
	if rec == nil || rec.Raised != raised.Mem || rec.RaisedMemsw != raised.Memsw || rec.Original != limit || rec.OriginalMemsw != memsw {
		t.Fatalf("record %+v, limits %+v", rec, raised)
	}
	if !strings.Contains(logs.String(), `"original_limit":50331648,"new_limit":55361536`) {
		t.Fatalf("first step not logged as the kernel stores it (55361536):\n%s", logs.String())
	}

	hog.Kill()
	p.Resolved(inc, "test")
	waitUntil(t, "revert", func() bool { return p.raised.len() == 0 })
	if p.Raised(cg) {
		t.Errorf("Raised(%s) true after the revert", cg)
	}
	if now, err := h.Limits(cg); err != nil || now != orig {
		t.Fatalf("after the revert: limits %+v, %v; want the originals %+v\nlog:\n%s", now, err, orig, logs.String())
	}
	if strings.Contains(logs.String(), "someone else") {
		t.Fatalf("the reverter took its own raise for someone else's:\n%s", logs.String())
	}
	cancel()
	p.Wait()
}
