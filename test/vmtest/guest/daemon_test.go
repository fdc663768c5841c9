//go:build vmguest

package guest

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Generous: TCG under a loaded 2-core host; never asserted as timings.
const (
	detectTimeout = 30 * time.Second
	actionTimeout = 30 * time.Second
)

func isIncident(cg *Cgroup, verdict string) func(map[string]any) bool {
	return func(m map[string]any) bool {
		return Ev("event", "incident", "cgroup", cg.Rel())(m) && (verdict == "" || fmt.Sprint(m["verdict"]) == verdict)
	}
}

func isAction(incident any, action string) func(map[string]any) bool {
	return func(m map[string]any) bool {
		return Ev("event", "action", "incident", incident)(m) && (action == "" || fmt.Sprint(m["action"]) == action)
	}
}

// oomQuiet checks that the cgroup's OOM activity does not grow over 500ms
// (v2: memory.events oom; v1: notifications on our own eventfd).
func oomQuiet(t *testing.T, cg *Cgroup, efd *OOMEventfd) {
	t.Helper()
	if efd != nil {
		efd.Take()
		time.Sleep(500 * time.Millisecond)
		if n := efd.Take(); n != 0 {
			t.Errorf("%d OOM eventfd notifications in 500ms after the loop was broken, want 0", n)
		}
		return
	}
	k0 := cg.Counters(t)
	time.Sleep(500 * time.Millisecond)
	if k1 := cg.Counters(t); k1.OOM != k0.OOM {
		t.Errorf("oom went %d → %d in 500ms after the loop was broken, want stable", k0.OOM, k1.OOM)
	}
}

// brokenByResetAdj waits for the daemon to call holder's loop a loop, to
// reset p's oom_score_adj (done and verified) and for the kernel to kill p in
// cg; it returns the incident.
func brokenByResetAdj(t *testing.T, d *Daemon, holder *Cgroup, p *Proc, cg *Cgroup) map[string]any {
	t.Helper()
	inc := d.WaitEvent(t, detectTimeout, "incident verdict=loop on "+holder.Rel(), isIncident(holder, "loop"))
	t.Logf("incident: %v", inc)
	act := d.WaitEvent(t, actionTimeout, "action reset-adj", isAction(inc["incident"], "reset-adj"))
	t.Logf("action: %v", act)
	if act["done"] != true || act["verified"] != true || fmt.Sprint(act["pid"]) != fmt.Sprint(p.Pid) {
		t.Errorf("reset-adj action %v: want done+verified on pid %d", act, p.Pid)
	}
	waitKilled(t, p, cg)
	return inc
}

// waitKilled waits for p to die and checks it was SIGKILLed.
func waitKilled(t *testing.T, p *Proc, cg *Cgroup) {
	t.Helper()
	Eventually(t, actionTimeout, fmt.Sprintf("pid %d killed", p.Pid), func() (bool, string) {
		return p.Exited(), fmt.Sprintf("state %s adj %s, %s", ProcState(p.Pid), adjString(p.Pid), cg.Counters(t))
	})
	if !p.KilledBy(syscall.SIGKILL) {
		t.Errorf("pid %d ended with %v, want SIGKILL", p.Pid, p.State())
	}
}

func adjString(pid int) string {
	a, err := Adj(pid)
	if err != nil {
		return "?"
	}
	return fmt.Sprint(a)
}

// crngReady reports whether getrandom(2) would return without waiting.
func crngReady() bool {
	var b [1]byte
	_, err := unix.Getrandom(b[:], unix.GRND_NONBLOCK)
	return err == nil
}

// waitingForEntropy returns evidence if a thread of pid sits in getrandom(2)
// (x86_64 syscall 318) or in the kernel's entropy wait.
func waitingForEntropy(pid int) string {
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, task := range tasks {
		dir := fmt.Sprintf("/proc/%d/task/%s/", pid, task.Name())
		sc, _ := os.ReadFile(dir + "syscall")
		st, _ := os.ReadFile(dir + "stack")
		if strings.HasPrefix(string(sc), "318 ") || strings.Contains(string(st), "random") || strings.Contains(string(st), "entropy") {
			return fmt.Sprintf("tid %s syscall %q stack:\n%s", task.Name(), strings.TrimSpace(string(sc)), st)
		}
	}
	return ""
}

