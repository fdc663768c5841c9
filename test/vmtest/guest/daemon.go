//go:build vmguest

package guest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Daemon is a running oomwatch whose JSON log lines (stderr) are collected.
type Daemon struct {
	Pid  int
	Args []string

	cmd     *exec.Cmd
	done    chan struct{} // closed once the process is reaped
	drained chan struct{} // closed once stderr hit EOF

	mu     sync.Mutex
	cond   *sync.Cond
	lines  []string         // every stderr line, raw
	events []map[string]any // the lines that parsed as JSON objects
	state  *os.ProcessState
	term   bool // Stop already ran
}

// StartDaemon starts e.Daemon with args (e.g. "run", "--dry-run"), waits for
// its event=ready line and returns. When the test ends it is stopped with
// SIGTERM and must exit 0 (SIGKILL after 15s); its log is dumped if the test failed.
func StartDaemon(t testing.TB, e Env, args ...string) *Daemon {
	t.Helper()
	return StartDaemonWait(t, e, 30*time.Second, args...)
}

// StartDaemonWait is StartDaemon waiting up to ready for event=ready (many
// cgroups to arm under TCG take longer than 30s).
func StartDaemonWait(t testing.TB, e Env, ready time.Duration, args ...string) *Daemon {
	t.Helper()
	RequireDaemon(t, e)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(e.Daemon, args...)
	cmd.Stdout = os.Stdout
	cmd.Stderr = w
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		t.Fatalf("start %s: %v", e.Daemon, err)
	}
	w.Close()
	// As the shipped unit runs it (Nice=-10): the looping hog and the
	// kernel's reclaim must not decide when the daemon gets the CPU.
	// Threads started before this call keep nice 0: set it on each.
	setNice(t, cmd.Process.Pid, daemonNice)
	d := &Daemon{Pid: cmd.Process.Pid, Args: args, cmd: cmd, done: make(chan struct{}), drained: make(chan struct{})}
	d.cond = sync.NewCond(&d.mu)
	go func() {
		defer close(d.drained)
		defer r.Close()
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			line := sc.Text()
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) != nil {
				m = nil
			} else {
				m[RxKey] = time.Now() // when the line reached us (the daemon logs whole seconds)
			}
			d.mu.Lock()
			d.lines = append(d.lines, line)
			if m != nil {
				d.events = append(d.events, m)
			}
			d.cond.Broadcast()
			d.mu.Unlock()
		}
	}()
	go func() {
		cmd.Wait()
		d.mu.Lock()
		d.state = cmd.ProcessState
		d.cond.Broadcast()
		d.mu.Unlock()
		close(d.done)
	}()
	t.Cleanup(func() {
		d.Stop(t)
		if t.Failed() {
			d.Dump(t)
			return
		}
		// not a failure (ladders legitimately warn), but worth seeing
		for _, m := range d.Events(func(m map[string]any) bool {
			return (m["level"] == "warn" || m["level"] == "error") && m["event"] == nil && m["incident"] == nil
		}) {
			t.Logf("daemon %v: %v", m["level"], m)
		}
	})
	d.WaitEvent(t, ready, "event=ready", Ev("event", "ready"))
	return d
}

// RxKey is the field StartDaemon adds to each parsed line: a time.Time, when it was read.
const RxKey = "_rx"

// Ev matches log lines whose fields equal the given key/value pairs
// (values compared as fmt.Sprint strings, so numbers and bools work too).
func Ev(kv ...any) func(map[string]any) bool {
	return func(m map[string]any) bool {
		for i := 0; i+1 < len(kv); i += 2 {
			v, ok := m[fmt.Sprint(kv[i])]
			if !ok || fmt.Sprint(v) != fmt.Sprint(kv[i+1]) {
				return false
			}
		}
		return true
	}
}

// WaitEvent waits for a log line matching match (earlier lines count too) and
// returns it; it fails the test after timeout or if the daemon exits first.
func (d *Daemon) WaitEvent(t testing.TB, timeout time.Duration, desc string, match func(map[string]any) bool) map[string]any {
	t.Helper()
	m, err := d.waitEvent(timeout, match)
	if err != nil {
		t.Fatalf("daemon: waiting for %s: %v", desc, err)
	}
	return m
}

func (d *Daemon) waitEvent(timeout time.Duration, match func(map[string]any) bool) (map[string]any, error) {
	deadline := time.Now().Add(timeout)
	timer := time.AfterFunc(timeout, func() {
		d.mu.Lock()
		d.cond.Broadcast()
		d.mu.Unlock()
	})
	defer timer.Stop()
	d.mu.Lock()
	defer d.mu.Unlock()
	seen := 0
	for {
		for ; seen < len(d.events); seen++ {
			if match(d.events[seen]) {
				return d.events[seen], nil
			}
		}
		if d.state != nil {
			// the process is gone; give the reader a moment to deliver the last lines
			d.mu.Unlock()
			select {
			case <-d.drained:
			case <-time.After(2 * time.Second):
			}
			d.mu.Lock()
			for ; seen < len(d.events); seen++ {
				if match(d.events[seen]) {
					return d.events[seen], nil
				}
			}
			return nil, fmt.Errorf("daemon exited (%v) first", d.state)
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("timed out after %v", timeout)
		}
		d.cond.Wait()
	}
}

