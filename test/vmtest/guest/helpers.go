//go:build vmguest

package guest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// UnsupportedPrefix marks a skip the host reports as a skip (the scenario does
// not apply to this kernel/mode). Any other guest skip is a host failure.
const UnsupportedPrefix = "VMTEST-UNSUPPORTED: "

// NoDaemonPrefix marks a skip because /bin/oomwatch was not put in the VM; the
// host accepts it only while OOMWATCH_VM_NO_DAEMON=1 (harness development).
const NoDaemonPrefix = "VMTEST-NO-DAEMON: "

// Env describes the VM a scenario runs in.
type Env struct {
	Mode   string // "v1" or "v2"
	Kernel string // "6.1", "6.12"
	Hog    string // path of the hog test program (test/testbin/hog)
	Daemon string // path of the oomwatch binary; "" if the host did not provide one
}

// V1 reports whether the VM has the v1 memory+freezer hierarchies (and no cgroup2).
func (e Env) V1() bool { return e.Mode == "v1" }

// Setup returns the VM environment; it fails the test outside a test VM.
func Setup(t testing.TB) Env {
	t.Helper()
	e := Env{
		Mode:   os.Getenv("OOMWATCH_VM_MODE"),
		Kernel: os.Getenv("OOMWATCH_VM_KERNEL"),
		Hog:    os.Getenv("OOMWATCH_VM_HOG"),
		Daemon: os.Getenv("OOMWATCH_VM_DAEMON"),
	}
	if e.Mode != "v1" && e.Mode != "v2" {
		t.Fatalf("not in a test VM (OOMWATCH_VM_MODE=%q); run via test/vmtest", e.Mode)
	}
	if os.Getpid() == 1 || os.Geteuid() != 0 {
		t.Fatalf("guest tests must run as root and not as PID 1")
	}
	if e.Hog == "" {
		e.Hog = "/bin/hog"
	}
	if e.Daemon != "" {
		if _, err := os.Stat(e.Daemon); err != nil {
			e.Daemon = ""
		}
	}
	return e
}

// Unsupported skips a scenario that does not apply to this kernel/mode; the
// host reports it as skipped, not failed.
func Unsupported(t testing.TB, format string, args ...any) {
	t.Helper()
	t.Skipf(UnsupportedPrefix+format, args...)
}

// OnlyModes declares the scenario unsupported outside the given modes.
func OnlyModes(t testing.TB, e Env, modes ...string) {
	t.Helper()
	for _, m := range modes {
		if e.Mode == m {
			return
		}
	}
	Unsupported(t, "needs cgroup %s, VM is %s on %s", strings.Join(modes, "/"), e.Mode, e.Kernel)
}

// RequireDaemon skips (a host failure unless the host runs without the daemon on purpose) when /bin/oomwatch is absent.
func RequireDaemon(t testing.TB, e Env) {
	t.Helper()
	if e.Daemon == "" {
		t.Skipf(NoDaemonPrefix + "the oomwatch binary is not in this VM")
	}
}

