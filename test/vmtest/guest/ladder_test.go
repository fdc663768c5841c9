//go:build vmguest

package guest

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestLadderKillExemptTask: reset-adj finds nothing (the task is exempt),
// kill ends the loop: SIGKILL through a pidfd works on a -1000 task.
func TestLadderKillExemptTask(t *testing.T) {
	e := Setup(t)
	RequireDaemon(t, e)
	cg := NewCgroup(t, e, 20)
	d := StartDaemon(t, e, "run", "--exempt-comm", "hog*", "--ladder", "reset-adj,kill")
	p := StartHog(t, e, cg, 64, -1000)
	inc := d.WaitEvent(t, detectTimeout, "incident verdict=loop", isIncident(cg, "loop"))
	act := d.WaitEvent(t, actionTimeout, "action kill", isAction(inc["incident"], "kill"))
	if act["done"] != true || act["verified"] != true {
		t.Errorf("kill action %v: want done+verified", act)
	}
	Eventually(t, actionTimeout, "hog killed", func() (bool, string) { return p.Exited(), ProcState(p.Pid) })
	if !p.KilledBy(syscall.SIGKILL) {
		t.Errorf("hog ended with %v, want SIGKILL", p.State())
	}
	if evs := d.Events(Ev("event", "action", "action", "reset-adj", "done", true)); len(evs) != 0 {
		t.Errorf("reset-adj acted on an exempt task: %v", evs)
	}
}

// TestLadderThawUndoesFreeze: freeze contains the loop; after the operator
// fixes the cause (here: the task made killable), `oomwatch thaw` undoes
// the freeze and the kernel's own OOM killer finishes the job.
func TestLadderThawUndoesFreeze(t *testing.T) {
	e := Setup(t)
	RequireDaemon(t, e)
	cg := NewCgroup(t, e, 20)
	d := StartDaemon(t, e, "run", "--ladder", "freeze")
	p := StartHog(t, e, cg, 64, -1000)
	inc := d.WaitEvent(t, detectTimeout, "incident verdict=loop", isIncident(cg, "loop"))
	d.WaitEvent(t, actionTimeout, "action freeze", isAction(inc["incident"], "freeze"))
	if ok, s := cg.Frozen(t); !ok {
		t.Fatalf("cgroup not frozen: %s", s)
	}
	if err := SetAdj(p.Pid, 0); err != nil { // the fix; raising needs no privilege
		t.Fatal(err)
	}
	out, errs, code := oomwatch(t, e, "thaw", cg.Rel())
	if code != 0 || !strings.Contains(out, "thawed") {
		t.Fatalf("oomwatch thaw: exit %d: %s %s", code, out, errs)
	}
	if ok, s := cg.Frozen(t); ok {
		t.Errorf("still frozen after oomwatch thaw: %s", s)
	}
	waitKilled(t, p, cg)
	if out, _, code := oomwatch(t, e, "thaw", cg.Rel()); code != 0 || !strings.Contains(out, "not frozen") {
		t.Errorf("thaw of a thawed cgroup: exit %d: %s", code, out)
	}
}

// TestLadderRaiseLimitAndRevert: raise-limit ends the loop by raising the
// limit; once usage has stayed below the original limit minus the margin
// for the hold time, the original comes back, without an OOM kill.
func TestLadderRaiseLimitAndRevert(t *testing.T) {
	raiseAndRevert(t, 20, 0, 21) // a little more than the limit: one or two steps suffice
}

// TestLadderRaiseUnalignedAndRevert: 10% of 48M is not a whole number of
// pages (48M + 10% = 55364812, which the kernel stores as 55361536). The
// raise must still be put back exactly after the hold; on v1 memsw (96M)
// rises by as much as the limit and comes back too.
func TestLadderRaiseUnalignedAndRevert(t *testing.T) {
	raiseAndRevert(t, 48, 96, 51)
}

