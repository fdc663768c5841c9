//go:build vmguest

package guest

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/oomwatch/oomwatch/internal/procfs"
	"github.com/oomwatch/oomwatch/policy"
	"github.com/oomwatch/oomwatch/watchdog"
)

// These scenarios drive package policy directly on the VM's real cgroups
// and /proc with an incident whose inspection went stale before the ladder
// ran: the race is made deterministic by changing the world between the
// inspection and the action.

func findCand(t *testing.T, cands []watchdog.Candidate, pid int) watchdog.Candidate {
	t.Helper()
	for _, c := range cands {
		if c.PID == pid {
			if !c.Unkillable || c.OOMScoreAdj != -1000 {
				t.Fatalf("inspection: pid %d not unkillable: %+v", pid, c)
			}
			return c
		}
	}
	t.Fatalf("inspection did not list pid %d: %+v", pid, cands)
	return watchdog.Candidate{}
}

// noLanding checks that no result of the ladder changed anything.
func noLanding(t *testing.T, rs []policy.Action, pid int, wantErr string) {
	t.Helper()
	if len(rs) == 0 {
		t.Fatalf("ladder returned no result: want a refused %s on pid %d", policy.ResetAdj, pid)
	}
	for _, r := range rs {
		if r.Done {
			t.Errorf("result %+v: an action was carried out", r)
		}
	}
	r := rs[0]
	if r.Name != policy.ResetAdj || r.PID != pid || !strings.Contains(r.Error, wantErr) {
		t.Errorf("first result %+v: want reset-adj on pid %d refused with %q", r, pid, wantErr)
	}
}

// TestFaultTaskMovedBeforeAction: a -1000 task listed by the inspection
// moves to another cgroup before reset-adj acts. The pidfd-verified
// membership check must refuse the write: its adj stays -1000. Control: a
// move within the incident's subtree (sibling child cgroup) still lands.
func TestFaultTaskMovedBeforeAction(t *testing.T) {
	e := Setup(t)
	cgA, cgB := NewCgroup(t, e, 64), NewCgroup(t, e, 64)
	p := StartHog(t, e, cgA, 1, -1000, "-comm", "mover")
	cands := inspect(t, cgA)
	findCand(t, cands, p.Pid)
	inc := staleIncident(cgA, map[string]int{"v1": 1, "v2": 2}[e.Mode], cands)

	moveTo(t, p.Pid, cgB)
	if got := memcgOf(p.Pid); got != cgB.Rel() {
		t.Fatalf("pid %d memory cgroup %q after the move, want %q", p.Pid, got, cgB.Rel())
	}
	rs := runLadder(t, inc, fastOpts(policy.ResetAdj))
	noLanding(t, rs, p.Pid, procfs.ErrNotInCgroup.Error())
	if adj, err := Adj(p.Pid); err != nil || adj != -1000 {
		t.Errorf("moved task pid %d: oom_score_adj %d (%v), want -1000 untouched", p.Pid, adj, err)
	}
	if p.Exited() {
		t.Errorf("moved task exited: %v", p.State())
	}

	// Control: the same race inside the incident's subtree must still act.
	cgC := NewCgroup(t, e, 64)
	c1, c2 := NewChild(t, cgC, "c1"), NewChild(t, cgC, "c2")
	q := StartHog(t, e, c1, 1, -1000, "-comm", "mover2")
	cands = inspect(t, cgC)
	findCand(t, cands, q.Pid)
	inc = staleIncident(cgC, inc.Version, cands)
	moveTo(t, q.Pid, c2)
	rs = runLadder(t, inc, fastOpts(policy.ResetAdj))
	if len(rs) == 0 || !rs[0].Done || rs[0].PID != q.Pid {
		t.Errorf("move within the subtree: results %+v, want reset-adj done on pid %d", rs, q.Pid)
	}
	if adj, err := Adj(q.Pid); err != nil || adj != 0 {
		t.Errorf("task moved within the subtree: oom_score_adj %d (%v), want 0", adj, err)
	}
}

// TestFaultPIDReuse: the inspection lists pid N (-1000, in the looping
// cgroup); that task exits and a new, unrelated -1000 process in another
// cgroup gets pid N (ns_last_pid). The stale incident's ladder (reset-adj,
// then kill) must not touch it.
func TestFaultPIDReuse(t *testing.T) {
	e := Setup(t)
	cgA, cgB := NewCgroup(t, e, 64), NewCgroup(t, e, 64)
	p := StartHog(t, e, cgA, 1, -1000, "-comm", "old")
	n := p.Pid
	cands := inspect(t, cgA)
	findCand(t, cands, n)
	inc := staleIncident(cgA, map[string]int{"v1": 1, "v2": 2}[e.Mode], cands)

	p.Cmd.Process.Kill()
	Eventually(t, 10*time.Second, "inspected task reaped", func() (bool, string) { return p.Exited(), ProcState(n) })

	ready := "/tmp/fault-pidreuse-ready"
	args := []string{"-mb", "1", "-adj", "-1000", "-comm", "newcomer", "-ready", ready}
	for _, f := range cgB.ProcsFiles() {
		args = append(args, "-cgroup-procs", f)
	}
	q := startAtPid(t, n, e.Hog, args...)
	Eventually(t, 10*time.Second, "new process at pid N ready in the other cgroup", func() (bool, string) {
		a, _ := Adj(n)
		return !q.Exited() && a == -1000 && memcgOf(n) == cgB.Rel(), memcgOf(n)
	})

	o := fastOpts(policy.ResetAdj, policy.Kill)
	rs := runLadder(t, inc, o)
	noLanding(t, rs, n, procfs.ErrNotInCgroup.Error())
	if adj, err := Adj(n); err != nil || adj != -1000 {
		t.Errorf("recycled pid %d: oom_score_adj %d (%v), want -1000 untouched", n, adj, err)
	}
	time.Sleep(100 * time.Millisecond)
	if q.Exited() || syscall.Kill(n, 0) != nil {
		t.Errorf("recycled pid %d (the unrelated process) is gone: %v", n, q.State())
	}
	// The kill rung re-inspects: the looping cgroup is empty now.
	var killed bool
	for _, r := range rs {
		if r.Name == policy.Kill && r.Done {
			killed = true
		}
	}
	if killed {
		t.Errorf("kill rung acted on a cgroup with no task left: %+v", rs)
	}
}