// Events returns the log lines matching match so far.
func (d *Daemon) Events(match func(map[string]any) bool) []map[string]any {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []map[string]any
	for _, m := range d.events {
		if match(m) {
			out = append(out, m)
		}
	}
	return out
}

// Alive reports whether the daemon process is still running.
func (d *Daemon) Alive() bool {
	select {
	case <-d.done:
		return false
	default:
		return true
	}
}

// Stop sends SIGTERM and checks the daemon exits 0 within 15s (then SIGKILL).
// Safe to call more than once; only the first call checks.
func (d *Daemon) Stop(t testing.TB) {
	t.Helper()
	d.mu.Lock()
	if d.term {
		d.mu.Unlock()
		return
	}
	d.term = true
	d.mu.Unlock()
	if !d.Alive() {
		t.Errorf("daemon (pid %d) had already exited before SIGTERM: %v", d.Pid, d.cmd.ProcessState)
		return
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(15 * time.Second):
		d.cmd.Process.Kill()
		<-d.done
		t.Errorf("daemon (pid %d) did not exit within 15s of SIGTERM; killed", d.Pid)
		return
	}
	select {
	case <-d.drained:
	case <-time.After(2 * time.Second):
	}
	if st := d.cmd.ProcessState; !st.Success() {
		t.Errorf("daemon exited with %v after SIGTERM, want exit 0", st)
	}
}

// Dump logs every line the daemon wrote.
func (d *Daemon) Dump(t testing.TB) {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	t.Logf("daemon %v log (%d lines):\n%s", d.Args, len(d.lines), strings.Join(d.lines, "\n"))
}

// ---- cgroup helpers for daemon scenarios ----

// Rel is the cgroup's path relative to the hierarchy root, as oomwatch logs it.
func (c *Cgroup) Rel() string {
	root := "/sys/fs/cgroup"
	if c.Mode == "v1" {
		root = "/sys/fs/cgroup/memory"
	}
	r, _ := filepath.Rel(root, c.Mem)
	return "/" + r
}

// NewChild creates a child cgroup (no limit of its own) below c; on v2 it
// enables +memory in c's cgroup.subtree_control first. Removed at the end of
// the test (before c: cleanups run last-in first-out).
func NewChild(t testing.TB, c *Cgroup, name string) *Cgroup {
	t.Helper()
	ch := &Cgroup{Name: c.Name + "/" + name, Mode: c.Mode, Mem: filepath.Join(c.Mem, name), Freezer: filepath.Join(c.Freezer, name)}
	if c.Mode == "v1" {
		for _, d := range []string{ch.Mem, ch.Freezer} {
			if err := os.Mkdir(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
	} else {
		mustWrite(t, filepath.Join(c.Mem, "cgroup.subtree_control"), "+memory")
		ch.Freezer = ch.Mem
		if err := os.Mkdir(ch.Mem, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(ch.Destroy)
	return ch
}

// Frozen reports v2 cgroup.events "frozen 1" / v1 freezer.state FROZEN, and the raw state.
func (c *Cgroup) Frozen(t testing.TB) (bool, string) {
	t.Helper()
	if c.Mode == "v1" {
		s := strings.TrimSpace(readFile(t, filepath.Join(c.Freezer, "freezer.state")))
		return s == "FROZEN", "freezer.state " + s
	}
	kv := readKV(t, filepath.Join(c.Mem, "cgroup.events"))
	return kv["frozen"] == 1, fmt.Sprintf("cgroup.events frozen %d", kv["frozen"])
}

// Thaw undoes a freeze.
func (c *Cgroup) Thaw(t testing.TB) {
	t.Helper()
	if c.Mode == "v1" {
		mustWrite(t, filepath.Join(c.Freezer, "freezer.state"), "THAWED")
	} else {
		mustWrite(t, filepath.Join(c.Mem, "cgroup.freeze"), "0")
	}
}

// OOMActivity is the counter that climbs during a loop: v2 memory.events oom,
// v1 the failcnt sum (use an OOMEventfd for v1 notifications).
func (c *Cgroup) OOMActivity(t testing.TB) int64 {
	k := c.Counters(t)
	if c.Mode == "v1" {
		return k.Failcnt
	}
	return k.OOM
}

// daemonNice is the Nice= of systemd/oomwatch.service.
const daemonNice = -10

// setNice sets the nice value of every thread of pid (nice is per thread on
// Linux; the Go runtime may have started some already).
func setNice(t testing.TB, pid, nice int) {
	t.Helper()
	tids, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		t.Logf("nice %d for pid %d: %v", nice, pid, err)
		return
	}
	for _, e := range tids {
		tid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if err := unix.Setpriority(unix.PRIO_PROCESS, tid, nice); err != nil {
			t.Logf("nice %d for thread %d of pid %d: %v", nice, tid, pid, err)
		}
	}
}
