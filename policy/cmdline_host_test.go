package policy

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/oomwatch/oomwatch/internal/cgroupfs"
	"github.com/oomwatch/oomwatch/internal/procfs"
	"github.com/oomwatch/oomwatch/test/testhost"
	"github.com/oomwatch/oomwatch/watchdog"
)

// TestInspectionHugeArgvBoundedHost: 201 real tasks in a real v1 cgroup
// (a hog and 200 children forked without exec), all sharing one argv of
// 1.8 MB, as a tenant gets them for about 2 MB of its own memory. The
// inspection reads every task's cmdline: what it allocates and what the
// candidates keep stay bounded (at most procfs.MaxCmdline of cmdline a
// task, one copy for all here), each cmdline is marked cut, and an
// exemption glob matches the kept start of the cmdline and its "…", never
// what was cut.
func TestInspectionHugeArgvBoundedHost(t *testing.T) {
	h, err := cgroupfs.Open(testhost.V1Root(t), "")
	if err != nil {
		t.Fatal(err)
	}
	hog := testhost.BuildHog(t)
	dir := filepath.Join(h.Root, fmt.Sprintf("oomwatch-test-argv-%d-%d", os.Getpid(), time.Now().UnixNano()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for i := 0; i < 250 && os.Remove(dir) != nil; i++ {
			time.Sleep(20 * time.Millisecond)
		}
	})
	const children = 200
	testhost.StartSleepers(t, hog, filepath.Join(dir, "cgroup.procs"), "java", children, false, testhost.HugeArgv()...)
	cg := "/" + filepath.Base(dir)

	in := watchdog.Inspector{CG: h, Proc: procfs.New("/proc")}
	var before, during, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	cands, err := in.Candidates(cg)
	runtime.ReadMemStats(&during)
	runtime.GC()
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if len(cands) != children+1 {
		t.Fatalf("%d candidates, want %d", len(cands), children+1)
	}
	allocated := during.TotalAlloc - before.TotalAlloc
	kept := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	runtime.KeepAlive(cands)
	t.Logf("%d tasks with a 1.8 MB argv: inspection allocated %.1f MiB, candidates keep %.2f MiB", len(cands), mib(allocated), mib(uint64(max(kept, 0))))
	// A bound on all the inspection allocated bounds its peak heap growth,
	// whenever the collector runs.
	if allocated > 16<<20 {
		t.Errorf("inspection allocated %.1f MiB for %d tasks, want at most 16 MiB", mib(allocated), len(cands))
	}
	if kept > 4<<20 {
		t.Errorf("candidates keep %.1f MiB for %d tasks, want at most 4 MiB", mib(uint64(kept)), len(cands))
	}

	for _, c := range cands {
		if joined := strings.Join(c.Cmdline, " "); !c.CmdlineTruncated || len(joined) > procfs.MaxCmdline || !strings.HasSuffix(joined, procfs.CmdlineCut) {
			t.Fatalf("pid %d: cmdline of %d bytes, truncated %v; want at most %d bytes ending in %q, truncated",
				c.PID, len(joined), c.CmdlineTruncated, procfs.MaxCmdline, procfs.CmdlineCut)
		}
	}

	p := &Policy{}
	match := func(glob string) int {
		opts := DefaultOptions()
		opts.ExemptCmdline = []string{glob}
		n := 0
		for _, c := range cands {
			if p.exempt(c, opts) {
				n++
			}
		}
		return n
	}
	full := strings.Join(append([]string{"java", "-wait-stdin", "-fork", fmt.Sprint(children), "-ready", "ready", "--"}, testhost.HugeArgv()...), " ")
	for _, tt := range []struct {
		glob string
		want int
	}{
		{"java * -Dapp=web1 *", len(cands)}, // on the prefix: matches every task
		{"java * -Dapp=web2 *", 0},
		{"java * -Dapp=web1 x*…", len(cands)}, // the cut is visible
		{full, 0},                             // the whole cmdline is not there to match
		{"*x", 0},                             // nor its end
	} {
		if got := match(tt.glob); got != tt.want {
			t.Errorf("exempt_cmdline %.60q matches %d of %d tasks, want %d", tt.glob, got, len(cands), tt.want)
		}
	}
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }
