//go:build linux

// Command peerprobe is the guest side of one run of `make bench-peers`: it
// starts the incident (the command after --), watches the container's
// cgroup, the kernel log and the hog until the loop is broken or the cap
// passes, and prints one PEERRUN line (peerbench.Run) with the raw facts.
//
//	peerprobe -peer P -variant V -n N -cgroup /system.slice/x.service -comm hog
//	          [-init-pid PID | -init-comm sh] [-rc-file F] [-running 'sh cmd']
//	          [-units a.service,b.service] [-cap 90s] -- COMMAND...
//
// Times are put on the kernel log's clock: a marker written to /dev/kmsg
// gives the offset of CLOCK_MONOTONIC (pidfd wake-ups, journal entries).
// At the cap the probe SIGKILLs the hog itself (through a pidfd), so the
// next run starts from a quiet system.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/oomwatch/oomwatch/internal/kmsg"
	"github.com/oomwatch/oomwatch/test/peerbench"
)

const cgroot = "/sys/fs/cgroup"

func mono() float64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return float64(ts.Sec) + float64(ts.Nsec)/1e9
}

// klog follows /dev/kmsg from its end.
type klog struct {
	cgroup string
	marker string

	mu       sync.Mutex
	offset   float64 // kernel clock − CLOCK_MONOTONIC
	haveOff  bool
	pending  float64 // the last "invoked oom-killer" not yet tied to a cgroup
	firstOOM float64
	kills    []peerbench.Kill
	lastSeq  uint64
	lost     uint64
}

func openKlog(cgroup string) (*klog, error) {
	fd, err := unix.Open("/dev/kmsg", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/kmsg: %w", err)
	}
	if _, err := unix.Seek(fd, 0, 2); err != nil { // SEEK_END: only what comes from now
		unix.Close(fd)
		return nil, fmt.Errorf("seek /dev/kmsg: %w", err)
	}
	k := &klog{cgroup: cgroup, marker: fmt.Sprintf("peerprobe mark %d", os.Getpid())}
	go k.read(fd)
	w, err := os.OpenFile("/dev/kmsg", os.O_WRONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/kmsg for the marker: %w", err)
	}
	defer w.Close()
	before := mono()
	if _, err := w.WriteString(k.marker + "\n"); err != nil {
		return nil, fmt.Errorf("write the marker: %w", err)
	}
	after := mono()
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		k.mu.Lock()
		ok := k.haveOff
		if ok {
			k.offset -= (before + after) / 2
		}
		k.mu.Unlock()
		if ok {
			return k, nil
		}
	}
	return nil, errors.New("the marker written to /dev/kmsg never came back")
}

func (k *klog) read(fd int) {
	buf := make([]byte, 16384)
	for {
		n, err := unix.Read(fd, buf)
		if err == unix.EPIPE { // overwritten before we read it: the seq gap counts them
			continue
		}
		if err == unix.EINTR {
			continue
		}
		if err != nil || n <= 0 {
			return
		}
		rec, perr := kmsg.Parse(buf[:n])
		if perr != nil {
			continue
		}
		k.observe(rec)
	}
}

func (k *klog) observe(rec kmsg.Record) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.lastSeq != 0 && rec.Seq > k.lastSeq+1 {
		k.lost += rec.Seq - k.lastSeq - 1
	}
	k.lastSeq = rec.Seq
	ts := float64(rec.Usec) / 1e6
	if !rec.Kernel() {
		if !k.haveOff && strings.Contains(rec.Message, k.marker) {
			k.offset, k.haveOff = ts, true
		}
		return
	}
	l, ok := kmsg.Match(rec.Message)
	if !ok {
		return
	}
	switch l.Kind {
	case kmsg.KindInvoked:
		k.pending = ts
	case kmsg.KindStats, kmsg.KindConstraint:
		if l.Cgroup == k.cgroup && k.firstOOM == 0 && k.pending > 0 {
			k.firstOOM = k.pending
		}
	case kmsg.KindKilled:
		k.kills = append(k.kills, peerbench.Kill{TS: ts, PID: l.PID, Comm: l.Comm})
	}
}

func (k *klog) toKernel(m float64) float64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	return m + k.offset
}

// counters are a cgroup's memory.events oom/oom_kill and cpu.stat usage_usec.
type counters struct{ oom, oomKill, cpu uint64 }

func readCounters(cg string) (counters, bool) {
	var c counters
	ev, err := os.ReadFile(filepath.Join(cgroot, cg, "memory.events"))
	if err != nil {
		return c, false
	}
	c.oom, c.oomKill = field(ev, "oom"), field(ev, "oom_kill")
	st, err := os.ReadFile(filepath.Join(cgroot, cg, "cpu.stat"))
	if err != nil {
		return c, false
	}
	c.cpu = field(st, "usage_usec")
	return c, true
}

