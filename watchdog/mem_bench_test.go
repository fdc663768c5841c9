package watchdog

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/oomwatch/oomwatch/internal/cgroupfs"
	"github.com/oomwatch/oomwatch/internal/procfs"
)

// BenchmarkArmMemoryV2 arms 10,000 fake v2 cgroups (directories on the
// test's filesystem, named as the VM scale benchmark names them) and reports
// the Go heap the watchdog keeps per cgroup once armed and baselined, and the
// bytes allocated per cgroup on the way. It is the in-process view of the VM
// scale benchmark's resident memory, for profiling (-memprofile).
func BenchmarkArmMemoryV2(b *testing.B) {
	const n = 10000
	root := b.TempDir()
	if err := os.WriteFile(filepath.Join(root, "cgroup.controllers"), []byte("memory pids\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	for i := range n {
		dir := filepath.Join(root, fmt.Sprintf("c%05d", i))
		if err := os.Mkdir(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		ev := "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n"
		for _, f := range []string{"memory.events", "memory.events.local"} {
			if err := os.WriteFile(filepath.Join(dir, f), []byte(ev), 0o644); err != nil {
				b.Fatal(err)
			}
		}
	}
	h, err := cgroupfs.Open(root, "")
	if err != nil {
		b.Fatal(err)
	}
	h.AnyFS = true
	prof := os.Getenv("OOMWATCH_HEAP_PROFILE") // file: the heap profile once armed
	if prof != "" {
		runtime.MemProfileRate = 1
	}
	var heap, alloc float64
	for b.Loop() {
		var m0, m1 runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m0)
		ready := make(chan int, 1)
		w, err := New(Config{CG: h, Proc: procfs.New(b.TempDir()), Detector: DefaultParams,
			Ready: func(n int) { ready <- n }}, newRecorder(), zerolog.Nop())
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- w.Run(ctx) }()
		if got := <-ready; got != n+1 {
			b.Fatalf("armed %d, want %d", got, n+1)
		}
		for w.Stats().Baselining > 0 {
			time.Sleep(time.Millisecond)
		}
		runtime.GC()
		debug.FreeOSMemory()
		runtime.ReadMemStats(&m1)
		heap = float64(m1.HeapAlloc-m0.HeapAlloc) / n
		alloc = float64(m1.TotalAlloc-m0.TotalAlloc) / n
		if prof != "" {
			f, err := os.Create(prof)
			if err != nil {
				b.Fatal(err)
			}
			if err := pprof.WriteHeapProfile(f); err != nil {
				b.Fatal(err)
			}
			f.Close()
		}
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		runtime.KeepAlive(w)
	}
	b.ReportMetric(heap, "heap-B/cgroup")
	b.ReportMetric(alloc, "alloc-B/cgroup")
}
