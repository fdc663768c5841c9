package policy

import (
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
)

// TestMonitorNeverTargetHost: real v1 cgroups laid out as LXC lays out a
// container, lxc.monitor.NAME next to lxc.payload.NAME under one parent,
// with a hog in each; the monitor's hog is the largest. An incident at the
// parent kills the payload's task only, and a whole-subtree kill is
// refused. (reset-adj's choice is tested on a fake tree: making a task
// unkillable needs CAP_SYS_RESOURCE, which the host tier may lack.)
func TestMonitorNeverTargetHost(t *testing.T) {
	h, err := cgroupfs.Open(testhost.V1Root(t), "")
	if err != nil {
		t.Fatal(err)
	}
	parent := filepath.Join(h.Root, fmt.Sprintf("oomwatch-test-policy-monitor-%d-%d", os.Getpid(), time.Now().UnixNano()))
	mon, payload := filepath.Join(parent, "lxc.monitor.t1"), filepath.Join(parent, "lxc.payload.t1")
	for _, d := range []string{parent, mon, payload} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, d := range []string{mon, payload, parent} {
			for i := 0; i < 100; i++ {
				if err := os.Remove(d); err == nil || os.IsNotExist(err) {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	})
	monHog := testhost.StartHog(t, filepath.Join(mon, "cgroup.procs"), 64)
	payHog := testhost.StartHog(t, filepath.Join(payload, "cgroup.procs"), 8)
	proc := procfs.New("/proc")
	rss := func(pid int) uint64 {
		p, err := proc.Proc(pid)
		if err != nil {
			return 0
		}
		return p.RSS
	}
	waitUntil(t, "the monitor's hog to be the largest", func() bool { return rss(monHog.Pid()) > rss(payHog.Pid())+32<<20 })

	cg := "/" + filepath.Base(parent)
	ladder := func(rungs []string, mode string) []Action {
		t.Helper()
		opts := DefaultOptions()
		opts.Ladder, opts.KillMode = rungs, mode
		opts.VerifyTimeout, opts.QuietFor, opts.Poll = 2*time.Second, 200*time.Millisecond, 20*time.Millisecond
		rs, _ := ladderOn(t, h, proc, opts, cg, zerolog.Nop())
		return rs
	}

	rs := ladder([]string{Kill}, KillCgroup)
	if len(rs) != 1 || rs[0].Done || !strings.Contains(rs[0].Error, "container monitor "+cg+"/lxc.monitor.t1") {
		t.Fatalf("cgroup kill results %+v, want it refused for the monitor", rs)
	}

	rs = ladder([]string{Kill}, KillLargest)
	if len(rs) != 1 || rs[0].PID != payHog.Pid() || !rs[0].Done {
		t.Fatalf("kill results %+v, want the payload's pid %d (monitor %d)", rs, payHog.Pid(), monHog.Pid())
	}
	exited := make(chan error, 1)
	go func() { exited <- payHog.Cmd.Wait() }()
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Fatal("the payload's hog survived the kill")
	}
	if st := readState(monHog.Pid()); st == "" || st == "Z" {
		t.Fatalf("the monitor's hog is gone (state %q)", st)
	}
}

// readState is the state letter of /proc/PID/stat, "" when it is gone.
func readState(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2 : i+3]
	}
	return ""
}
