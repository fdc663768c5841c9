package scalebench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"runtime/trace"
	"sort"
	"time"

	"github.com/rs/zerolog"

	"github.com/oomwatch/oomwatch/internal/cgroupfs"
	"github.com/oomwatch/oomwatch/internal/procfs"
	"github.com/oomwatch/oomwatch/test/benchrow"
	"github.com/oomwatch/oomwatch/watchdog"
)

// ChildEnv carries the JSON Spec to a child process.
const ChildEnv = "OOMWATCH_SCALE_CHILD"

// Methods.
const (
	Oomwatch = benchrow.Oomwatch // the watchdog package: one epoll loop
	Peer     = benchrow.Peer     // v1: eventfd + blocking reader goroutine per cgroup; v2: cgroup2 EventChan per cgroup
	Baseline = benchrow.Baseline // nothing armed: the Go runtime's own floor
	Churn    = "churn"           // oomwatch under discovery churn (see RunChurn)
)

// Spec tells a child what to do.
type Spec struct {
	Method  string        `json:"method"`
	Version int           `json:"version"` // 1 or 2
	Root    string        `json:"root"`    // the test's parent cgroup directory
	Mount   string        `json:"mount"`   // the hierarchy's mountpoint (v1: …/memory)
	Idle    time.Duration `json:"idle"`
	Settle  time.Duration `json:"settle"`
	Profile string        `json:"profile,omitempty"` // directory for cpu (arming) and heap (armed) profiles
}

// Result is one child's report.
type Result struct {
	Hierarchy string  `json:"hierarchy"` // e.g. "v1 host 6.18", filled by the parent
	Method    string  `json:"method"`
	Cgroups   int     `json:"cgroups"` // cgroups below the parent
	Armed     int     `json:"armed"`   // cgroups with a watch
	ArmErrors int     `json:"arm_errors"`
	FirstErr  string  `json:"first_err,omitempty"`
	ArmSec    float64 `json:"arm_s"`
	// BaseSec (oomwatch on v2): start → every start-up cgroup's counters
	// read; arming (ArmSec) ends when the watches are live, before that.
	BaseSec    float64 `json:"baselines_s,omitempty"`
	IdleSec    float64 `json:"idle_s"`
	IdleCPUms  float64 `json:"idle_cpu_ms"`
	Wakeups    int64   `json:"wakeups"` // context switches of all threads over the idle period
	WakeupsPS  float64 `json:"wakeups_per_s"`
	RusageWake int64   `json:"rusage_wakeups"`
	TopThreads []int64 `json:"top_threads,omitempty"` // largest per-thread wake-up counts over the idle period
	End        Snapshot
	NoFile     uint64 `json:"nofile"`
	Watched    int    `json:"watched,omitempty"` // oomwatch: Stats().Watched (root included)
	// IdleEvents: oomwatch's kernel notifications during the idle period
	// (nil for the other methods).
	IdleEvents *uint64 `json:"idle_events,omitempty"`
	Crash      string  `json:"crash,omitempty"` // parent: how the child died
	Note       string  `json:"note,omitempty"`
	// churn only
	Before *Snapshot `json:"before,omitempty"`
}

// PeerFunc arms the peer way on kids (names of the cgroups below sp.Root)
// and fills Armed/ArmErrors/FirstErr. It lives in the separate module
// test/scalebench/peer, which may depend on containerd/cgroups'
// cgroup1/cgroup2 packages (their dependencies are not in the main go.mod).
var PeerFunc func(sp Spec, kids []string, res *Result)

// Output markers.
const (
	progressMark = "SCALE-PROGRESS "
	readyMark    = "SCALE-READY "
	resultMark   = "SCALE-RESULT "
	snapMark     = "SCALE-SNAP "
)

