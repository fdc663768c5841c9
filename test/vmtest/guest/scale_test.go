//go:build vmguest

package guest

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/oomwatch/oomwatch/test/scalebench"
)

// ScaleMarker prefixes the JSON lines the scale scenarios print for the host
// (test/vmtest scale_bench_test.go).
const ScaleMarker = "SCALEJSON "

func scaleEmit(kind string, v any) {
	b, _ := json.Marshal(v)
	fmt.Printf("%s%s %s\n", ScaleMarker, kind, b)
}

const scaleChild = "/bin/scalechild"

// TestScaleV2 is measurement 2 on cgroup v2: oomwatch's watchdog vs
// containerd/cgroups v3 EventChan() per cgroup, 1,000/5,000/10,000 cgroups,
// each method in its own child process (/bin/scalechild). Run by the host's
// BenchmarkVMScale (OOMWATCH_VM_SCALE=1); unsupported otherwise.
func TestScaleV2(t *testing.T) {
	e := Setup(t)
	if os.Getenv("OOMWATCH_VM_SCALE") == "" {
		Unsupported(t, "benchmark: run by BenchmarkVMScale")
	}
	OnlyModes(t, e, "v2")
	k, err := scalebench.FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	const mount = "/sys/fs/cgroup"
	scalebench.Sweep(mount)
	tree, err := scalebench.NewTree(mount, 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tree.Remove() })
	label := fmt.Sprintf("v2 VM %s", e.Kernel)
	defInst := scalebench.ReadSysctl("fs.inotify.max_user_instances")
	defWatches := scalebench.ReadSysctl("fs.inotify.max_user_watches")
	maxN := 0
	for _, n := range k.Sizes {
		maxN = max(maxN, n)
	}
	// Both methods need two inotify watches per cgroup.
	raisedWatches := ""
	if w, _ := strconv.Atoi(defWatches); w < 4*maxN {
		raisedWatches = strconv.Itoa(4 * maxN)
		if err := scalebench.WriteSysctl("fs.inotify.max_user_watches", raisedWatches); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { scalebench.WriteSysctl("fs.inotify.max_user_watches", defWatches) })
	}
	t.Cleanup(func() { scalebench.WriteSysctl("fs.inotify.max_user_instances", defInst) })
	scaleEmit("sysctl", map[string]string{"max_user_instances": defInst, "max_user_watches": defWatches, "max_user_watches_raised_to": raisedWatches,
		"nr_open": scalebench.ReadSysctl("fs.nr_open"), "threads-max": scalebench.ReadSysctl("kernel.threads-max")})

	run := func(n int, m, note string) {
		sp := scalebench.Spec{Method: m, Version: 2, Root: tree.Dir, Mount: mount, Idle: k.Idle, Settle: k.Settle, Profile: k.Profile}
		r := scalebench.RunChild(scaleChild, nil, sp, k.Idle+15*time.Minute)
		r.Hierarchy, r.Cgroups = label, n
		if note != "" {
			r.Note = strings.TrimSpace(note + " " + r.Note)
		}
		t.Logf("%s", strings.TrimRight(scalebench.ScaleTable([]scalebench.Result{r}), "\n"))
		scaleEmit("scale", r)
	}
	run(0, scalebench.Baseline, "")
	for i, n := range k.Sizes {
		t0 := time.Now()
		if err := tree.Grow(n); err != nil {
			t.Fatal(err)
		}
		t.Logf("%d cgroups present (%v)", n, time.Since(t0).Round(time.Millisecond))
		run(n, scalebench.Oomwatch, "")
		if i == 0 {
			scalebench.WriteSysctl("fs.inotify.max_user_instances", defInst)
			run(n, scalebench.Peer, "max_user_instances="+defInst+" (default):")
		}
		if err := scalebench.WriteSysctl("fs.inotify.max_user_instances", strconv.Itoa(2*maxN+1024)); err != nil {
			t.Fatal(err)
		}
		run(n, scalebench.Peer, "max_user_instances raised to "+strconv.Itoa(2*maxN+1024)+":")
	}
	// Profiles (OOMWATCH_SCALE_PROFILE=dir in the guest) go to the host on the console.
	if k.Profile != "" {
		fs, _ := filepath.Glob(filepath.Join(k.Profile, "*.pprof"))
		for _, f := range fs {
			b, err := os.ReadFile(f)
			if err == nil {
				scaleEmit("profile", map[string]string{"name": filepath.Base(f), "b64": base64.StdEncoding.EncodeToString(b)})
			}
		}
	}
}

