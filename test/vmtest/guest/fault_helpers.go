//go:build vmguest

package guest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/oomwatch/oomwatch/internal/cgroupfs"
	"github.com/oomwatch/oomwatch/internal/procfs"
	"github.com/oomwatch/oomwatch/policy"
	"github.com/oomwatch/oomwatch/watchdog"
)

// Helpers of the fault scenarios (fault_*_test.go): drive the policy
// package directly against the VM's real cgroups and /proc, move tasks,
// recycle PIDs, SIGKILL a daemon.

// hostCG returns the VM's memory hierarchy as the daemon detects it.
func hostCG(t testing.TB) (cgroupfs.Hierarchy, procfs.FS) {
	t.Helper()
	h, err := cgroupfs.Detect("/proc")
	if err != nil {
		t.Fatalf("detect cgroups: %v", err)
	}
	return h, procfs.New("/proc")
}

// inspect lists the tasks of cg as the watchdog does when it opens an incident.
func inspect(t testing.TB, cg *Cgroup) []watchdog.Candidate {
	t.Helper()
	h, proc := hostCG(t)
	cands, err := watchdog.Inspector{CG: h, Proc: proc}.Candidates(cg.Rel())
	if err != nil {
		t.Fatalf("inspect %s: %v", cg.Rel(), err)
	}
	return cands
}

// staleIncident builds the loop incident the watchdog would have opened for
// cg with the given (already inspected) candidates.
func staleIncident(cg *Cgroup, version int, cands []watchdog.Candidate) *watchdog.Incident {
	return &watchdog.Incident{ID: "fault-" + cg.Name, Verdict: watchdog.VerdictLoop, Cgroup: cg.Rel(), Version: version,
		Started: time.Now(), Evidence: watchdog.Evidence{Window: time.Second, OOMs: 50}, Candidates: cands,
		Origin: watchdog.LargestOrigin(cands)}
}

// runLadder runs the policy's ladder for inc on the VM's real hierarchy and
// returns its results; the policy's log goes to the test log.
func runLadder(t testing.TB, inc *watchdog.Incident, opts policy.Options) []policy.Action {
	t.Helper()
	h, proc := hostCG(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logw := zerolog.TestWriter{T: t}
	done := make(chan []policy.Action, 1)
	p, err := policy.New(ctx, policy.Config{CG: h, Proc: proc, Options: opts, StateDir: t.TempDir(), Report: ladderEnd(done)}, zerolog.New(logw))
	if err != nil {
		t.Fatal(err)
	}
	p.Open(inc)
	var rs []policy.Action
	select {
	case rs = <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("ladder did not finish within 60s")
	}
	cancel()
	p.Wait()
	for _, r := range rs {
		t.Logf("result: %+v", r)
	}
	return rs
}

// fastOpts are ladder options with short verification, for scenarios that
// drive the policy directly.
func fastOpts(ladder ...string) policy.Options {
	o := policy.DefaultOptions()
	o.Ladder = ladder
	o.VerifyTimeout = time.Second
	o.Cooldown = 0
	return o
}

// moveTo writes pid into every cgroup.procs of cg (v1: memory and freezer).
func moveTo(t testing.TB, pid int, cg *Cgroup) {
	t.Helper()
	for _, f := range cg.ProcsFiles() {
		mustWrite(t, f, strconv.Itoa(pid))
	}
}

// memcgOf returns the memory cgroup path of pid from /proc/PID/cgroup.
func memcgOf(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return "?" + err.Error()
	}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.SplitN(l, ":", 3)
		if len(f) == 3 && (f[0] == "0" && f[1] == "" || strings.Contains(","+f[1]+",", ",memory,")) {
			return f[2]
		}
	}
	return "?"
}

// nsLastPid is the file that makes the next fork take a chosen PID.
const nsLastPid = "/proc/sys/kernel/ns_last_pid"

var pidMu sync.Mutex

// startAtPid starts name args as PID want by writing want-1 to
// ns_last_pid just before the fork. Other forks (Go runtime threads, the
// kernel) can take the PID first: it retries, killing wrong-PID attempts.
func startAtPid(t testing.TB, want int, name string, args ...string) *Proc {
	t.Helper()
	if _, err := os.Stat(nsLastPid); err != nil {
		Unsupported(t, "no %s (CONFIG_CHECKPOINT_RESTORE off?): %v", nsLastPid, err)
	}
	pidMu.Lock()
	defer pidMu.Unlock()
	for attempt := 0; attempt < 200; attempt++ {
		if err := os.WriteFile(nsLastPid, []byte(strconv.Itoa(want-1)), 0); err != nil {
			t.Fatalf("write %s: %v", nsLastPid, err)
		}
		p := Start(t, name, args...)
		if p.Pid == want {
			t.Logf("pid %d recycled after %d attempt(s)", want, attempt+1)
			return p
		}
		p.Cmd.Process.Kill()
		<-p.done
	}
	t.Fatalf("could not get pid %d through %s after 200 attempts", want, nsLastPid)
	return nil
}

// sigkill kills the daemon with SIGKILL (a crash) and reaps it; the end-of-
// test SIGTERM check is skipped for it.
func (d *Daemon) sigkill(t testing.TB) {
	t.Helper()
	d.mu.Lock()
	d.term = true
	d.mu.Unlock()
	d.cmd.Process.Kill()
	select {
	case <-d.done:
	case <-time.After(15 * time.Second):
		t.Fatalf("daemon pid %d not reaped 15s after SIGKILL", d.Pid)
	}
	select {
	case <-d.drained:
	case <-time.After(2 * time.Second):
	}
}

// lines returns every raw stderr line so far.
func (d *Daemon) rawLines() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.lines...)
}

// limitFiles returns the limit files of cg that raise-limit changes.
func limitFiles(cg *Cgroup) []string {
	if cg.Mode == "v1" {
		fs := []string{cg.File("memory.limit_in_bytes")}
		if _, err := os.Stat(cg.File("memory.memsw.limit_in_bytes")); err == nil {
			fs = append(fs, cg.File("memory.memsw.limit_in_bytes"))
		}
		return fs
	}
	return []string{cg.File("memory.max")}
}

// limits reads every limit file of cg (name → bytes).
func limits(t testing.TB, cg *Cgroup) map[string]int64 {
	t.Helper()
	m := map[string]int64{}
	for _, f := range limitFiles(cg) {
		m[f[strings.LastIndexByte(f, '/')+1:]] = readInt(t, f)
	}
	return m
}

// setLimits writes v to every limit file of cg in a valid order (v1: memsw
// must stay >= limit_in_bytes).
func setLimits(t testing.TB, cg *Cgroup, v int64) {
	t.Helper()
	fs := limitFiles(cg)
	cur := readInt(t, fs[0])
	if v >= cur {
		for i := len(fs) - 1; i >= 0; i-- {
			mustWrite(t, fs[i], strconv.FormatInt(v, 10))
		}
		return
	}
	for _, f := range fs {
		mustWrite(t, f, strconv.FormatInt(v, 10))
	}
}

// raisedRecords reads state_dir/raised.json (nil when absent).
func raisedRecords(t testing.TB, dir string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(dir + "/raised.json")
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var recs []map[string]any
	if err := json.Unmarshal(b, &recs); err != nil {
		t.Fatalf("raised.json: %v: %s", err, b)
	}
	return recs
}

func hasRecord(recs []map[string]any, cg string) bool {
	for _, r := range recs {
		if r["cgroup"] == cg {
			return true
		}
	}
	return false
}

// oomwatch runs the oomwatch binary to completion (a subcommand such as
// incidents) and returns stdout, stderr and the exit code.
func oomwatch(t testing.TB, e Env, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(e.Daemon, args...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run oomwatch %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// ladderEnd is a policy.Reporter that passes on the ladder's actions.
type ladderEnd chan []policy.Action

func (ladderEnd) Opened(*watchdog.Incident, string)        {}
func (ladderEnd) Action(*watchdog.Incident, policy.Action) {}
func (l ladderEnd) LadderDone(_ *watchdog.Incident, acts []policy.Action, _ policy.Outcome) {
	l <- acts
}
func (ladderEnd) Resolved(*watchdog.Incident, string) {}
