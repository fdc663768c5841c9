//go:build vmguest

package guest

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/oomwatch/oomwatch/test/scalebench"
)

// StormMemBoundMiB is the bound on oomwatch's resident memory (VmHWM) under
// the combined storm below; README "Failure modes" states it.
const StormMemBoundMiB = 64

// StormMemResult is what TestStormMemoryBound reports to the host.
type StormMemResult struct {
	Combo       string  `json:"combo"`
	Cgroups     int     `json:"cgroups"`
	GrowS       float64 `json:"grow_s"`
	ReadyS      float64 `json:"ready_s"`
	Loops       int     `json:"loops"`
	Broken      int     `json:"broken"`
	LastBrokenS float64 `json:"last_broken_s"`
	ChurnS      float64 `json:"churn_s"`
	Created     int     `json:"churn_created"`
	Removed     int     `json:"churn_removed"`
	ChurnRate   float64 `json:"churn_rate"`
	RSSReadyMiB float64 `json:"rss_ready_mib"` // after arming the cgroups
	RSSPeakMiB  float64 `json:"rss_peak_mib"`  // largest VmRSS sampled every 250 ms
	HWMMiB      float64 `json:"hwm_mib"`       // VmHWM at the end
	RSSEndMiB   float64 `json:"rss_end_mib"`   // after the storm and the churn
	FDsBefore   int     `json:"fds_before"`
	FDsAfter    int     `json:"fds_after"`
	Incidents   int     `json:"incidents"`
}