// TestDaemonFirstIncidentNoEntropyWait: the tier's first loop runs while the
// VM's CRNG is still initialising (no virtio-rng; "random: crng init done"
// comes seconds after boot). Opening an incident must not wait for it: an
// OOM loop early in boot would go on until the CRNG is ready.
func TestDaemonFirstIncidentNoEntropyWait(t *testing.T) {
	e := Setup(t)
	RequireDaemon(t, e)
	if crngReady() {
		Unsupported(t, "the kernel CRNG is already initialised: cannot observe an entropy wait")
	}
	cg := NewCgroup(t, e, 20)
	d := StartDaemon(t, e, "run")
	p := StartHog(t, e, cg, 64, -1000)
	var evidence string
	readyAtIncident := false
	Eventually(t, 60*time.Second, "incident verdict=loop", func() (bool, string) {
		if len(d.Events(isIncident(cg, "loop"))) > 0 {
			return true, ""
		}
		if evidence == "" {
			evidence = waitingForEntropy(d.Pid)
		}
		readyAtIncident = crngReady()
		return false, fmt.Sprintf("crng ready %v, %s", readyAtIncident, cg.Counters(t))
	})
	if evidence != "" {
		t.Errorf("BUG: the daemon waited for the kernel CRNG (getrandom) while the loop went on; incident only after CRNG ready=%v; OOM activity so far %d; %s",
			readyAtIncident, cg.OOMActivity(t), evidence)
	}
	inc := d.Events(isIncident(cg, "loop"))[0]
	d.WaitEvent(t, actionTimeout, "action reset-adj", isAction(inc["incident"], "reset-adj"))
	waitKilled(t, p, cg)
}

// TestDaemonBreaksLoop: one -1000 hog in a 20M cgroup wanting 64M: the
// daemon reports a loop and resets the hog's adj; the kernel kills it.
func TestDaemonBreaksLoop(t *testing.T) {
	e := Setup(t)
	RequireDaemon(t, e)
	cg := NewCgroup(t, e, 20)
	km := OpenKmsg(t)
	var efd *OOMEventfd
	if e.V1() {
		efd = RegisterOOMEventfd(t, cg)
	}
	d := StartDaemon(t, e, "run")
	if !e.V1() {
		// The OOM notification is heard by polling memory.events, not from
		// the workqueue's later inotify event: the daemon holds it open.
		waitPolled(t, d.Pid, filepath.Join(cg.Mem, "memory.events"))
	}
	p := StartHog(t, e, cg, 64, -1000)

	inc := brokenByResetAdj(t, d, cg, p, cg)
	if k := cg.Counters(t); k.OOMKill != 1 {
		t.Errorf("oom_kill = %d, want 1 (%s)", k.OOMKill, k)
	}
	oomQuiet(t, cg, efd)
	done := d.WaitEvent(t, actionTimeout, "ladder_done", Ev("event", "ladder_done", "incident", inc["incident"]))
	if done["outcome"] != "resolved" {
		t.Errorf("ladder_done outcome %v, want resolved", done["outcome"])
	}
	if len(Grep(km.Read(), fmt.Sprintf(`Killed process %d \(`, p.Pid))) == 0 {
		t.Errorf("no kernel \"Killed process %d\" line", p.Pid)
	}
	d.WaitEvent(t, actionTimeout, "event=resolved", Ev("event", "resolved", "incident", inc["incident"]))
}