// Eventually polls cond every 20ms until it returns true or timeout passes,
// then fails the test with desc and cond's last detail.
func Eventually(t testing.TB, timeout time.Duration, desc string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var detail string
	for {
		var ok bool
		ok, detail = cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s; last: %s", timeout, desc, detail)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ---- cgroups ----

// Cgroup is a test memory cgroup (v2 dir, or v1 memory + freezer dirs).
type Cgroup struct {
	Name    string
	Mode    string
	Mem     string // v2: the cgroup dir; v1: the memory hierarchy dir
	Freezer string // v1: the freezer hierarchy dir; v2: == Mem
}

var cgSeq atomic.Int64

// NewCgroup creates a unique cgroup limited to limitMB MiB (no swap) and
// removes it when the test ends, killing whatever is still inside.
func NewCgroup(t testing.TB, e Env, limitMB int) *Cgroup {
	t.Helper()
	c := newCgroupDirs(t, e)
	c.SetLimit(t, limitMB)
	return c
}

// newCgroupDirs creates a uniquely named cgroup (v1: in the memory and
// freezer hierarchies) without a limit, removed when the test ends.
func newCgroupDirs(t testing.TB, e Env) *Cgroup {
	t.Helper()
	name := fmt.Sprintf("vmt-%s-%d", sanitize(t.Name()), cgSeq.Add(1))
	c := &Cgroup{Name: name, Mode: e.Mode}
	c.Mem = filepath.Join("/sys/fs/cgroup", name)
	c.Freezer = c.Mem
	dirs := []string{c.Mem}
	if e.V1() {
		c.Mem = filepath.Join("/sys/fs/cgroup/memory", name)
		c.Freezer = filepath.Join("/sys/fs/cgroup/freezer", name)
		dirs = []string{c.Mem, c.Freezer}
	}
	for _, d := range dirs {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(c.Destroy)
	return c
}

// SetLimit sets the cgroup's memory limit (and no swap).
func (c *Cgroup) SetLimit(t testing.TB, limitMB int) {
	t.Helper()
	limit := strconv.Itoa(limitMB << 20)
	if c.Mode == "v1" {
		mustWrite(t, filepath.Join(c.Mem, "memory.limit_in_bytes"), limit)
		// memsw must be >= limit_in_bytes; set it after, equal: no swap use either way
		if _, err := os.Stat(filepath.Join(c.Mem, "memory.memsw.limit_in_bytes")); err == nil {
			mustWrite(t, filepath.Join(c.Mem, "memory.memsw.limit_in_bytes"), limit)
		}
		return
	}
	mustWrite(t, filepath.Join(c.Mem, "memory.max"), limit)
	if _, err := os.Stat(filepath.Join(c.Mem, "memory.swap.max")); err == nil {
		mustWrite(t, filepath.Join(c.Mem, "memory.swap.max"), "0")
	}
}

// ProcsFiles are the cgroup.procs files a process writes its pid to (hog -cgroup-procs).
func (c *Cgroup) ProcsFiles() []string {
	if c.Mode == "v1" {
		return []string{filepath.Join(c.Mem, "cgroup.procs"), filepath.Join(c.Freezer, "cgroup.procs")}
	}
	return []string{filepath.Join(c.Mem, "cgroup.procs")}
}

// Procs lists the pids in the (memory) cgroup.
func (c *Cgroup) Procs() []int {
	b, _ := os.ReadFile(filepath.Join(c.Mem, "cgroup.procs"))
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		if p, err := strconv.Atoi(f); err == nil {
			pids = append(pids, p)
		}
	}
	return pids
}

// Counters are the memcg OOM counters of one cgroup.
type Counters struct {
	OOM      int64 // v2 memory.events oom (v1: -1)
	OOMKill  int64 // v2 memory.events oom_kill; v1 memory.oom_control oom_kill
	Max      int64 // v2 memory.events max (v1: -1)
	Failcnt  int64 // v1 memory.failcnt + memory.memsw.failcnt (v2: -1): with memsw limited, failed charges count there
	UnderOOM int64 // v1 memory.oom_control under_oom (v2: -1)
}

func (k Counters) String() string {
	if k.OOM >= 0 {
		return fmt.Sprintf("max=%d oom=%d oom_kill=%d", k.Max, k.OOM, k.OOMKill)
	}
	return fmt.Sprintf("failcnt=%d under_oom=%d oom_kill=%d", k.Failcnt, k.UnderOOM, k.OOMKill)
}

// Counters reads the cgroup's OOM counters.
func (c *Cgroup) Counters(t testing.TB) Counters {
	t.Helper()
	k := Counters{OOM: -1, Max: -1, Failcnt: -1, UnderOOM: -1}
	if c.Mode == "v1" {
		kv := readKV(t, filepath.Join(c.Mem, "memory.oom_control"))
		k.OOMKill, k.UnderOOM = kv["oom_kill"], kv["under_oom"]
		k.Failcnt = readInt(t, filepath.Join(c.Mem, "memory.failcnt"))
		if _, err := os.Stat(filepath.Join(c.Mem, "memory.memsw.failcnt")); err == nil {
			k.Failcnt += readInt(t, filepath.Join(c.Mem, "memory.memsw.failcnt"))
		}
		return k
	}
	kv := readKV(t, filepath.Join(c.Mem, "memory.events"))
	k.OOM, k.OOMKill, k.Max = kv["oom"], kv["oom_kill"], kv["max"]
	return k
}

// File returns the path of a control file in the memory cgroup.
func (c *Cgroup) File(name string) string { return filepath.Join(c.Mem, name) }

// Destroy thaws, SIGKILLs everything inside, waits for it to empty and removes the cgroup.
func (c *Cgroup) Destroy() {
	if c.Mode == "v1" {
		os.WriteFile(filepath.Join(c.Freezer, "freezer.state"), []byte("THAWED"), 0)
	} else {
		os.WriteFile(filepath.Join(c.Mem, "cgroup.freeze"), []byte("0"), 0)
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		pids := c.Procs()
		if c.Mode == "v1" {
			b, _ := os.ReadFile(filepath.Join(c.Freezer, "cgroup.procs"))
			for _, f := range strings.Fields(string(b)) {
				p, _ := strconv.Atoi(f)
				pids = append(pids, p)
			}
		}
		if len(pids) == 0 {
			break
		}
		for _, p := range pids {
			syscall.Kill(p, syscall.SIGKILL)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, d := range []string{c.Mem, c.Freezer} {
		for i := 0; i < 50; i++ {
			if err := os.Remove(d); err == nil || os.IsNotExist(err) {
				break
			}
			time.Sleep(20 * time.Millisecond) // zombies not reaped yet
		}
	}
}

// ---- processes ----

// Proc is a child process started by a scenario.
type Proc struct {
	Cmd    *exec.Cmd
	Pid    int
	Stderr *os.File // a temp file: a pipe would keep Wait blocked while forked children hold it
	done   chan struct{}
	mu     sync.Mutex
	state  *os.ProcessState
}

// Start starts name with args, and SIGKILLs and reaps it when the test ends.
func Start(t testing.TB, name string, args ...string) *Proc {
	t.Helper()
	cmd := exec.Command(name, args...)
	errf, err := os.CreateTemp("", "proc-stderr-")
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(errf.Name())
	t.Cleanup(func() { errf.Close() })
	p := &Proc{Cmd: cmd, Stderr: errf, done: make(chan struct{})}
	cmd.Stdout = os.Stdout // the console: an *os.File, so Wait does not wait for a copier
	cmd.Stderr = errf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p.Pid = cmd.Process.Pid
	go func() {
		cmd.Wait()
		p.mu.Lock()
		p.state = cmd.ProcessState
		p.mu.Unlock()
		close(p.done)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			t.Errorf("pid %d (%s) did not exit 10s after SIGKILL", p.Pid, name)
		}
	})
	return p
}

var readySeq atomic.Int64

// StartHog starts the hog inside c at oom_score_adj adj, allocating mb MiB,
// and returns once it joined the cgroup and began allocating.
func StartHog(t testing.TB, e Env, c *Cgroup, mb, adj int, extra ...string) *Proc {
	t.Helper()
	ready := fmt.Sprintf("/tmp/hog-ready-%d", readySeq.Add(1))
	args := []string{"-mb", strconv.Itoa(mb), "-adj", strconv.Itoa(adj), "-ready", ready}
	for _, f := range c.ProcsFiles() {
		args = append(args, "-cgroup-procs", f)
	}
	p := Start(t, e.Hog, append(args, extra...)...)
	Eventually(t, 10*time.Second, "hog ready file", func() (bool, string) {
		if p.Exited() {
			return true, ""
		}
		_, err := os.Stat(ready)
		return err == nil, fmt.Sprint(err)
	})
	if p.Exited() {
		t.Fatalf("hog exited during start-up: %v: %s", p.State(), p.StderrText())
	}
	return p
}

// StderrText returns what the process wrote to stderr so far.
func (p *Proc) StderrText() string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/self/fd/%d", p.Stderr.Fd()))
	return string(b)
}

// Exited reports whether the process has exited (and was reaped).
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// State is the exit state, nil while running.
func (p *Proc) State() *os.ProcessState {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state
}

// KilledBy reports whether the process was terminated by sig.
func (p *Proc) KilledBy(sig syscall.Signal) bool {
	st := p.State()
	if st == nil {
		return false
	}
	ws, ok := st.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == sig
}

// ProcState returns the one-letter state from /proc/PID/stat ("" if gone).
func ProcState(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return ""
	}
	return s[i+2 : i+3]
}

