package scalebench

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/oomwatch/oomwatch/test/inotifyinfo"
)

// Prefix names every cgroup this package creates: Prefix<pid>.
const Prefix = "oomwatch-scale-"

// Sweep removes leftovers of earlier runs (Prefix<pid> under mount whose pid
// is no longer alive), children first. It never touches anything else.
func Sweep(mount string) []string {
	ents, _ := os.ReadDir(mount)
	var removed []string
	for _, e := range ents {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), Prefix) {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimPrefix(e.Name(), Prefix))
		if err == nil && pid != os.Getpid() {
			if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
				continue // still running: someone else's
			}
		}
		if err == nil && pid == os.Getpid() {
			continue
		}
		d := filepath.Join(mount, e.Name())
		rmTree(d)
		removed = append(removed, d)
	}
	return removed
}

// rmTree removes an (empty of tasks) cgroup directory tree, deepest first.
func rmTree(d string) error {
	ents, _ := os.ReadDir(d)
	for _, e := range ents {
		if e.IsDir() {
			rmTree(filepath.Join(d, e.Name()))
		}
	}
	var err error
	for i := 0; i < 50; i++ {
		if err = syscall.Rmdir(d); err == nil || errors.Is(err, syscall.ENOENT) {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return err
}

// Tree is the test's parent cgroup with numbered, empty children.
type Tree struct {
	Dir     string
	Mount   string
	Version int
	n       int
}

// NewTree creates mount/Prefix<pid>. On v2 it enables the memory controller
// for its children.
func NewTree(mount string, version int) (*Tree, error) {
	t := &Tree{Dir: filepath.Join(mount, fmt.Sprintf("%s%d", Prefix, os.Getpid())), Mount: mount, Version: version}
	if err := os.Mkdir(t.Dir, 0o755); err != nil {
		return nil, err
	}
	if version == 2 {
		if err := os.WriteFile(filepath.Join(t.Dir, "cgroup.subtree_control"), []byte("+memory"), 0); err != nil {
			t.Remove()
			return nil, fmt.Errorf("enable memory below %s: %w", t.Dir, err)
		}
	}
	return t, nil
}

// Grow creates children until there are n.
func (t *Tree) Grow(n int) error {
	for ; t.n < n; t.n++ {
		if err := os.Mkdir(filepath.Join(t.Dir, fmt.Sprintf("c%05d", t.n)), 0o755); err != nil {
			return fmt.Errorf("after %d cgroups: %w", t.n, err)
		}
	}
	return nil
}

// Remove removes every child and the parent.
func (t *Tree) Remove() error { return rmTree(t.Dir) }

// RunChild starts exe args with spec in the environment and waits for its
// result. A child that dies is a result too: Crash says how.
func RunChild(exe string, args []string, sp Spec, timeout time.Duration, extraEnv ...string) Result {
	res := Result{Method: sp.Method}
	b, _ := json.Marshal(sp)
	cmd := exec.Command(exe, args...)
	cmd.Env = append(append(os.Environ(), ChildEnv+"="+string(b)), extraEnv...)
	errf, err := os.CreateTemp("", "scale-child-stderr-")
	if err != nil {
		res.Crash = err.Error()
		return res
	}
	defer os.Remove(errf.Name())
	defer errf.Close()
	cmd.Stderr = errf
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		res.Crash = err.Error()
		return res
	}
	timer := time.AfterFunc(timeout, func() { cmd.Process.Kill() })
	defer timer.Stop()
	var lastProgress string
	got := false
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		switch {
		case strings.HasPrefix(l, progressMark):
			lastProgress = strings.TrimPrefix(l, progressMark)
		case strings.HasPrefix(l, resultMark):
			if json.Unmarshal([]byte(strings.TrimPrefix(l, resultMark)), &res) == nil {
				got = true
			}
		}
	}
	werr := cmd.Wait()
	if !got || werr != nil {
		res.Crash = crashText(errf.Name(), werr)
		if lastProgress != "" {
			res.Crash += " (last progress: " + lastProgress + " armed)"
		}
	}
	return res
}

// crashText is the child's first fatal line (Go runtime throw, panic) and
// its exit status.
func crashText(stderrPath string, werr error) string {
	f, err := os.Open(stderrPath)
	var head []byte
	if err == nil {
		head, _ = io.ReadAll(io.LimitReader(f, 16<<10))
		f.Close()
	}
	var lines []string
	for _, l := range strings.Split(string(head), "\n") {
		if strings.HasPrefix(l, "runtime:") || strings.HasPrefix(l, "fatal error:") || strings.HasPrefix(l, "panic:") || strings.HasPrefix(l, "scale child:") {
			lines = append(lines, l)
		}
		if len(lines) == 3 {
			break
		}
	}
	if len(lines) == 0 && len(head) > 0 {
		lines = append(lines, strings.TrimSpace(string(head[:min(len(head), 300)])))
	}
	st := "no result"
	if werr != nil {
		st = werr.Error()
	}
	return strings.Join(append(lines, st), "; ")
}

// ---- discovery churn ----