// TestDaemonParentLimit: the limit is on a parent cgroup, the -1000 hog in a
// child: the incident belongs to the parent (the limit holder).
func TestDaemonParentLimit(t *testing.T) {
	e := Setup(t)
	RequireDaemon(t, e)
	parent := NewCgroup(t, e, 20)
	child := NewChild(t, parent, "app")
	d := StartDaemon(t, e, "run")
	p := StartHog(t, e, child, 64, -1000)

	brokenByResetAdj(t, d, parent, p, child) // the parent holds the limit
	if evs := d.Events(isIncident(child, "")); len(evs) != 0 {
		t.Errorf("incident(s) on the child %s, want only on the parent: %v", child.Rel(), evs)
	}
	pk, ck := parent.Counters(t), child.Counters(t)
	t.Logf("parent %s; child %s", pk, ck)
	if e.V1() {
		if pk.OOMKill+ck.OOMKill != 1 { // v1 oom_kill is local to the victim's memcg
			t.Errorf("v1 oom_kill parent+child = %d, want 1", pk.OOMKill+ck.OOMKill)
		}
	} else if pk.OOMKill != 1 {
		t.Errorf("parent oom_kill = %d, want 1", pk.OOMKill)
	}
}

// TestDaemonNormalOOM: a killable hog is simply OOM-killed; a -1000 task
// beside it that does not allocate is none of the daemon's business.
func TestDaemonNormalOOM(t *testing.T) {
	e := Setup(t)
	RequireDaemon(t, e)
	cg := NewCgroup(t, e, 20)
	d := StartDaemon(t, e, "run")
	keeper := StartHog(t, e, cg, 0, -1000)
	p := StartHog(t, e, cg, 64, 0, "-step-delay", "2ms")
	waitKilled(t, p, cg)
	if keeper.Exited() {
		t.Fatalf("the -1000 bystander died: %v", keeper.State())
	}
	time.Sleep(3 * time.Second) // > the detection window and the resolve delay
	k := cg.Counters(t)
	t.Logf("after the kill: %s", k)
	if k.OOMKill != 1 {
		t.Errorf("oom_kill = %d, want 1", k.OOMKill)
	}
	if evs := d.Events(isIncident(cg, "loop")); len(evs) != 0 {
		t.Errorf("incident with verdict loop for a normal OOM: %v", evs)
	}
	if evs := d.Events(Ev("event", "incident")); len(evs) != 0 {
		t.Logf("note: other incidents: %v", evs)
	}
	if evs := d.Events(Ev("event", "action")); len(evs) != 0 {
		t.Errorf("daemon acted on a normal OOM: %v", evs)
	}
	if a, err := Adj(keeper.Pid); err != nil || a != -1000 {
		t.Errorf("bystander oom_score_adj %d, %v; want -1000 untouched", a, err)
	}
}

// TestDaemonExemptEscalatesToFreeze: the hog's comm is exempt, so reset-adj
// finds nothing and the ladder freezes the cgroup.
func TestDaemonExemptEscalatesToFreeze(t *testing.T) {
	e := Setup(t)
	RequireDaemon(t, e)
	cg := NewCgroup(t, e, 20) // v1: memory and freezer cgroups at the same path, the hog joins both
	d := StartDaemon(t, e, "run", "--exempt-comm", "hog*")
	p := StartHog(t, e, cg, 64, -1000)

	inc := d.WaitEvent(t, detectTimeout, "incident verdict=loop", isIncident(cg, "loop"))
	act := d.WaitEvent(t, actionTimeout, "action freeze", isAction(inc["incident"], "freeze"))
	t.Logf("action: %v", act)
	if act["done"] != true || act["verified"] != true {
		t.Errorf("freeze action %v: want done+verified", act)
	}
	done := d.WaitEvent(t, actionTimeout, "ladder_done", Ev("event", "ladder_done", "incident", inc["incident"]))
	if done["outcome"] != "contained" {
		t.Errorf("ladder_done outcome %v, want contained", done["outcome"])
	}
	if evs := d.Events(isAction(inc["incident"], "reset-adj")); len(evs) != 0 {
		t.Errorf("reset-adj acted on an exempt task: %v", evs)
	}
	if ok, s := cg.Frozen(t); !ok {
		t.Errorf("cgroup not frozen: %s", s)
	}
	if p.Exited() {
		t.Errorf("hog exited: %v", p.State())
	}
	if a, err := Adj(p.Pid); err != nil || a != -1000 {
		t.Errorf("exempt hog oom_score_adj %d, %v; want -1000", a, err)
	}
	// clean up: thaw, kill
	cg.Thaw(t)
	p.Cmd.Process.Kill()
	Eventually(t, 20*time.Second, "hog gone after thaw+SIGKILL", func() (bool, string) {
		return p.Exited(), "state " + ProcState(p.Pid)
	})
}