// raiseAndRevert runs a raise-limit ladder for a hog of hogMB in a cgroup
// limited to limitMB (v1: memsw to memswMB when not 0), then ends the hog
// and checks that the reverter puts back every limit exactly.
func raiseAndRevert(t *testing.T, limitMB, memswMB, hogMB int) {
	e := Setup(t)
	RequireDaemon(t, e)
	cg := NewCgroup(t, e, limitMB)
	if memsw := cg.File("memory.memsw.limit_in_bytes"); memswMB > 0 && e.V1() {
		if _, err := os.Stat(memsw); err == nil {
			mustWrite(t, memsw, strconv.Itoa(memswMB<<20))
		}
	}
	orig := limits(t, cg)
	d := StartDaemon(t, e, "run", "--ladder", "raise-limit", "--revert-hold", "2s", "--state-dir", t.TempDir())
	p := StartHog(t, e, cg, hogMB, -1000)
	inc := d.WaitEvent(t, detectTimeout, "incident verdict=loop", isIncident(cg, "loop"))
	d.WaitEvent(t, actionTimeout, "ladder resolved", func(m map[string]any) bool {
		return Ev("event", "ladder_done", "incident", inc["incident"])(m) && m["outcome"] == "resolved"
	})
	raised := limits(t, cg)
	t.Logf("limits %v, raised to %v", orig, raised)
	delta := int64(-1)
	for k, v := range raised {
		if v <= orig[k] {
			t.Errorf("%s = %d after raise-limit, original %d", k, v, orig[k])
		}
		if delta >= 0 && v-orig[k] != delta {
			t.Errorf("limits raised by different amounts: %v from %v (memsw must rise with the limit)", raised, orig)
		}
		delta = v - orig[k]
	}
	if p.Exited() {
		t.Fatalf("hog died: %v (raise-limit must not kill)", p.State())
	}
	time.Sleep(3 * time.Second) // usage stays near the original: no revert
	if l := limits(t, cg); fmt.Sprint(l) != fmt.Sprint(raised) {
		t.Errorf("limits changed to %v while usage was above the original minus the margin (raised %v)", l, raised)
	}
	kills := cg.Counters(t).OOMKill
	p.Cmd.Process.Signal(syscall.SIGTERM)
	Eventually(t, 20*time.Second, "hog gone", func() (bool, string) { return p.Exited(), ProcState(p.Pid) })
	d.WaitEvent(t, 60*time.Second, "event=reverted", Ev("event", "reverted", "cgroup", cg.Rel()))
	for k, v := range limits(t, cg) {
		if v != orig[k] {
			t.Errorf("%s = %d after the revert, want the original %d", k, v, orig[k])
		}
	}
	if k := cg.Counters(t).OOMKill; k != kills {
		t.Errorf("oom_kill %d → %d around the revert: the revert must not OOM-kill", kills, k)
	}
}

// TestLadderPausedReleasedByRule (v1): a cgroup with oom_kill_disable=1
// stalls its task under_oom; with paused.action raise-limit oomwatch is its
// userspace OOM handler and raises the limit, which wakes the task.
func TestLadderPausedReleasedByRule(t *testing.T) {
	e := Setup(t)
	OnlyModes(t, e, "v1")
	RequireDaemon(t, e)
	cg := NewCgroup(t, e, 20)
	mustWrite(t, cg.File("memory.oom_control"), "1")
	d := StartDaemon(t, e, "run", "--paused-action", "raise-limit", "--state-dir", t.TempDir())
	p := StartHog(t, e, cg, 24, 0) // allocation stalls at the limit
	inc := d.WaitEvent(t, detectTimeout, "incident verdict=paused", isIncident(cg, "paused"))
	act := d.WaitEvent(t, actionTimeout, "action raise-limit", isAction(inc["incident"], "raise-limit"))
	t.Logf("action: %v", act)
	Eventually(t, actionTimeout, "under_oom 0", func() (bool, string) {
		oc := readKV(t, cg.File("memory.oom_control"))
		return oc["under_oom"] == 0, readFile(t, cg.File("memory.oom_control"))
	})
	if p.Exited() {
		t.Errorf("hog exited: %v; a raised limit must let it continue", p.State())
	}
	if oc := readKV(t, cg.File("memory.oom_control")); oc["oom_kill"] != 0 {
		t.Errorf("oom_kill %d: nothing should have been killed", oc["oom_kill"])
	}
	p.Cmd.Process.Kill()
}