// TestScaleChurnV2 is measurement 4 on cgroup v2 (see scalebench.RunChurn).
func TestScaleChurnV2(t *testing.T) {
	e := Setup(t)
	if os.Getenv("OOMWATCH_VM_CHURN") == "" {
		Unsupported(t, "benchmark: run by BenchmarkVMChurn")
	}
	k, err := scalebench.FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	mount := "/sys/fs/cgroup"
	v := 2
	if e.V1() {
		mount, v = "/sys/fs/cgroup/memory", 1
	}
	scalebench.Sweep(mount)
	tree, err := scalebench.NewTree(mount, v)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tree.Remove() })
	cr := scalebench.RunChurn(scaleChild, nil, tree, k.ChurnRate, k.ChurnDur, k.ChurnLife)
	cr.Hierarchy = fmt.Sprintf("v%d VM %s", v, e.Kernel)
	t.Logf("\n%s", scalebench.ChurnTable([]scalebench.ChurnResult{cr}))
	scaleEmit("churn", cr)
}

// StormResult is one storm run.
type StormResult struct {
	Combo        string         `json:"combo"`
	Args         string         `json:"args"`
	Loops        int            `json:"loops"`
	Broken       int            `json:"broken"`    // hogs killed (by the kernel, after oomwatch acted) before the deadline
	Incidents    int            `json:"incidents"` // distinct storm cgroups with an incident
	Actions      int            `json:"actions"`
	RateLimited  int            `json:"rate_limited"` // ladders that waited for max_actions_per_minute
	Outcomes     map[string]int `json:"outcomes"`     // ladder_done outcome → count
	FirstToLast  float64        `json:"first_to_last_ms"`
	KillMS       []float64      `json:"kill_ms"` // each kill, ms after the first "no killable" record
	KmsgLost     int            `json:"kmsg_lost"`
	WaitedS      float64        `json:"waited_s"`
	Err          string         `json:"err,omitempty"`
	ActionErrors []string       `json:"action_errors,omitempty"`
}

// TestScaleStorm is measurement 3: 50 cgroups start looping at once (each
// hog joins its cgroup frozen; all are thawed together) under the real
// daemon at its defaults, then again with --max-actions-per-minute 100.
func TestScaleStorm(t *testing.T) {
	e := Setup(t)
	if os.Getenv("OOMWATCH_VM_STORM") == "" {
		Unsupported(t, "benchmark: run by BenchmarkVMStorm")
	}
	RequireDaemon(t, e)
	n := 50
	if s := os.Getenv("OOMWATCH_VM_STORM_N"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	wait := 150 * time.Second
	if s := os.Getenv("OOMWATCH_VM_STORM_WAIT"); s != "" {
		wait, _ = time.ParseDuration(s)
	}
	for _, args := range [][]string{{"run"}, {"run", "--max-actions-per-minute", "100"}} {
		t.Run(strings.Join(args[1:], "_"), func(t *testing.T) {
			r := stormOnce(t, e, n, wait, args)
			t.Logf("%+v", r)
			scaleEmit("storm", r)
			// The rows carry the numbers; the run itself fails when a loop
			// outlived the wait or an action failed.
			if r.Broken < r.Loops || r.Err != "" || len(r.ActionErrors) > 0 {
				t.Errorf("storm %s: %d of %d loops broken within %v, err %q, action errors %q", r.Args, r.Broken, r.Loops, wait, r.Err, r.ActionErrors)
			}
		})
	}
}

func freeze(c *Cgroup, on bool) error {
	if c.Mode == "v1" {
		v := "THAWED"
		if on {
			v = "FROZEN"
		}
		return os.WriteFile(filepath.Join(c.Freezer, "freezer.state"), []byte(v), 0)
	}
	v := "0"
	if on {
		v = "1"
	}
	return os.WriteFile(filepath.Join(c.Mem, "cgroup.freeze"), []byte(v), 0)
}

// stormLoops creates n cgroups of 10 MiB, each with a -1000 hog of 32 MiB
// that joined it while it was frozen: thawing them (freeze(c, false)) starts
// n loops within a few ms.
func stormLoops(t *testing.T, e Env, n int) ([]*Cgroup, []*Proc) {
	cgs := make([]*Cgroup, n)
	for i := range cgs {
		cgs[i] = NewCgroup(t, e, 10)
		if err := freeze(cgs[i], true); err != nil {
			t.Fatal(err)
		}
	}
	hogs := make([]*Proc, n)
	for i, c := range cgs {
		a := []string{"-mb", "32", "-adj", "-1000"}
		for _, f := range c.ProcsFiles() {
			a = append(a, "-cgroup-procs", f)
		}
		hogs[i] = Start(t, e.Hog, a...)
	}
	// every hog is in its (frozen) cgroup: in the last procs file it writes
	for i, c := range cgs {
		last := c.ProcsFiles()[len(c.ProcsFiles())-1]
		Eventually(t, 30*time.Second, "hog joined", func() (bool, string) {
			b, _ := os.ReadFile(last)
			return strings.Contains(" "+strings.Join(strings.Fields(string(b)), " ")+" ", " "+strconv.Itoa(hogs[i].Pid)+" "), string(b)
		})
	}
	return cgs, hogs
}

func stormOnce(t *testing.T, e Env, n int, wait time.Duration, args []string) (r StormResult) {
	r.Combo, r.Args, r.Loops = e.Kernel+"-"+e.Mode, strings.Join(args, " "), n
	r.Outcomes = map[string]int{}
	d := StartDaemon(t, e, args...)
	cgs, hogs := stormLoops(t, e, n)
	names := map[string]bool{}
	for _, c := range cgs {
		names[c.Rel()] = true
	}
	km := OpenKmsg(t)
	for _, c := range cgs {
		freeze(c, false)
	}
	t0 := time.Now()
	var first uint64
	kills := map[int]uint64{}
	pids := map[int]bool{}
	for _, h := range hogs {
		pids[h.Pid] = true
	}
	read := func() {
		for _, rec := range km.ReadRecords() {
			switch {
			case first == 0 && strings.Contains(rec.Text, "Out of memory and no killable processes"):
				first = rec.Usec
			case strings.Contains(rec.Text, "Killed process "):
				f := strings.Fields(rec.Text[strings.Index(rec.Text, "Killed process ")+len("Killed process "):])
				if len(f) > 0 {
					if p, err := strconv.Atoi(f[0]); err == nil && pids[p] {
						if _, ok := kills[p]; !ok {
							kills[p] = rec.Usec
						}
					}
				}
			}
		}
	}
	deadline := t0.Add(wait)
	for time.Now().Before(deadline) {
		read()
		done := 0
		for _, h := range hogs {
			if h.Exited() {
				done++
			}
		}
		if done == n {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	read()
	r.WaitedS = time.Since(t0).Seconds()
	r.KmsgLost = km.Lost
	for _, h := range hogs {
		if h.Exited() {
			r.Broken++
		}
	}
	for _, us := range kills {
		if first > 0 {
			r.KillMS = append(r.KillMS, float64(us-first)/1000)
		}
	}
	sort.Float64s(r.KillMS)
	if len(r.KillMS) > 0 {
		r.FirstToLast = r.KillMS[len(r.KillMS)-1]
	}
	seen := map[string]bool{}
	incOf := map[any]bool{}
	for _, m := range d.Events(Ev("event", "incident")) {
		if cg, _ := m["cgroup"].(string); names[cg] {
			seen[cg] = true
			incOf[m["incident"]] = true
		}
	}
	r.Incidents = len(seen)
	for _, m := range d.Events(Ev("event", "action")) {
		if !incOf[m["incident"]] {
			continue
		}
		r.Actions++
		if es, _ := m["error"].(string); es != "" && len(r.ActionErrors) < 3 {
			r.ActionErrors = append(r.ActionErrors, es)
		}
	}
	for _, m := range d.Events(Ev("event", "rate_limited")) {
		if incOf[m["incident"]] {
			r.RateLimited++
		}
	}
	for _, m := range d.Events(Ev("event", "ladder_done")) {
		if incOf[m["incident"]] {
			r.Outcomes[fmt.Sprint(m["outcome"])]++
		}
	}
	if first == 0 {
		r.Err = "no \"no killable processes\" record"
	}
	// Unbroken loops are killed by the cgroups' cleanup; stop the daemon first
	// so it does not act on the dying cgroups.
	d.Stop(t)
	return r
}
