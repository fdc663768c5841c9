package policy

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/oomwatch/oomwatch/internal/cgroupfs"
	"github.com/oomwatch/oomwatch/internal/procfs"
	"github.com/oomwatch/oomwatch/watchdog"
)

// faultTree is a fake v2 hierarchy whose cgroups hold no task any more (the
// re-inspection after a failed pick finds nothing) and count no OOM.
func faultTree(t *testing.T, cgs ...string) cgroupfs.Hierarchy {
	t.Helper()
	root := t.TempDir()
	for _, cg := range append([]string{""}, cgs...) {
		dir := filepath.Join(root, cg)
		for name, c := range map[string]string{
			"cgroup.procs":  "",
			"memory.events": "oom 50\noom_kill 0\n",
			"memory.max":    "20971520\n",
		} {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, name), []byte(c), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := os.WriteFile(filepath.Join(root, "cgroup.controllers"), []byte("memory\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	h, err := cgroupfs.Open(root, "")
	if err != nil {
		t.Fatal(err)
	}
	h.AnyFS = true
	return h
}

// ladderOnce runs the reset-adj ladder for inc with the real /proc (pidfds
// need it) and returns the results.
func ladderOnce(t *testing.T, h cgroupfs.Hierarchy, inc *watchdog.Incident) []Action {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	o := DefaultOptions()
	o.Ladder, o.VerifyTimeout, o.QuietFor = []string{ResetAdj}, 500*time.Millisecond, 100*time.Millisecond
	var logs strings.Builder
	p, err := New(ctx, Config{CG: h, Proc: procfs.New("/proc"), Options: o}, zerolog.New(&logs))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan []Action, 1)
	p.report = hooks{done: func(_ *watchdog.Incident, rs []Action) { done <- rs }}
	p.Open(inc)
	var rs []Action
	select {
	case rs = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("ladder did not finish")
	}
	cancel()
	p.Wait()
	t.Logf("results %+v\nlog:\n%s", rs, logs.String())
	return rs
}

// startChild starts a sleeping child process (a real PID for pidfd_open).
func startChild(t *testing.T) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd
}

func incidentFor(cg string, pid int) *watchdog.Incident {
	return &watchdog.Incident{ID: "fault", Verdict: watchdog.VerdictLoop, Cgroup: cg, Version: 2, Started: time.Now(),
		Candidates: []watchdog.Candidate{{PID: pid, PPID: os.Getpid(), Comm: "sleep", RSS: 1 << 20, OOMScoreAdj: -1000,
			Cgroup: cg, Unkillable: true, State: "S"}}}
}

// TestFaultTaskExitsBeforeAction: the incident's only candidate exits (and
// is reaped) between the inspection and reset-adj. The action must fail
// cleanly with a clear error, write nothing and not panic; the ladder ends.
func TestFaultTaskExitsBeforeAction(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: pidfd_open of a child and its /proc dir")
	}
	h := faultTree(t, "ct")
	child := startChild(t)
	pid := child.Process.Pid
	child.Process.Kill()
	child.Wait() // reaped: the PID is free (and may even be reused by now)

	rs := ladderOnce(t, h, incidentFor("/ct", pid))
	if len(rs) != 1 {
		t.Fatalf("results %+v: want exactly one reset-adj result for the gone task", rs)
	}
	r := rs[0]
	if r.Name != ResetAdj || r.PID != pid || r.Done || r.Verified {
		t.Errorf("result %+v: want reset-adj on pid %d, not done, not verified", r, pid)
	}
	// ErrGone normally; ErrNotInCgroup if another process already reused the PID.
	if !strings.Contains(r.Error, procfs.ErrGone.Error()) && !strings.Contains(r.Error, procfs.ErrNotInCgroup.Error()) {
		t.Errorf("result error %q: want it to say the process is gone", r.Error)
	}
}

// TestFaultTaskZombieBeforeAction: the candidate was SIGKILLed but not yet
// reaped (a zombie keeps its PID, so the pidfd check passes). The write may
// land on the zombie, which is harmless; it must not panic or reach any
// other process.
func TestFaultTaskZombieBeforeAction(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	h := faultTree(t)
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	defer cmd.Wait()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for procState(pid) != "Z" {
		if time.Now().After(deadline) {
			t.Fatalf("pid %d state %q, want a zombie", pid, procState(pid))
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The child's v2 line is "0::/" on hosts without cgroup2 and its real
	// path otherwise: use an incident on the fake root only when it matches.
	if lines, err := procfs.New("/proc").Cgroups(pid); err != nil || !h.InCgroup("/", lines[len(lines)-1].ID, lines[len(lines)-1].Controllers, lines[len(lines)-1].Path) {
		t.Skipf("zombie's cgroup %v (%v) is not / on this host", lines, err)
	}
	rs := ladderOnce(t, h, incidentFor("/", pid))
	if len(rs) == 0 || rs[0].PID != pid {
		t.Fatalf("results %+v", rs)
	}
	t.Logf("zombie: done=%v verified=%v err=%q detail=%q", rs[0].Done, rs[0].Verified, rs[0].Error, rs[0].Detail)
	if st := procState(pid); st != "Z" {
		t.Errorf("zombie pid %d changed state to %q", pid, st)
	}
}

func procState(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return ""
	}
	return s[i+2 : i+3]
}
