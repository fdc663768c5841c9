// Package scalebench measures what watching many memory cgroups costs:
// oomwatch's watchdog (one epoll loop) against the peer way of doing it
// (v1: one eventfd and one blocking reader goroutine per cgroup; v2:
// containerd/cgroups v3 cgroup2.Manager.EventChan() per cgroup), each in its
// own child process so resident memory, threads, fds and wake-ups are clean.
// It also drives the discovery-churn measurement. See docs/BENCHMARKS.md.
package scalebench

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Snapshot is what a process costs at one moment, read from /proc/self.
type Snapshot struct {
	RSSKiB     int64 // VmRSS
	HWMKiB     int64 // VmHWM (peak resident)
	HeapKiB    int64 // runtime HeapInuse: what the Go heap holds, without pages the runtime kept
	Goroutines int
	Threads    int   // entries of /proc/self/task
	FDs        int   // entries of /proc/self/fd
	CPUMicros  int64 // utime+stime of the whole process (getrusage), µs
	// CtxSw: voluntary+nonvoluntary context switches summed over every
	// thread in /proc/self/task/*/status (each switch-in after a sleep is a
	// wake-up).
	CtxSw int64
	// PerThread: tid → that thread's context switches.
	PerThread map[string]int64 `json:"-"`
	// RusageCtxSw: the same from getrusage(RUSAGE_SELF) (includes exited threads).
	RusageCtxSw int64
}

// Self reads the current process's snapshot.
func Self() Snapshot {
	var s Snapshot
	s.Goroutines = runtime.NumGoroutine()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	s.HeapKiB = int64(ms.HeapInuse / 1024)
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		s.RSSKiB = statusKiB(b, "VmRSS:")
		s.HWMKiB = statusKiB(b, "VmHWM:")
	}
	tasks, _ := os.ReadDir("/proc/self/task")
	s.Threads = len(tasks)
	s.PerThread = make(map[string]int64, len(tasks))
	for _, t := range tasks {
		b, err := os.ReadFile(filepath.Join("/proc/self/task", t.Name(), "status"))
		if err != nil {
			continue
		}
		n := statusInt(b, "voluntary_ctxt_switches:") + statusInt(b, "nonvoluntary_ctxt_switches:")
		s.CtxSw += n
		s.PerThread[t.Name()] = n
	}
	s.FDs = countDir("/proc/self/fd") - 1 // minus the fd used to list it
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_SELF, &ru) == nil {
		s.CPUMicros = ru.Utime.Sec*1e6 + ru.Utime.Usec + ru.Stime.Sec*1e6 + ru.Stime.Usec
		s.RusageCtxSw = ru.Nvcsw + ru.Nivcsw
	}
	return s
}

func statusInt(b []byte, key string) int64 {
	i := bytes.Index(b, []byte(key))
	if i < 0 {
		return 0
	}
	rest := b[i+len(key):]
	if j := bytes.IndexByte(rest, '\n'); j >= 0 {
		rest = rest[:j]
	}
	f := strings.Fields(string(rest))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseInt(f[0], 10, 64)
	return v
}

func statusKiB(b []byte, key string) int64 { return statusInt(b, key) }

// StatusKiB reads one kB field of /proc/PID/status ("VmRSS", "VmHWM"); 0
// when the process or the field is missing.
func StatusKiB(pid int, field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	return statusKiB(b, field+":")
}

// CountFDs counts the open fds of pid whose link target starts with prefix
// ("" counts all).
func CountFDs(pid int, prefix string) int {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return -1
	}
	if prefix == "" {
		return len(ents)
	}
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && strings.HasPrefix(l, prefix) {
			n++
		}
	}
	return n
}

// RaiseNoFile raises RLIMIT_NOFILE (soft and hard) to at least want, as far
// as the kernel's fs.nr_open allows (root may raise the hard limit). It
// returns the resulting soft limit.
func RaiseNoFile(want uint64) uint64 {
	var rl unix.Rlimit
	_ = unix.Getrlimit(unix.RLIMIT_NOFILE, &rl)
	if rl.Cur >= want {
		return rl.Cur
	}
	if nr, err := os.ReadFile("/proc/sys/fs/nr_open"); err == nil {
		if v, err := strconv.ParseUint(strings.TrimSpace(string(nr)), 10, 64); err == nil && want > v {
			want = v
		}
	}
	nl := unix.Rlimit{Cur: want, Max: max(rl.Max, want)}
	if unix.Setrlimit(unix.RLIMIT_NOFILE, &nl) != nil {
		nl = unix.Rlimit{Cur: rl.Max, Max: rl.Max}
		_ = unix.Setrlimit(unix.RLIMIT_NOFILE, &nl)
	}
	_ = unix.Getrlimit(unix.RLIMIT_NOFILE, &rl)
	return rl.Cur
}

// Threads counts the entries of /proc/self/task.
func Threads() int {
	t, _ := os.ReadDir("/proc/self/task")
	return len(t)
}

// TopThreadDeltas returns the largest per-thread context-switch deltas from
// a to b (threads born in between count from 0), at most n, largest first.
func TopThreadDeltas(a, b Quiet, n int) []int64 {
	var d []int64
	for tid, v := range b.PerThread {
		if x := v - a.PerThread[tid]; x > 0 {
			d = append(d, x)
		}
	}
	sort.Slice(d, func(i, j int) bool { return d[i] > d[j] })
	if len(d) > n {
		d = d[:n]
	}
	return d
}

// countDir counts the entries of dir (without . and ..) with getdents64 on
// a fixed buffer: no per-entry allocation, so listing 10,000 fds does not
// start a GC cycle inside the measured idle period.
func countDir(dir string) int {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1
	}
	defer unix.Close(fd)
	var buf [32 << 10]byte
	n := 0
	for {
		m, err := unix.Getdents(fd, buf[:])
		if err != nil || m <= 0 {
			return n
		}
		b := buf[:m]
		for len(b) >= 19 {
			reclen := int(uint16(b[16]) | uint16(b[17])<<8)
			name := b[19:reclen]
			if i := bytes.IndexByte(name, 0); i >= 0 {
				name = name[:i]
			}
			if string(name) != "." && string(name) != ".." {
				n++
			}
			b = b[reclen:]
		}
	}
}

// Quiet is what the idle measurement compares: CPU time and context switches.
type Quiet struct {
	CPUMicros, CtxSw, RusageCtxSw int64
	PerThread                     map[string]int64
}

// QuietNow reads CPU time and context switches with as little work (and
// allocation) as possible, so the measurement barely disturbs what it
// measures. Take it last before and first after the idle period.
func QuietNow() Quiet {
	q := Quiet{PerThread: map[string]int64{}}
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_SELF, &ru) == nil {
		q.CPUMicros = ru.Utime.Sec*1e6 + ru.Utime.Usec + ru.Stime.Sec*1e6 + ru.Stime.Usec
		q.RusageCtxSw = ru.Nvcsw + ru.Nivcsw
	}
	tasks, _ := os.ReadDir("/proc/self/task")
	var buf [4 << 10]byte
	for _, t := range tasks {
		fd, err := unix.Open("/proc/self/task/"+t.Name()+"/status", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			continue
		}
		m, _ := unix.Read(fd, buf[:])
		unix.Close(fd)
		if m <= 0 {
			continue
		}
		n := statusInt(buf[:m], "voluntary_ctxt_switches:") + statusInt(buf[:m], "nonvoluntary_ctxt_switches:")
		q.CtxSw += n
		q.PerThread[t.Name()] = n
	}
	return q
}