func field(b []byte, key string) uint64 {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if ok && k == key {
			n, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}

func comm(pid int) string {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	return strings.TrimSpace(string(b))
}

// findTask returns a task named name in cg (recurse: also its descendants).
func findTask(cg, name string, recurse bool) int {
	var pid int
	var walk func(dir string)
	walk = func(dir string) {
		b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		if err != nil {
			return
		}
		for _, f := range strings.Fields(string(b)) {
			if p, err := strconv.Atoi(f); err == nil && comm(p) == name {
				pid = p
				return
			}
		}
		if !recurse {
			return
		}
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if e.IsDir() && pid == 0 {
				walk(filepath.Join(dir, e.Name()))
			}
		}
	}
	walk(filepath.Join(cgroot, cg))
	return pid
}

func alive(pid int) bool {
	if pid <= 0 || unix.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i > 0 && i+2 < len(s) {
		return s[i+2] != 'Z' && s[i+2] != 'X'
	}
	return true
}

// journal returns the lines of units logged since the CLOCK_MONOTONIC
// time since that say a peer killed or acted.
func journal(units []string, since float64, k *klog) []peerbench.JournalLine {
	if len(units) == 0 {
		return nil
	}
	args := []string{"-b", "-o", "json", "--no-pager", "--output-fields=MESSAGE,JSON,_SYSTEMD_UNIT"}
	for _, u := range units {
		args = append(args, "-u", u)
	}
	out, err := exec.Command("journalctl", args...).Output()
	if err != nil && len(out) == 0 {
		return []peerbench.JournalLine{{Unit: "journalctl", Message: err.Error()}}
	}
	var lines []peerbench.JournalLine
	for _, l := range strings.Split(string(out), "\n") {
		var e struct {
			Mono string          `json:"__MONOTONIC_TIMESTAMP"`
			Unit string          `json:"_SYSTEMD_UNIT"`
			Msg  json.RawMessage `json:"MESSAGE"`
			JSON json.RawMessage `json:"JSON"` // oomwatch's whole event (systemd.JournalWriter)
		}
		if json.Unmarshal([]byte(l), &e) != nil {
			continue
		}
		us, err := strconv.ParseUint(e.Mono, 10, 64)
		if err != nil || float64(us)/1e6 < since {
			continue
		}
		msg := text(e.Msg)
		if e.Unit == "oomwatch.service" {
			// its events of the incident, as the daemon logged them
			if j := text(e.JSON); j != "" {
				msg = j
			}
			if !strings.Contains(msg, `"event":"incident"`) && !strings.Contains(msg, `"event":"action"`) &&
				!strings.Contains(msg, "OOMPolicy") && !strings.Contains(msg, `"event":"oom_policy_stop"`) {
				continue
			}
		} else if !strings.HasPrefix(msg, "Killed ") && !strings.Contains(msg, "sending SIG") {
			continue
		}
		if len(msg) > 400 {
			msg = msg[:400]
		}
		lines = append(lines, peerbench.JournalLine{TS: k.toKernel(float64(us) / 1e6), Unit: e.Unit, Message: msg})
	}
	return lines
}