// ChurnResult is one churn run.
type ChurnResult struct {
	Hierarchy   string    `json:"hierarchy"`
	Seconds     float64   `json:"seconds"`
	Created     int       `json:"created"`
	Removed     int       `json:"removed"`
	Rate        float64   `json:"rate"` // created per second achieved
	MaxAlive    int       `json:"max_alive"`
	Checked     int       `json:"checked"` // cgroups checked for a watch just before their removal
	Missed      int       `json:"missed"`  // of those, without a watch
	MissedEx    []string  `json:"missed_ex,omitempty"`
	WatchedPre  int       `json:"watched_pre"`
	Before      *Snapshot `json:"before"`
	Mid         *Snapshot `json:"mid,omitempty"` // after the first of two rounds
	After       Snapshot  `json:"after"`
	Rounds      int       `json:"rounds"`
	WatchedPost int       `json:"watched_post"`
	Note        string    `json:"note"`
	Err         string    `json:"err,omitempty"`
}

// RunChurn runs the watchdog in a child rooted at tree.Dir (which must have
// no children), then creates rate cgroups per second for dur, each removed
// lifetime after its creation. Just before each removal it checks, in the
// kernel's own list of the child's inotify watches, that the cgroup's
// directory inode is watched: a cgroup the watchdog has not armed by then
// counts as missed. At the end the child reports fds and RSS (after a GC)
// to compare with before.
func RunChurn(exe string, args []string, tree *Tree, rate int, dur, lifetime time.Duration, extraEnv ...string) (cr ChurnResult) {
	sp := Spec{Method: Churn, Version: tree.Version, Root: tree.Dir, Mount: tree.Mount, Settle: 2 * time.Second, Profile: os.Getenv("OOMWATCH_SCALE_PROFILE")}
	b, _ := json.Marshal(sp)
	cmd := exec.Command(exe, args...)
	cmd.Env = append(append(os.Environ(), ChildEnv+"="+string(b)), extraEnv...)
	cmd.Stderr = os.Stderr
	stdin, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		cr.Err = err.Error()
		return cr
	}
	defer func() {
		stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
	}()
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var rd churnReady
	for sc.Scan() {
		if l := sc.Text(); strings.HasPrefix(l, readyMark) {
			json.Unmarshal([]byte(strings.TrimPrefix(l, readyMark)), &rd)
			break
		}
	}
	if rd.Pid == 0 || rd.InotifyFD < 0 {
		cr.Err = fmt.Sprintf("child did not get ready (%+v)", rd)
		return cr
	}
	cr.Before, cr.WatchedPre = &rd.Before, rd.Watched

	type live struct {
		name string
		ino  uint64
		born time.Time
	}
	var alive []live
	set := map[uint64]bool{}
	seq := 0
	check := func(batch []live) {
		if len(batch) == 0 {
			return
		}
		clear(set)
		if err := inotifyinfo.Inodes(rd.Pid, rd.InotifyFD, set); err != nil {
			cr.Err = err.Error()
			return
		}
		for _, l := range batch {
			cr.Checked++
			if !set[l.ino] {
				cr.Missed++
				if len(cr.MissedEx) < 5 {
					cr.MissedEx = append(cr.MissedEx, fmt.Sprintf("%s (alive %v)", l.name, time.Since(l.born).Round(time.Millisecond)))
				}
			}
		}
	}
	remove := func(batch []live) {
		for _, l := range batch {
			if err := syscall.Rmdir(filepath.Join(tree.Dir, l.name)); err == nil {
				cr.Removed++
			} else if cr.Err == "" {
				cr.Err = "rmdir: " + err.Error()
			}
		}
	}
	round := func() {
		const tick = 10 * time.Millisecond
		start := time.Now()
		next := start
		for time.Since(start) < dur {
			// create what is due by now (keeps the rate even if a tick ran late)
			due := int(float64(rate) * time.Since(start).Seconds())
			for cr.Created < due {
				name := fmt.Sprintf("k%07d", seq)
				seq++
				p := filepath.Join(tree.Dir, name)
				if err := os.Mkdir(p, 0o755); err != nil {
					cr.Err = "mkdir: " + err.Error()
					break
				}
				var st syscall.Stat_t
				syscall.Stat(p, &st)
				alive = append(alive, live{name, st.Ino, time.Now()})
				cr.Created++
			}
			cr.MaxAlive = max(cr.MaxAlive, len(alive))
			// remove those past their lifetime, after checking they are watched
			i := 0
			for i < len(alive) && time.Since(alive[i].born) >= lifetime {
				i++
			}
			check(alive[:i])
			remove(alive[:i])
			alive = alive[i:]
			if cr.Err != "" {
				break
			}
			next = next.Add(tick)
			time.Sleep(time.Until(next))
		}
		cr.Seconds = time.Since(start).Seconds()
		cr.Rate = float64(cr.Created) / cr.Seconds
		// The rest live out their lifetime too before the check and removal.
		if len(alive) > 0 {
			time.Sleep(time.Until(alive[len(alive)-1].born.Add(lifetime)))
		}
		check(alive)
		remove(alive)
		alive = alive[:0]
	}
	// Two rounds: growth in the first may be maps sized for the peak (Go
	// maps do not shrink); growth again in the second would be a leak.
	round()
	fmt.Fprintln(stdin, "snap")
	for sc.Scan() {
		if l := sc.Text(); strings.HasPrefix(l, snapMark) {
			var mid Snapshot
			if json.Unmarshal([]byte(strings.TrimPrefix(l, snapMark)), &mid) == nil {
				cr.Mid = &mid
			}
			break
		}
	}
	first := cr
	cr.Created, cr.Removed, cr.MaxAlive = 0, 0, 0
	round()
	cr.Seconds += first.Seconds
	cr.Created += first.Created
	cr.Removed += first.Removed
	cr.Rate = float64(cr.Created) / cr.Seconds
	cr.MaxAlive = max(cr.MaxAlive, first.MaxAlive)
	cr.Rounds = 2
	fmt.Fprintln(stdin, "done")
	for sc.Scan() {
		if l := sc.Text(); strings.HasPrefix(l, resultMark) {
			var res Result
			if json.Unmarshal([]byte(strings.TrimPrefix(l, resultMark)), &res) == nil {
				cr.After, cr.WatchedPost, cr.Note = res.End, res.Watched, res.Note
			}
			break
		}
	}
	return cr
}

