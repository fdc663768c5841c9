package scalebench

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The shipped daemon: `oomwatch run` as `make build` builds it, with no
// config file and every service it starts by default (metrics server,
// kernel log reader, status socket, incident journal), measured from the
// outside (/proc/PID), so nothing in the measured process is the
// benchmark's.

// DaemonPkg is the daemon's import path.
const DaemonPkg = "github.com/oomwatch/oomwatch/cmd/oomwatch"

// BuildDaemon builds the daemon into out with make build's flags.
func BuildDaemon(out string) error {
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w -X main.version=bench", "-o", out, DaemonPkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build %s: %v\n%s", DaemonPkg, err, b)
	}
	return nil
}

// Daemon is one measurement of the shipped daemon.
type Daemon struct {
	Hierarchy string
	Cgroups   int // cgroups below the parent
	Watched   int // what the daemon says it watches (its ready line), the parent included
	Scraped   int // oomwatch_watched_cgroups on its /metrics, after the idle period
	ArmSec    float64
	// Idle: after arming and Settle, before any client asked anything.
	RSSKiB, AnonKiB, FileKiB int64 // VmRSS, RssAnon, RssFile
	PssKiB, PssAnonKiB       int64 // smaps_rollup
	Threads, FDs             int
	IdleSec                  float64
	Wakeups                  int64   // voluntary+nonvoluntary context switches of every thread over IdleSec
	IdleCPUms                float64 // utime+stime over IdleSec
	// After one /metrics scrape and one status request.
	UsedRSSKiB int64
	Err        string
}

// DaemonSpec is how to run it.
type DaemonSpec struct {
	Exe    string
	Root   string // the test's parent cgroup (--cgroup-root)
	Dir    string // state directory and status socket go here
	Settle time.Duration
	Idle   time.Duration
	Args   []string // more flags for run
}

// RunDaemon starts the daemon on sp.Root, waits for it to be ready, lets
// it settle, measures it idle, asks it once over each interface and stops
// it with SIGTERM.
func RunDaemon(sp DaemonSpec) (d Daemon) {
	fail := func(format string, a ...any) Daemon {
		d.Err = fmt.Sprintf(format, a...)
		return d
	}
	kids, err := listChildren(sp.Root)
	if err != nil {
		return fail("%v", err)
	}
	d.Cgroups = len(kids)
	// One eventfd and one memory.oom_control per cgroup (v1); the unit
	// sets LimitNOFILE=1048576 and the child inherits this process's limit.
	RaiseNoFile(uint64(len(kids))*2 + 1024)
	sock := filepath.Join(sp.Dir, "oomwatch.sock")
	cmd := exec.Command(sp.Exe, "run", "--cgroup-root", sp.Root, "--state-dir", filepath.Join(sp.Dir, "state"),
		"--status-socket", sock, "--metrics-listen", "127.0.0.1:0")
	cmd.Args = append(cmd.Args, sp.Args...)
	logf, err := os.Create(filepath.Join(sp.Dir, fmt.Sprintf("daemon-%d.log", len(kids))))
	if err != nil {
		return fail("%v", err)
	}
	defer logf.Close()
	pr, pw := io.Pipe()
	cmd.Stderr = io.MultiWriter(logf, pw)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return fail("start: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait(); pw.Close() }()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil && d.Err == "" {
				d.Err = "exit: " + err.Error()
			}
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			if d.Err == "" {
				d.Err = "did not stop within 30 s of SIGTERM"
			}
		}
	}()
	ready := make(chan readyLine, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		var rl readyLine
		for sc.Scan() {
			var l readyLine
			if json.Unmarshal(sc.Bytes(), &l) != nil {
				continue
			}
			if l.Listen != "" {
				rl.Listen = l.Listen
			}
			if l.Event == "ready" {
				rl.Event, rl.Cgroups = l.Event, l.Cgroups
				ready <- rl
			}
		}
		_, _ = io.Copy(io.Discard, pr)
		close(ready)
	}()
	var rl readyLine
	select {
	case l, ok := <-ready:
		if !ok {
			return fail("exited before it was ready (log %s)", logf.Name())
		}
		rl = l
	case <-time.After(5 * time.Minute):
		return fail("not ready after 5 minutes (log %s)", logf.Name())
	}
	d.ArmSec = time.Since(start).Seconds()
	d.Watched = rl.Cgroups
	pid := cmd.Process.Pid
	time.Sleep(sp.Settle)

	c0, cpu0 := ctxSwitches(pid), cpuMicros(pid)
	t0 := time.Now()
	time.Sleep(sp.Idle)
	c1, cpu1 := ctxSwitches(pid), cpuMicros(pid)
	d.IdleSec = time.Since(t0).Seconds()
	d.Wakeups, d.IdleCPUms = c1-c0, float64(cpu1-cpu0)/1000
	d.RSSKiB, d.AnonKiB, d.FileKiB = StatusKiB(pid, "VmRSS"), StatusKiB(pid, "RssAnon"), StatusKiB(pid, "RssFile")
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid)); err == nil {
		d.PssKiB, d.PssAnonKiB = statusKiB(b, "Pss:"), statusKiB(b, "Pss_Anon:")
	}
	d.Threads = CountEntries(fmt.Sprintf("/proc/%d/task", pid))
	d.FDs = CountEntries(fmt.Sprintf("/proc/%d/fd", pid))

	// Now a client: one scrape (what it says it watches) and one status.
	if rl.Listen == "" {
		return fail("no metrics address in its log")
	}
	n, err := scrapeWatched("http://" + rl.Listen + "/metrics")
	if err != nil {
		return fail("scrape: %v", err)
	}
	d.Scraped = n
	if out, err := exec.Command(sp.Exe, "status", "--socket", sock, "--rows", "1").CombinedOutput(); err != nil {
		return fail("status: %v: %s", err, out)
	}
	time.Sleep(time.Second)
	d.UsedRSSKiB = StatusKiB(pid, "VmRSS")
	return d
}