// MaybeChild runs the child and exits when ChildEnv is set; otherwise it
// returns. Call it first thing in TestMain or main.
func MaybeChild() {
	s := os.Getenv(ChildEnv)
	if s == "" {
		return
	}
	var sp Spec
	if err := json.Unmarshal([]byte(s), &sp); err != nil {
		fmt.Fprintf(os.Stderr, "bad %s: %v\n", ChildEnv, err)
		os.Exit(3)
	}
	if err := runChild(sp); err != nil {
		fmt.Fprintf(os.Stderr, "scale child: %v\n", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func emit(mark string, v any) {
	b, _ := json.Marshal(v)
	fmt.Printf("%s%s\n", mark, b)
}

func listChildren(root string) ([]string, error) {
	ents, err := os.ReadDir(root)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out, nil
}

func runChild(sp Spec) error {
	kids, err := listChildren(sp.Root)
	if err != nil {
		return err
	}
	res := Result{Method: sp.Method, Cgroups: len(kids)}
	// One eventfd (v1) or inotify fd (v2 peer) per cgroup, plus slack.
	res.NoFile = RaiseNoFile(uint64(len(kids))*2 + 1024)
	if sp.Settle == 0 {
		sp.Settle = 2 * time.Second
	}
	var stopCPU func()
	if sp.Profile != "" {
		f, err := os.Create(filepath.Join(sp.Profile, fmt.Sprintf("%s-v%d-%d.cpu.pprof", sp.Method, sp.Version, len(kids))))
		if err == nil && pprof.StartCPUProfile(f) == nil {
			stopCPU = func() { pprof.StopCPUProfile(); f.Close() }
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := time.Now()
	var wd *watchdog.Watchdog
	switch sp.Method {
	case Baseline:
	case Oomwatch, Churn:
		wd, err = startWatchdog(ctx, sp, &res)
		if err != nil {
			return err
		}
	case Peer:
		if PeerFunc == nil {
			return errors.New("this binary has no peer implementation (test/scalebench/peer)")
		}
		PeerFunc(sp, kids, &res)
	default:
		return fmt.Errorf("unknown method %q", sp.Method)
	}
	res.ArmSec = time.Since(start).Seconds()
	if wd != nil {
		for wd.Stats().Baselining > 0 {
			time.Sleep(time.Millisecond)
		}
		res.BaseSec = time.Since(start).Seconds()
	}
	if stopCPU != nil {
		stopCPU()
	}
	if sp.Profile != "" {
		if f, err := os.Create(filepath.Join(sp.Profile, fmt.Sprintf("%s-v%d-%d.heap.pprof", sp.Method, sp.Version, len(kids)))); err == nil {
			runtime.GC()
			_ = pprof.WriteHeapProfile(f)
			f.Close()
		}
	}
	if sp.Method == Churn {
		return churnChild(sp, wd, &res)
	}
	time.Sleep(sp.Settle)
	var ev0 uint64
	if wd != nil {
		ev0 = wd.Stats().Events
	}
	var stopTrace func()
	if p := os.Getenv("OOMWATCH_SCALE_TRACE"); p != "" {
		if f, err := os.Create(fmt.Sprintf("%s-%s-%d.trace", p, sp.Method, len(kids))); err == nil && trace.Start(f) == nil {
			stopTrace = func() { trace.Stop(); f.Close() }
		}
	}
	runtime.GC() // measurement garbage from arming is not idle work
	q0 := QuietNow()
	t0 := time.Now()
	time.Sleep(sp.Idle)
	q1 := QuietNow()
	res.IdleSec = time.Since(t0).Seconds()
	s1 := Self()
	if stopTrace != nil {
		stopTrace()
	}
	if wd != nil {
		n := wd.Stats().Events - ev0
		res.IdleEvents = &n
		res.Note = fmt.Sprintf("%d kernel notifications while idle;", n)
	}
	res.End = s1
	res.IdleCPUms = float64(q1.CPUMicros-q0.CPUMicros) / 1000
	res.Wakeups = q1.CtxSw - q0.CtxSw
	res.RusageWake = q1.RusageCtxSw - q0.RusageCtxSw
	res.WakeupsPS = float64(res.Wakeups) / res.IdleSec
	res.TopThreads = TopThreadDeltas(q0, q1, 5)
	if wd != nil {
		res.Watched = wd.Stats().Watched
	}
	emit(resultMark, res)
	return nil
}

type nopHandler struct{}

func (nopHandler) Open(*watchdog.Incident)             {}
func (nopHandler) Resolved(*watchdog.Incident, string) {}

// startWatchdog runs the real watchdog on a hierarchy rooted at the test's
// parent cgroup and returns once every watch is armed.
func startWatchdog(ctx context.Context, sp Spec, res *Result) (*watchdog.Watchdog, error) {
	h, err := cgroupfs.Open(sp.Root, "")
	if err != nil {
		return nil, err
	}
	ready := make(chan int, 1)
	log := zerolog.New(os.Stderr).Level(zerolog.WarnLevel).With().Timestamp().Logger()
	w, err := watchdog.New(watchdog.Config{
		CG: h, Proc: procfs.New("/proc"), Detector: watchdog.DefaultParams,
		Ready: func(n int) { ready <- n },
	}, nopHandler{}, log)
	if err != nil {
		return nil, err
	}
	errc := make(chan error, 1)
	go func() { errc <- w.Run(ctx) }()
	select {
	case n := <-ready:
		res.Armed = n - 1 // minus the parent itself
		res.Watched = n
	case err := <-errc:
		return nil, fmt.Errorf("watchdog: %w", err)
	}
	return w, nil
}

// InotifyFD finds the fd number of pid's inotify instance (-1 if none).
func InotifyFD(pid int) int {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if l, _ := os.Readlink(filepath.Join(dir, e.Name())); l == "anon_inode:inotify" {
			var n int
			fmt.Sscan(e.Name(), &n)
			return n
		}
	}
	return -1
}

type churnReady struct {
	Pid       int      `json:"pid"`
	InotifyFD int      `json:"inotify_fd"`
	Before    Snapshot `json:"before"`
	Watched   int      `json:"watched"`
}

// churnChild: the watchdog is armed; report, wait for the parent's churn to
// end (a line on stdin), let the loop drain, GC, report again.
func churnChild(sp Spec, w *watchdog.Watchdog, res *Result) error {
	time.Sleep(sp.Settle)
	runtime.GC()
	debug.FreeOSMemory()
	before := Self()
	emit(readyMark, churnReady{Pid: os.Getpid(), InotifyFD: InotifyFD(os.Getpid()), Before: before, Watched: w.Stats().Watched})
	var stopCPU func()
	if sp.Profile != "" {
		if f, err := os.Create(filepath.Join(sp.Profile, fmt.Sprintf("churn-v%d.cpu.pprof", sp.Version))); err == nil && pprof.StartCPUProfile(f) == nil {
			stopCPU = func() { pprof.StopCPUProfile(); f.Close() }
		}
	}
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() && sc.Text() == "snap" {
		time.Sleep(sp.Settle)
		runtime.GC()
		debug.FreeOSMemory()
		emit(snapMark, Self())
	}
	if stopCPU != nil {
		stopCPU()
	}
	time.Sleep(sp.Settle)
	runtime.GC()
	debug.FreeOSMemory()
	res.End = Self()
	res.Before = &before
	st := w.Stats()
	res.Watched = st.Watched
	res.Note = fmt.Sprintf("notifications handled %d", st.Events)
	emit(resultMark, res)
	return nil
}