// TestDaemonDryRun: the loop is reported, nothing is changed.
func TestDaemonDryRun(t *testing.T) {
	e := Setup(t)
	RequireDaemon(t, e)
	cg := NewCgroup(t, e, 20)
	d := StartDaemon(t, e, "run", "--dry-run")
	p := StartHog(t, e, cg, 64, -1000)

	inc := d.WaitEvent(t, detectTimeout, "incident verdict=loop", isIncident(cg, "loop"))
	act := d.WaitEvent(t, actionTimeout, "action (dry-run)", isAction(inc["incident"], ""))
	t.Logf("action: %v", act)
	if act["done"] != false || !strings.Contains(fmt.Sprint(act["detail"]), "dry-run") {
		t.Errorf("dry-run action %v: want done=false, detail containing \"dry-run\"", act)
	}
	done := d.WaitEvent(t, actionTimeout, "ladder_done", Ev("event", "ladder_done", "incident", inc["incident"]))
	if done["outcome"] != "dry-run" {
		t.Errorf("ladder_done outcome %v, want dry-run", done["outcome"])
	}
	o0 := cg.OOMActivity(t)
	time.Sleep(2 * time.Second)
	if p.Exited() {
		t.Fatalf("hog died under --dry-run: %v", p.State())
	}
	if a, err := Adj(p.Pid); err != nil || a != -1000 {
		t.Errorf("hog oom_score_adj %d, %v; want -1000", a, err)
	}
	if ok, s := cg.Frozen(t); ok {
		t.Errorf("cgroup frozen under --dry-run: %s", s)
	}
	if o1 := cg.OOMActivity(t); o1 <= o0 {
		t.Errorf("loop stopped under --dry-run? OOM activity %d → %d", o0, o1)
	}
	for _, a := range d.Events(Ev("event", "action")) {
		if a["done"] != false {
			t.Errorf("action with done=%v under --dry-run: %v", a["done"], a)
		}
	}
}

// TestDaemonCgroupRemovedMidIncident: the looping cgroup disappears while its
// incident is open; the daemon survives, resolves it and still breaks a new loop.
func TestDaemonCgroupRemovedMidIncident(t *testing.T) {
	e := Setup(t)
	RequireDaemon(t, e)
	// reset-adj only, and the first hog exempt: its incident stays open with the loop going on
	d := StartDaemon(t, e, "run", "--ladder", "reset-adj", "--exempt-comm", "stuck")
	cg1 := NewCgroup(t, e, 20)
	p1 := StartHog(t, e, cg1, 64, -1000, "-comm", "stuck")
	inc := d.WaitEvent(t, detectTimeout, "incident verdict=loop on "+cg1.Rel(), isIncident(cg1, "loop"))
	done := d.WaitEvent(t, actionTimeout, "ladder_done", Ev("event", "ladder_done", "incident", inc["incident"]))
	t.Logf("first ladder: %v", done)
	if p1.Exited() {
		t.Fatalf("exempt hog died: %v", p1.State())
	}

	p1.Cmd.Process.Kill()
	Eventually(t, 20*time.Second, "looping hog gone after SIGKILL", func() (bool, string) {
		return p1.Exited(), "state " + ProcState(p1.Pid)
	})
	cg1.Destroy()
	for _, dir := range []string{cg1.Mem, cg1.Freezer} {
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Fatalf("%s not removed: %v", dir, err)
		}
	}
	res := d.WaitEvent(t, actionTimeout, "event=resolved for the removed cgroup", Ev("event", "resolved", "incident", inc["incident"], "cgroup", cg1.Rel()))
	t.Logf("resolved: %v", res)
	time.Sleep(500 * time.Millisecond)
	if !d.Alive() {
		t.Fatal("daemon died after the cgroup was removed")
	}

	cg2 := NewCgroup(t, e, 20)
	p2 := StartHog(t, e, cg2, 64, -1000)
	brokenByResetAdj(t, d, cg2, p2, cg2)
}

