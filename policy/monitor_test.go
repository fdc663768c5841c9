package policy

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
	"github.com/oomwatch/oomwatch/watchdog"
)

// fakeMonitorHost builds a v2 tree the way LXC lays out container t1 under
// /ct: /ct/lxc.monitor.t1 holds pid 4243 (the larger), /ct/lxc.payload.t1
// pid 4242, both unkillable.
func fakeMonitorHost(t *testing.T) (cgroupfs.Hierarchy, procfs.FS, string) {
	t.Helper()
	cgRoot, procRoot := t.TempDir(), t.TempDir()
	files := map[string]string{
		"cgroup.controllers":             "memory\n",
		"ct/memory.events":               "oom 50\noom_kill 0\n",
		"ct/memory.max":                  "20971520\n",
		"ct/cgroup.freeze":               "0\n",
		"ct/cgroup.events":               "populated 1\nfrozen 1\n",
		"ct/cgroup.procs":                "",
		"ct/lxc.monitor.t1/cgroup.procs": "4243\n",
		"ct/lxc.payload.t1/cgroup.procs": "4242\n",
		"ct/lxc.monitor.t1/memory.max":   "max\n",
		"ct/lxc.payload.t1/memory.max":   "max\n",
		"lxc.monitor.t1/memory.events":   "oom 50\noom_kill 0\n",
		"lxc.monitor.t1/cgroup.procs":    "4243\n",
	}
	for p, c := range files {
		writeFake(t, filepath.Join(cgRoot, p), c)
	}
	for pid, rssKB := range map[int]int{4242: 1000, 4243: 90000} {
		cg := map[int]string{4242: "/ct/lxc.payload.t1", 4243: "/ct/lxc.monitor.t1"}[pid]
		for name, c := range map[string]string{
			"stat":          fixture.StatLine(pid, "x", 'R', 1, 0),
			"status":        fmt.Sprintf("Name:\tx\nUid:\t0\t0\t0\t0\nVmRSS:\t %d kB\n", rssKB),
			"cmdline":       "x\x00",
			"oom_score_adj": "-1000\n",
			"oom_adj":       "-17\n",
			"cgroup":        "0::" + cg + "\n",
		} {
			writeFake(t, filepath.Join(procRoot, fmt.Sprint(pid), name), c)
		}
	}
	writeFake(t, filepath.Join(procRoot, "1/cgroup"), "0::/\n")
	h, err := cgroupfs.Open(cgRoot, "")
	if err != nil {
		t.Fatal(err)
	}
	h.AnyFS = true
	return h, procfs.New(procRoot), cgRoot
}

func writeFake(t *testing.T, p, c string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
		t.Fatal(err)
	}
}

// ladderOn runs opts' ladder for an incident at cg and returns its results;
// ok is false when no ladder ran.
func ladderOn(t *testing.T, h cgroupfs.Hierarchy, proc procfs.FS, opts Options, cg string, log zerolog.Logger) (rs []Action, ok bool) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p, err := New(ctx, Config{CG: h, Proc: proc, Options: opts}, log)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan []Action, 1)
	p.report = hooks{done: func(_ *watchdog.Incident, rs []Action) { got <- rs }}
	p.Open(&watchdog.Incident{ID: "m", Verdict: watchdog.VerdictLoop, Cgroup: cg, Version: h.Version})
	p.Wait()
	select {
	case rs = <-got:
		return rs, true
	default:
		return nil, false
	}
}

func TestMonitorTaskNeverReset(t *testing.T) {
	h, proc, _ := fakeMonitorHost(t)
	opts := DefaultOptions()
	opts.DryRun, opts.Ladder = true, []string{ResetAdj}
	rs, _ := ladderOn(t, h, proc, opts, "/ct", zerolog.Nop())
	if len(rs) != 1 || rs[0].PID != 4242 {
		t.Fatalf("results %+v, want a reset of the payload's pid 4242, never the monitor's 4243", rs)
	}
}

func TestMonitorSubtreeNeverFrozen(t *testing.T) {
	h, proc, cgRoot := fakeMonitorHost(t)
	opts := DefaultOptions()
	opts.Ladder, opts.FreezeTimeout = []string{Freeze}, time.Second
	rs, _ := ladderOn(t, h, proc, opts, "/ct", zerolog.Nop())
	if len(rs) != 1 || rs[0].Done || !strings.Contains(rs[0].Error, "container monitor /ct/lxc.monitor.t1") {
		t.Fatalf("results %+v, want the freeze refused for the monitor", rs)
	}
	if b, _ := os.ReadFile(filepath.Join(cgRoot, "ct/cgroup.freeze")); string(b) != "0\n" {
		t.Fatalf("cgroup.freeze = %q", b)
	}
	// The payload alone is frozen: below a container nothing is a monitor.
	writeFake(t, filepath.Join(cgRoot, "ct/lxc.payload.t1/cgroup.freeze"), "0\n")
	writeFake(t, filepath.Join(cgRoot, "ct/lxc.payload.t1/cgroup.events"), "populated 1\nfrozen 1\n")
	writeFake(t, filepath.Join(cgRoot, "ct/lxc.payload.t1/memory.events"), "oom 50\noom_kill 0\n")
	writeFake(t, filepath.Join(cgRoot, "ct/lxc.payload.t1/lxc.monitor.tenant/cgroup.procs"), "")
	if rs, _ := ladderOn(t, h, proc, opts, "/ct/lxc.payload.t1", zerolog.Nop()); len(rs) != 1 || !rs[0].Verified {
		t.Fatalf("payload freeze: %+v, want it frozen", rs)
	}
}

func TestMonitorIncidentNoLadder(t *testing.T) {
	h, proc, _ := fakeMonitorHost(t)
	var logs testhost.SyncBuf
	opts := DefaultOptions()
	opts.Ladder = []string{Kill}
	rs, ran := ladderOn(t, h, proc, opts, "/lxc.monitor.t1", zerolog.New(&logs))
	if ran {
		t.Fatalf("a ladder ran for a monitor cgroup: %+v", rs)
	}
	if !strings.Contains(logs.String(), `"event":"monitor_not_acted_on"`) {
		t.Fatalf("log %s", logs.String())
	}
}