// ---- tables ----

func mib(kib int64) float64 { return float64(kib) / 1024 }

// ScaleTable formats scale results.
func ScaleTable(rs []Result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-16s %6s %-9s %6s %7s %8s %8s %7s %7s %6s %8s %9s  %s\n",
		"hierarchy", "cgrps", "method", "armed", "arm s", "RSS MiB", "HWM MiB", "gorout", "threads", "fds", "idleCPU", "wakeups/s", "notes")
	for _, r := range rs {
		if r.Crash != "" && r.End.RSSKiB == 0 {
			fmt.Fprintf(&b, "%-16s %6d %-9s %6s %7s %8s %8s %7s %7s %6s %8s %9s  CRASHED: %s\n",
				r.Hierarchy, r.Cgroups, r.Method, "-", "-", "-", "-", "-", "-", "-", "-", "-", r.Crash)
			continue
		}
		note := r.Note
		if r.BaseSec > 0 {
			note = strings.TrimSpace(fmt.Sprintf("counters read %.2fs; %s", r.BaseSec, note))
		}
		if r.ArmErrors > 0 {
			note = strings.TrimSpace(fmt.Sprintf("%s %d arm errors, first: %s", note, r.ArmErrors, r.FirstErr))
		}
		if r.Crash != "" {
			note += " CRASH: " + r.Crash
		}
		if r.Wakeups > 0 {
			note = strings.TrimSpace(fmt.Sprintf("%s wakeups %d in %.0fs, busiest threads %v", note, r.Wakeups, r.IdleSec, r.TopThreads))
		}
		fmt.Fprintf(&b, "%-16s %6d %-9s %6d %7.2f %8.1f %8.1f %7d %7d %6d %6.0fms %9.2f  %s\n",
			r.Hierarchy, r.Cgroups, r.Method, r.Armed, r.ArmSec, mib(r.End.RSSKiB), mib(r.End.HWMKiB),
			r.End.Goroutines, r.End.Threads, r.End.FDs, r.IdleCPUms, r.WakeupsPS, note)
	}
	return b.String()
}

// ChurnTable formats churn results.
func ChurnTable(cs []ChurnResult) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-16s %6s %8s %7s %8s %8s %7s %6s | %-17s %-19s %-11s %s\n",
		"hierarchy", "secs", "created", "rate/s", "maxalive", "checked", "missed", "", "fds before→after", "RSS MiB before→after", "goroutines", "notes")
	for _, c := range cs {
		if c.Before == nil {
			fmt.Fprintf(&b, "%-16s ERROR %s\n", c.Hierarchy, c.Err)
			continue
		}
		note := c.Note
		if c.Err != "" {
			note += " ERR: " + c.Err
		}
		if len(c.MissedEx) > 0 {
			note += " missed e.g. " + strings.Join(c.MissedEx, ", ")
		}
		if c.Mid != nil {
			note = fmt.Sprintf("after round 1 of 2: RSS %.1f MiB, heap %.1f MiB (end: heap %.1f MiB); %s",
				mib(c.Mid.RSSKiB), mib(c.Mid.HeapKiB), mib(c.After.HeapKiB), note)
		}
		fmt.Fprintf(&b, "%-16s %6.1f %8d %7.0f %8d %8d %7d %6s | %7d → %-7d %8.1f → %-8.1f %4d → %-4d %s; watched %d → %d\n",
			c.Hierarchy, c.Seconds, c.Created, c.Rate, c.MaxAlive, c.Checked, c.Missed, "",
			c.Before.FDs, c.After.FDs, mib(c.Before.RSSKiB), mib(c.After.RSSKiB), c.Before.Goroutines, c.After.Goroutines,
			note, c.WatchedPre, c.WatchedPost)
	}
	return b.String()
}