func main() {
	var (
		r        peerbench.Run
		name     = flag.String("comm", "hog", "the hog's comm")
		initPID  = flag.Int("init-pid", 0, "the container's init")
		initComm = flag.String("init-comm", "", "find the container's init by its comm in the cgroup (not its descendants)")
		rcFile   = flag.String("rc-file", "", "file the container's init writes the hog's exit status to")
		running  = flag.String("running", "", "shell command that succeeds while the container runs")
		units    = flag.String("units", "", "comma-separated units whose journal lines are kept")
		capDur   = flag.Duration("cap", 90*time.Second, "give up this long after the first OOM")
		noOOM    = flag.Duration("no-oom", 120*time.Second, "give up when no OOM came this long after the start")
	)
	flag.StringVar(&r.Peer, "peer", "", "peer name")
	flag.StringVar(&r.Variant, "variant", "", "incident variant")
	flag.IntVar(&r.N, "n", 0, "run number")
	flag.StringVar(&r.Cgroup, "cgroup", "", "the container's cgroup, from the cgroup2 root")
	flag.Parse()
	r.CapSec = capDur.Seconds()
	emit := func() {
		b, _ := json.Marshal(r)
		fmt.Printf("%s%s\n", peerbench.RunPrefix, b)
	}
	if r.Cgroup == "" || flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "peerprobe: -cgroup and a command are needed")
		os.Exit(64)
	}
	k, err := openKlog(r.Cgroup)
	if err != nil {
		r.Error = err.Error()
		emit()
		return
	}
	base, _ := readCounters(r.Cgroup) // zero for a unit's cgroup not made yet
	start := mono()

	cmd := exec.Command(flag.Arg(0), flag.Args()[1:]...)
	cmd.Stdin = nil
	logf, _ := os.Create(fmt.Sprintf("/run/peerprobe-%s-%s-%d.out", r.Peer, r.Variant, r.N))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		r.Error = "start: " + err.Error()
		emit()
		return
	}
	childDone := make(chan string, 1)
	go func() {
		err := cmd.Wait()
		var ee *exec.ExitError
		switch {
		case err == nil:
			childDone <- "exit 0"
		case errors.As(err, &ee):
			childDone <- status(ee.ProcessState)
		default:
			childDone <- err.Error()
		}
	}()

	hogExit := make(chan float64, 1)
	var hogFD int = -1
	last := base
	var cpuFirst uint64
	var counterOOM float64 // CLOCK_MONOTONIC of the first OOM the counter showed
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
loop:
	for {
		select {
		case t := <-hogExit:
			r.HogExit = k.toKernel(t)
			if c, ok := readCounters(r.Cgroup); ok {
				last = c
			}
			break loop
		case <-tick.C:
		}
		now := mono()
		if c, ok := readCounters(r.Cgroup); ok {
			last = c
			if c.oom > base.oom && counterOOM == 0 {
				counterOOM, cpuFirst = now, c.cpu
			}
		}
		if r.HogPID == 0 {
			if p := findTask(r.Cgroup, *name, true); p > 0 {
				fd, err := unix.PidfdOpen(p, 0)
				if err == nil {
					r.HogPID, hogFD = p, fd
					go func() {
						for {
							_, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, -1)
							if err != unix.EINTR {
								break
							}
						}
						hogExit <- mono()
					}()
				}
			}
		}
		if r.InitPID == 0 {
			if *initPID > 0 {
				r.InitPID = *initPID
			} else if *initComm != "" {
				r.InitPID = findTask(r.Cgroup, *initComm, false)
			}
		}
		k.mu.Lock()
		first := k.firstOOM
		k.mu.Unlock()
		if first == 0 && counterOOM > 0 {
			first = k.toKernel(counterOOM)
		}
		switch {
		case first > 0 && k.toKernel(now)-first >= capDur.Seconds():
			r.Capped = true
			if c, ok := readCounters(r.Cgroup); ok {
				last = c
			}
			if hogFD >= 0 {
				_ = unix.PidfdSendSignal(hogFD, unix.SIGKILL, nil, 0)
				select {
				case t := <-hogExit:
					r.HogExit = k.toKernel(t)
				case <-time.After(10 * time.Second):
				}
			}
			break loop
		case first == 0 && now-start >= noOOM.Seconds():
			r.Error = fmt.Sprintf("no OOM within %v of the start", *noOOM)
			if hogFD >= 0 {
				_ = unix.PidfdSendSignal(hogFD, unix.SIGKILL, nil, 0)
			}
			break loop
		}
	}
	if counterOOM > 0 {
		r.CPUUsec = last.cpu - cpuFirst
	}
	r.OOM, r.OOMKill = last.oom-base.oom, last.oomKill-base.oomKill
	r.InitAlive = alive(r.InitPID)
	time.Sleep(time.Second) // the kill's kernel lines and the peers' journal lines

	select {
	case s := <-childDone:
		if *rcFile == "" {
			r.HogStatus = s
		}
	case <-time.After(5 * time.Second):
	}
	if *rcFile != "" {
		for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
			if b, err := os.ReadFile(*rcFile); err == nil && len(bytes.TrimSpace(b)) > 0 {
				r.HogStatus = shellStatus(strings.TrimSpace(string(b)))
				break
			}
		}
	}
	if *running != "" {
		r.Running = exec.Command("sh", "-c", *running).Run() == nil
	}
	k.mu.Lock()
	if k.firstOOM > 0 {
		r.FirstOOM = k.firstOOM
	}
	r.Kills = append(r.Kills, k.kills...)
	r.LostKmsg = k.lost
	k.mu.Unlock()
	if r.FirstOOM == 0 && counterOOM > 0 {
		r.FirstOOM = k.toKernel(counterOOM)
	}
	var us []string
	if *units != "" {
		us = strings.Split(*units, ",")
	}
	r.Journal = journal(us, start, k)
	emit()
}

// text is a journal field: a string, or the byte array journalctl gives
// for one that is not UTF-8.
func text(f json.RawMessage) string {
	var s string
	if json.Unmarshal(f, &s) == nil {
		return s
	}
	var raw []byte
	if json.Unmarshal(f, &raw) == nil {
		return string(raw)
	}
	return ""
}

// status renders a process's end: "signal 9" or "exit N".
func status(ps *os.ProcessState) string {
	if ws, ok := ps.Sys().(unix.WaitStatus); ok && ws.Signaled() {
		return "signal " + strconv.Itoa(int(ws.Signal()))
	}
	return "exit " + strconv.Itoa(ps.ExitCode())
}

// shellStatus renders a shell's $?: 128+N is signal N.
func shellStatus(s string) string {
	n, err := strconv.Atoi(s)
	switch {
	case err != nil:
		return s
	case n > 128:
		return "signal " + strconv.Itoa(n-128)
	}
	return "exit " + s
}