// SetAdj writes /proc/PID/oom_score_adj.
func SetAdj(pid, adj int) error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/oom_score_adj", pid), []byte(strconv.Itoa(adj)), 0)
}

// Adj reads /proc/PID/oom_score_adj.
func Adj(pid int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/oom_score_adj", pid))
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// ---- kernel log ----

// Kmsg reads kernel log records logged after OpenKmsg (all levels, not only
// what reaches the console).
type Kmsg struct {
	fd   int
	Lost int // records overwritten before we read them
}

// OpenKmsg opens /dev/kmsg positioned at its end; closed when the test ends.
func OpenKmsg(t testing.TB) *Kmsg {
	t.Helper()
	fd, err := unix.Open("/dev/kmsg", unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := unix.Seek(fd, 0, unix.SEEK_END); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return &Kmsg{fd: fd}
}

// Read returns the messages (text only) logged since the last Read.
func (k *Kmsg) Read() []string {
	var out []string
	for _, r := range k.ReadRecords() {
		out = append(out, r.Text)
	}
	return out
}

// KmsgRecord is one kernel log record with its timestamp.
type KmsgRecord struct {
	Seq  uint64
	Usec uint64 // CLOCK_MONOTONIC-like kernel timestamp, microseconds since boot
	Text string
}

// ReadRecords returns the records (with sequence numbers and timestamps)
// logged since the last Read/ReadRecords.
func (k *Kmsg) ReadRecords() []KmsgRecord {
	var out []KmsgRecord
	buf := make([]byte, 16<<10)
	for {
		n, err := unix.Read(k.fd, buf)
		if errors.Is(err, unix.EPIPE) {
			k.Lost++
			continue
		}
		if err != nil || n <= 0 {
			return out
		}
		rec := string(buf[:n])
		var r KmsgRecord
		if i := strings.IndexByte(rec, ';'); i >= 0 {
			f := strings.Split(rec[:i], ",")
			if len(f) >= 3 {
				r.Seq, _ = strconv.ParseUint(f[1], 10, 64)
				r.Usec, _ = strconv.ParseUint(f[2], 10, 64)
			}
			rec = rec[i+1:]
		}
		if i := strings.IndexByte(rec, '\n'); i >= 0 {
			rec = rec[:i]
		}
		r.Text = rec
		out = append(out, r)
	}
}

// Count returns how many lines contain substr.
func Count(lines []string, substr string) int {
	n := 0
	for _, l := range lines {
		if strings.Contains(l, substr) {
			n++
		}
	}
	return n
}

// Grep returns the lines matching re.
func Grep(lines []string, re string) []string {
	r := regexp.MustCompile(re)
	var out []string
	for _, l := range lines {
		if r.MatchString(l) {
			out = append(out, l)
		}
	}
	return out
}

// ---- v1 OOM notifications ----

// OOMEventfd is an eventfd registered on a v1 memory.oom_control.
type OOMEventfd struct{ efd int }

// RegisterOOMEventfd registers an eventfd for OOM notifications of a v1 cgroup.
func RegisterOOMEventfd(t testing.TB, c *Cgroup) *OOMEventfd {
	t.Helper()
	if c.Mode != "v1" {
		t.Fatal("RegisterOOMEventfd: v1 only")
	}
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	ctl, err := os.Open(c.File("memory.oom_control"))
	if err != nil {
		t.Fatal(err)
	}
	defer ctl.Close() // the kernel holds its own reference
	mustWrite(t, c.File("cgroup.event_control"), fmt.Sprintf("%d %d", efd, ctl.Fd()))
	t.Cleanup(func() { unix.Close(efd) })
	return &OOMEventfd{efd: efd}
}

// Take returns the number of notifications since the last call.
func (o *OOMEventfd) Take() uint64 {
	var b [8]byte
	n, err := unix.Read(o.efd, b[:])
	if err != nil || n != 8 {
		return 0
	}
	return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
		uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
}

// ---- small file helpers ----

func mustWrite(t testing.TB, path, v string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(v), 0); err != nil {
		t.Fatalf("write %q to %s: %v", v, path, err)
	}
}

func readInt(t testing.TB, path string) int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return v
}

func readKV(t testing.TB, path string) map[string]int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]int64{}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) == 2 {
			if v, err := strconv.ParseInt(f[1], 10, 64); err == nil {
				m[f[0]] = v
			}
		}
	}
	return m
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '_'
	}, s)
}

func readFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func countLines(s string) int { return len(strings.Split(strings.TrimSpace(s), "\n")) }

// LoopbackUp brings lo up: the initramfs leaves it down, and a connection to
// 127.0.0.1 then fails with "network is unreachable".
func LoopbackUp(t testing.TB) {
	t.Helper()
	if out, err := exec.Command("ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("ip link set lo up: %v: %s", err, out)
	}
}
