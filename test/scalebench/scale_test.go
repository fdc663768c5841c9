package scalebench

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/oomwatch/oomwatch/test/benchrow"
	"github.com/oomwatch/oomwatch/test/testtier"
)

// childExe builds the measured child (./scalechild, its own module) once per benchmark.
func childExe(b *testing.B) string {
	b.Helper()
	exe := filepath.Join(b.TempDir(), "scalechild")
	if err := BuildChild("scalechild", exe); err != nil {
		b.Fatal(err)
	}
	return exe
}

const hostMount = "/sys/fs/cgroup/memory"

// hostTree sweeps leftovers of earlier runs and creates this run's parent
// cgroup on the host's v1 memory hierarchy, removed when b ends.
func hostTree(b *testing.B) *Tree {
	b.Helper()
	if testing.Short() {
		b.Skip("-short")
	}
	if os.Geteuid() != 0 {
		testtier.Require(b, testtier.Host, "needs root")
	}
	if _, err := os.Stat(filepath.Join(hostMount, "cgroup.event_control")); err != nil {
		testtier.Require(b, testtier.Host, "no cgroup v1 memory hierarchy at "+hostMount)
	}
	for _, d := range Sweep(hostMount) {
		b.Logf("removed leftover %s", d)
	}
	tree, err := NewTree(hostMount, 1)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := tree.Remove(); err != nil {
			b.Errorf("remove %s: %v", tree.Dir, err)
		}
	})
	return tree
}

// BenchmarkScaleV1Host: 1,000 / 5,000 / 10,000 real v1 memory cgroups on the
// host; oomwatch's watchdog vs one eventfd + blocking reader per cgroup, each
// in its own child process, plus the Go runtime's floor (baseline). The
// scenario runs once whatever b.N; numbers are reported as metrics, as a
// table and as benchrow rows (for make bench's one table).
func BenchmarkScaleV1Host(b *testing.B) {
	k, err := FromEnv()
	if err != nil {
		b.Fatal(err)
	}
	tree := hostTree(b)
	label := "v1 host " + shortKernel()
	exe := childExe(b)
	var rs []Result
	base := RunChild(exe, nil, Spec{Method: Baseline, Version: 1, Root: tree.Dir, Mount: hostMount, Idle: k.Idle}, k.Idle+time.Minute)
	base.Hierarchy = label
	rs = append(rs, base)
	rs = append(rs, Sequence(exe, nil, tree, k, label, hostMethods(), b.Logf)...)
	report(b, rs)
	benchrow.Emit(ScaleRows(b.Name(), rs)...)
}

func report(b *testing.B, rs []Result) {
	b.Helper()
	for _, r := range rs {
		if r.Crash != "" && r.End.RSSKiB == 0 {
			continue
		}
		p := fmt.Sprintf("%s-%d-", r.Method, r.Cgroups)
		b.ReportMetric(mib(r.End.RSSKiB), p+"RSS-MiB")
		b.ReportMetric(float64(r.End.Goroutines), p+"goroutines")
		b.ReportMetric(float64(r.End.Threads), p+"threads")
		b.ReportMetric(float64(r.End.FDs), p+"fds")
		b.ReportMetric(r.ArmSec, p+"arm-s")
		b.ReportMetric(r.IdleCPUms, p+"idle-cpu-ms")
		b.ReportMetric(r.WakeupsPS, p+"wakeups/s")
	}
	t := ScaleTable(rs)
	b.Log("\n" + t)
	fmt.Print(t)
}

// BenchmarkChurnV1Host: the watchdog (child process) on an empty parent;
// 1,000 cgroups created and removed per second for 30 s, each living 1 s;
// every cgroup checked for a watch just before its removal; fds and RSS
// before and after (after a GC).
func BenchmarkChurnV1Host(b *testing.B) {
	k, err := FromEnv()
	if err != nil {
		b.Fatal(err)
	}
	tree := hostTree(b)
	cr := RunChurn(childExe(b), nil, tree, k.ChurnRate, k.ChurnDur, k.ChurnLife)
	cr.Hierarchy = "v1 host " + shortKernel()
	if cr.Before != nil {
		b.ReportMetric(float64(cr.Missed), "missed")
		b.ReportMetric(cr.Rate, "created/s")
		b.ReportMetric(float64(cr.After.FDs-cr.Before.FDs), "fd-growth")
		b.ReportMetric(mib(cr.After.RSSKiB-cr.Before.RSSKiB), "RSS-growth-MiB")
	}
	t := ChurnTable([]ChurnResult{cr})
	b.Log("\n" + t)
	fmt.Print(t)
	benchrow.Emit(ChurnRows(b.Name(), cr, k)...)
	if cr.Err != "" {
		b.Error(cr.Err)
	}
}

func shortKernel() string {
	k := Kernel()
	if i := strings.IndexByte(k, '-'); i > 0 {
		k = k[:i]
	}
	return k
}

// hostMethods are measured side by side on the host.
func hostMethods() []string { return []string{Oomwatch, Peer} }

// BenchmarkShippedV1Host: the daemon as shipped (make build's binary,
// `oomwatch run` with no config: metrics server, kernel log reader, status
// socket, incident journal) on 100, 1,000 and 10,000 real v1 memory
// cgroups (OOMWATCH_SHIPPED_SIZES), measured from /proc/PID: idle RSS
// (OOMWATCH_SHIPPED_SETTLE after ready, default 5 s), wake-ups over
// OOMWATCH_SHIPPED_IDLE (default 20 s), then RSS once a client has asked.
func BenchmarkShippedV1Host(b *testing.B) {
	k, err := ShippedFromEnv()
	if err != nil {
		b.Fatal(err)
	}
	tree := hostTree(b)
	exe := k.Exe
	if exe == "" {
		exe = filepath.Join(b.TempDir(), "oomwatch")
		if err := BuildDaemon(exe); err != nil {
			b.Fatal(err)
		}
	}
	label := "v1 host " + shortKernel()
	var ds []Daemon
	for _, n := range k.Sizes {
		if err := tree.Grow(n); err != nil {
			b.Fatal(err)
		}
		d := RunDaemon(DaemonSpec{Exe: exe, Root: tree.Dir, Dir: b.TempDir(), Settle: k.Settle, Idle: k.Idle, Args: k.Args})
		d.Hierarchy = label
		b.Logf("%s", strings.TrimRight(DaemonTable([]Daemon{d}), "\n"))
		ds = append(ds, d)
		if d.Err == "" {
			p := fmt.Sprintf("%d-", n)
			b.ReportMetric(mib(d.RSSKiB), p+"RSS-MiB")
			b.ReportMetric(float64(d.Wakeups), p+"idle-wakeups")
		}
	}
	t := DaemonTable(ds)
	b.Log("\n" + t)
	fmt.Print(t)
	benchrow.Emit(DaemonRows(b.Name(), ds)...)
}