// TestStormMemoryBound checks oomwatch's own memory under a storm: the real
// daemon at its defaults on 10,000 cgroups, 50 loops starting at once and
// 1,000 cgroups created and removed per second (each alive 1 s) for 30 s
// (asked for; the rate reached is reported), all at the same time. oomwatch's peak resident memory must stay under
// StormMemBoundMiB, every loop must be broken, and the churn must leave no
// file descriptors behind. Run by the host's TestVMStormMemory.
func TestStormMemoryBound(t *testing.T) {
	e := Setup(t)
	if os.Getenv("OOMWATCH_VM_STORM_MEM") == "" {
		Unsupported(t, "run by the host's TestVMStormMemory (its own VM: 4 GiB, longer timeout)")
	}
	RequireDaemon(t, e)
	const (
		cgroups   = 10000
		loops     = 50
		churnRate = 1000
		churnFor  = 30 * time.Second
		churnLife = time.Second
	)
	r := StormMemResult{Combo: e.Kernel + "-" + e.Mode, Cgroups: cgroups, Loops: loops}
	mount, v := "/sys/fs/cgroup", 2
	if e.V1() {
		mount, v = "/sys/fs/cgroup/memory", 1
	}
	scalebench.Sweep(mount)
	tree, err := scalebench.NewTree(mount, v)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tree.Remove() })
	t0 := time.Now()
	if err := tree.Grow(cgroups); err != nil {
		t.Fatal(err)
	}
	r.GrowS = time.Since(t0).Seconds()
	churnDir := filepath.Join(tree.Dir, "churn")
	if err := os.Mkdir(churnDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if v == 2 {
		mustWrite(t, filepath.Join(churnDir, "cgroup.subtree_control"), "+memory")
	}
	// Two inotify watches per v2 cgroup (directory + memory.events pin).
	if w, _ := strconv.Atoi(scalebench.ReadSysctl("fs.inotify.max_user_watches")); w < 4*(cgroups+2*churnRate) {
		def := scalebench.ReadSysctl("fs.inotify.max_user_watches")
		if err := scalebench.WriteSysctl("fs.inotify.max_user_watches", strconv.Itoa(4*(cgroups+2*churnRate))); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { scalebench.WriteSysctl("fs.inotify.max_user_watches", def) })
	}

	t0 = time.Now()
	d := StartDaemonWait(t, e, 5*time.Minute, "run")
	r.ReadyS = time.Since(t0).Seconds()
	r.RSSReadyMiB = mib(d.Pid, "VmRSS")

	var peak float64
	stopSample := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			peak = max(peak, mib(d.Pid, "VmRSS"))
			select {
			case <-stopSample:
				return
			case <-time.After(250 * time.Millisecond):
			}
		}
	}()

	cgs, hogs := stormLoops(t, e, loops)
	r.FDsBefore = scalebench.CountFDs(d.Pid, "")
	churnDone := make(chan struct{})
	go func() {
		defer close(churnDone)
		r.Created, r.Removed, r.ChurnS = churn(churnDir, churnRate, churnFor, churnLife)
	}()
	// The churn runs alone for its first 10 s: once 50 loops spin, the two
	// emulated CPUs leave mkdir little time (23/s measured when both
	// started together).
	time.Sleep(10 * time.Second)
	t0 = time.Now()
	for _, c := range cgs {
		freeze(c, false)
	}
	deadline := t0.Add(150 * time.Second)
	for time.Now().Before(deadline) {
		done := 0
		for _, h := range hogs {
			if h.Exited() {
				done++
			}
		}
		if done > r.Broken {
			r.Broken, r.LastBrokenS = done, time.Since(t0).Seconds()
		}
		if done == loops {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	<-churnDone
	time.Sleep(2 * time.Second) // let the daemon drain the removals
	r.FDsAfter = scalebench.CountFDs(d.Pid, "")
	r.RSSEndMiB = mib(d.Pid, "VmRSS")
	r.HWMMiB = mib(d.Pid, "VmHWM")
	close(stopSample)
	wg.Wait()
	r.RSSPeakMiB = peak
	if r.Created > 0 {
		r.ChurnRate = float64(r.Created) / r.ChurnS
	}
	names := map[string]bool{}
	for _, c := range cgs {
		names[c.Rel()] = true
	}
	for _, m := range d.Events(Ev("event", "incident")) {
		if cg, _ := m["cgroup"].(string); names[cg] {
			r.Incidents++
		}
	}
	// What the daemon did about each loop left running, for the failure.
	for i, h := range hogs {
		if h.Exited() {
			continue
		}
		adj, _ := os.ReadFile(fmt.Sprintf("/proc/%d/oom_score_adj", h.Pid))
		t.Logf("loop %s (hog pid %d, oom_score_adj %s) not broken; its events:", cgs[i].Rel(), h.Pid, strings.TrimSpace(string(adj)))
		for _, m := range d.Events(Ev("cgroup", cgs[i].Rel())) {
			t.Logf("  %v %v %v %v %v", m["time"], m["event"], m["action"], m["outcome"], m["error"])
		}
	}
	d.Stop(t)
	t.Logf("%+v", r)
	scaleEmit("stormmem", r)

	if r.Broken != loops {
		t.Errorf("%d of %d loops broken within 150 s", r.Broken, loops)
	}
	if r.HWMMiB > StormMemBoundMiB {
		t.Errorf("oomwatch peak resident memory %.1f MiB, bound %d MiB", r.HWMMiB, StormMemBoundMiB)
	}
	if r.FDsAfter > r.FDsBefore+4 {
		t.Errorf("file descriptors %d before the churn, %d after: leak", r.FDsBefore, r.FDsAfter)
	}
	if r.Created < 1000 || r.Removed != r.Created {
		// Under TCG the guest reaches ~200 mkdir/s, not the 1,000/s asked
		// for (the result shows the rate); 1,000 in 30 s is the floor.
		t.Errorf("churn created %d, removed %d cgroups", r.Created, r.Removed)
	}
}

// churn creates rate cgroups per second below dir for dur, each removed
// life after its creation (the rate is kept on average; under TCG mkdir
// may be slower, which the result shows).
func churn(dir string, rate int, dur, life time.Duration) (created, removed int, secs float64) {
	type born struct {
		name string
		at   time.Time
	}
	var alive []born
	start := time.Now()
	rm := func(now time.Time, all bool) {
		for len(alive) > 0 && (all || now.Sub(alive[0].at) >= life) {
			if syscall.Rmdir(alive[0].name) == nil {
				removed++
			}
			alive = alive[1:]
		}
	}
	for now := time.Now(); now.Sub(start) < dur; now = time.Now() {
		due := int(float64(rate)*now.Sub(start).Seconds()) - created
		for i := 0; i < min(due, rate/10); i++ {
			n := filepath.Join(dir, fmt.Sprintf("x%06d", created))
			if os.Mkdir(n, 0o755) == nil {
				alive = append(alive, born{n, time.Now()})
			}
			created++
		}
		rm(time.Now(), false)
		time.Sleep(10 * time.Millisecond)
	}
	secs = time.Since(start).Seconds()
	if len(alive) > 0 {
		time.Sleep(time.Until(alive[len(alive)-1].at.Add(life)))
	}
	rm(time.Now(), true)
	return created, removed, secs
}

// mib is a kB field of pid's /proc status in MiB.
func mib(pid int, field string) float64 { return float64(scalebench.StatusKiB(pid, field)) / 1024 }