type readyLine struct {
	Event   string `json:"event"`
	Cgroups int    `json:"cgroups"`
	Listen  string `json:"listen"`
}

// scrapeWatched reads oomwatch_watched_cgroups from a /metrics page.
func scrapeWatched(url string) (int, error) {
	c := http.Client{Timeout: 30 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "oomwatch_watched_cgroups "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return int(f), err
		}
	}
	return 0, fmt.Errorf("no oomwatch_watched_cgroups in %d bytes", len(b))
}

// ctxSwitches sums voluntary and nonvoluntary context switches over every
// thread of pid (each switch-in after a sleep is a wake-up).
func ctxSwitches(pid int) int64 {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	ents, _ := os.ReadDir(dir)
	var n int64
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name(), "status"))
		if err != nil {
			continue
		}
		n += statusInt(b, "voluntary_ctxt_switches:") + statusInt(b, "nonvoluntary_ctxt_switches:")
	}
	return n
}

// cpuMicros is pid's utime+stime from /proc/PID/stat, in µs.
func cpuMicros(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return (ut + st) * 1e6 / clockTicks
}

// clockTicks is USER_HZ, 100 on every Linux architecture Go supports.
const clockTicks = 100

// CountEntries counts the entries of a /proc directory.
func CountEntries(dir string) int { return countDir(dir) }

// DaemonTable formats shipped-daemon results.
func DaemonTable(ds []Daemon) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-16s %6s %7s %6s %8s %8s %8s %8s %8s %7s %6s %8s %8s %9s  %s\n",
		"hierarchy", "cgrps", "watched", "arm s", "RSS MiB", "anon", "file", "Pss", "PssAnon", "threads", "fds", "wakeups", "idleCPU", "used RSS", "notes")
	for _, d := range ds {
		fmt.Fprintf(&b, "%-16s %6d %7d %6.2f %8.2f %8.2f %8.2f %8.2f %8.2f %7d %6d %8d %6.0fms %9.2f  %s\n",
			d.Hierarchy, d.Cgroups, d.Watched, d.ArmSec, mib(d.RSSKiB), mib(d.AnonKiB), mib(d.FileKiB), mib(d.PssKiB), mib(d.PssAnonKiB),
			d.Threads, d.FDs, d.Wakeups, d.IdleCPUms, mib(d.UsedRSSKiB), d.Err)
	}
	return b.String()
}