// TestDaemonInheritedProtection: the original incident. "sshd" protects
// itself with the legacy oom_adj -17, a shell it spawned starts "java" in a
// container cgroup; java inherits -1000 and loops. The incident names sshd.
func TestDaemonInheritedProtection(t *testing.T) {
	e := Setup(t)
	RequireDaemon(t, e)
	cg := NewCgroup(t, e, 20)
	bin := t.TempDir()
	java := filepath.Join(bin, "java")
	b, err := os.ReadFile(e.Hog)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(java, b, 0o755); err != nil {
		t.Fatal(err)
	}
	ready := filepath.Join(bin, "java.ready")
	var procs []string
	for _, f := range cg.ProcsFiles() {
		procs = append(procs, "-cgroup-procs "+f)
	}
	// a script's comm is its file name: "sshd". The inner sh -c runs two
	// commands, so it forks java instead of exec'ing it.
	script := fmt.Sprintf("#!/bin/sh\necho -17 > /proc/self/oom_adj || exit 1\nsh -c '%s -mb 64 -ready %s %s; echo java ended' &\nwait\n",
		java, ready, strings.Join(procs, " "))
	sshd := filepath.Join(bin, "sshd")
	if err := os.WriteFile(sshd, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}

	sp := Start(t, sshd)
	var javaPid int
	Eventually(t, 15*time.Second, "java ready in the cgroup", func() (bool, string) {
		if sp.Exited() {
			t.Fatalf("sshd exited: %v: %s", sp.State(), sp.StderrText())
		}
		_, err := os.Stat(ready)
		if pids := cg.Procs(); len(pids) == 1 {
			javaPid = pids[0]
		}
		return err == nil && javaPid != 0, fmt.Sprint(err, cg.Procs())
	})
	b, _ = os.ReadFile(fmt.Sprintf("/proc/%d/comm", sp.Pid))
	t.Logf("sshd pid %d comm %q adj %s; java pid %d adj %s", sp.Pid, strings.TrimSpace(string(b)), adjString(sp.Pid), javaPid, adjString(javaPid))

	// The preventive audit, before oomwatch runs: the loop is flagged and
	// the -17 is traced to the "sshd" that leaked it.
	out, errs, code := oomwatch(t, e, "scan", "--json")
	if code != 2 {
		t.Errorf("oomwatch scan: exit %d, want 2 (an OOM would loop): %s", code, errs)
	}
	var scan struct {
		Cgroups []struct {
			Cgroup     string `json:"cgroup"`
			WouldLoop  bool   `json:"would_loop"`
			Unkillable []struct {
				Comm   string `json:"comm"`
				Origin *struct {
					Comm string `json:"comm"`
					PID  int    `json:"pid"`
				} `json:"origin"`
			} `json:"unkillable"`
		} `json:"cgroups"`
	}
	if err := json.Unmarshal([]byte(out), &scan); err != nil {
		t.Fatalf("scan --json: %v: %s", err, out)
	}
	flagged := false
	for _, c := range scan.Cgroups {
		if c.Cgroup != cg.Rel() {
			continue
		}
		flagged = c.WouldLoop
		for _, u := range c.Unkillable {
			if u.Comm == "java" && (u.Origin == nil || u.Origin.Comm != "sshd" || u.Origin.PID != sp.Pid) {
				t.Errorf("scan: java's origin %+v, want sshd pid %d", u.Origin, sp.Pid)
			}
		}
	}
	if !flagged {
		t.Errorf("scan did not flag %s as would_loop: %s", cg.Rel(), out)
	}

	d := StartDaemon(t, e, "run")

	inc := d.WaitEvent(t, detectTimeout, "incident verdict=loop", isIncident(cg, "loop"))
	t.Logf("incident: %v", inc)
	if inc["origin_comm"] != "sshd" || fmt.Sprint(inc["origin_pid"]) != fmt.Sprint(sp.Pid) || fmt.Sprint(inc["origin_parent_pid"]) != fmt.Sprint(os.Getpid()) {
		t.Errorf("incident origin %v pid %v parent %v; want sshd pid %d parent %d",
			inc["origin_comm"], inc["origin_pid"], inc["origin_parent_pid"], sp.Pid, os.Getpid())
	}
	act := d.WaitEvent(t, actionTimeout, "action reset-adj", isAction(inc["incident"], "reset-adj"))
	if act["done"] != true || act["verified"] != true || fmt.Sprint(act["pid"]) != fmt.Sprint(javaPid) || act["comm"] != "java" {
		t.Errorf("reset-adj action %v: want done+verified on java pid %d", act, javaPid)
	}
	Eventually(t, actionTimeout, "java killed", func() (bool, string) {
		return len(cg.Procs()) == 0, fmt.Sprintf("procs %v, %s", cg.Procs(), cg.Counters(t))
	})
	if k := cg.Counters(t); k.OOMKill != 1 {
		t.Errorf("oom_kill = %d, want 1", k.OOMKill)
	}
	if a, err := Adj(sp.Pid); err == nil && a != -1000 {
		t.Errorf("sshd oom_score_adj %d: the daemon must only touch tasks in the cgroup", a)
	}
}

// TestDaemonMemoryEnabledAfterStart: a v2 machine without systemd, as a new
// user may first try oomwatch: the root's cgroup.subtree_control has no
// "memory" when the daemon starts. It must say so (event=memory_not_enabled,
// with the command that enables it), and once +memory is enabled, a cgroup
// made before that (it had no memory files when it was armed) and given a
// limit afterwards must be watched: its loop is broken without a restart.
func TestDaemonMemoryEnabledAfterStart(t *testing.T) {
	e := Setup(t)
	OnlyModes(t, e, "v2")
	RequireDaemon(t, e)
	ctl := "/sys/fs/cgroup/cgroup.subtree_control"
	// Refused (EBUSY) while a child has memory in its own subtree_control:
	// every test removes its cgroups, so none has here.
	if err := os.WriteFile(ctl, []byte("-memory"), 0); err != nil {
		t.Fatalf("disable the memory controller at the root: %v", err)
	}
	t.Cleanup(func() {
		if err := os.WriteFile(ctl, []byte("+memory"), 0); err != nil {
			t.Errorf("re-enable the memory controller at the root: %v", err)
		}
	})
	cg := newCgroupDirs(t, e) // no memory files yet: no limit to set

	d := StartDaemon(t, e, "run")
	warn := d.WaitEvent(t, 10*time.Second, "event=memory_not_enabled", Ev("event", "memory_not_enabled"))
	if msg, _ := warn["message"].(string); !strings.Contains(msg, "echo +memory > "+ctl) {
		t.Errorf("memory_not_enabled message %q does not say how to enable it", msg)
	}

	mustWrite(t, ctl, "+memory")
	cg.SetLimit(t, 20)
	p := StartHog(t, e, cg, 64, -1000)
	brokenByResetAdj(t, d, cg, p, cg)
	if evs := d.Events(Ev("event", "limited_view")); len(evs) != 0 {
		t.Errorf("a root without +memory was called a limited view: %v", evs)
	}
}

// waitPolled waits until process pid holds file open (the daemon polls a
// cgroup's memory.events once its start-up baselines are read).
func waitPolled(t *testing.T, pid int, file string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		for _, e := range ents {
			if l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name())); err == nil && l == file {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("daemon (pid %d) does not hold %s open after 10s: its OOM notifications would wait for the workqueue's inotify event", pid, file)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
