// Package procfs is the /proc leaf: it reads what oomwatch needs about a task
// (stat, status, cmdline, oom_score_adj, oom_adj, cgroup) under a proc root
// given as a value, and acts on one task through a verified pidfd (Handle).
//
// Parsers are pure functions of bytes; the I/O around them is thin. Nothing
// here logs. A task that exits while we read it is normal: every ENOENT/ESRCH
// becomes a wrapped ErrGone.
package procfs

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Kernel constants. [6.12 include/linux/sched.h, include/uapi/linux/oom.h]
const (
	PFExiting = 0x00000004 // PF_EXITING: getting shut down
	PFKthread = 0x00200000 // PF_KTHREAD: I am a kernel thread

	OOMScoreAdjMin = -1000 // OOM_SCORE_ADJ_MIN: never chosen by the OOM killer
	OOMScoreAdjMax = 1000  // OOM_SCORE_ADJ_MAX
	OOMDisable     = -17   // legacy oom_adj OOM_DISABLE, reads back for -1000
	OOMAdjustMax   = 15    // legacy oom_adj OOM_ADJUST_MAX, reads back for 1000
)

// maxAncestry bounds Ancestry. Real chains are a few dozen deep; the bound
// only matters for a broken or fake tree.
const maxAncestry = 4096

var (
	// ErrGone means the process exited (or its PID was recycled) while we
	// looked at it. It is the normal end of a process, not a failure.
	ErrGone = errors.New("process gone")
	// ErrProtected is returned by Open for PID 1, PIDs <= 0 and ourselves.
	ErrProtected = errors.New("refusing to act on a protected process")
	// ErrNotInCgroup is returned by Open when the process is no longer in
	// the cgroup the caller expected (it moved, or the PID was recycled).
	ErrNotInCgroup = errors.New("process not in the expected cgroup")
	// ErrNotProcRoot is returned by Open when the FS root is not a procfs of
	// our own pid namespace (for instance a fake tree in tests).
	ErrNotProcRoot = errors.New("root is not the proc filesystem of our pid namespace")
	// ErrCycle is returned by Ancestry when the ppid chain loops or is
	// longer than any real one.
	ErrCycle = errors.New("ppid chain loops or is too long")
)

// FS reads processes under a proc root ("/proc" on a host, a temp dir in
// tests, or --proc-root).
type FS struct {
	root string
}

// New returns an FS rooted at root. Nothing is checked until it is used.
func New(root string) FS { return FS{root: filepath.Clean(root)} }

// Root returns the proc root.
func (fsys FS) Root() string { return fsys.root }

// Proc is a snapshot of one process.
type Proc struct {
	PID, PPID int
	// Comm is stat field 2 exactly as the kernel printed it: raw bytes that
	// may contain spaces, parentheses, newlines or invalid UTF-8. Show it
	// with SafeComm (or Safe), never raw.
	Comm        string
	Cmdline     []string // NUL-separated argv; nil for kernel threads and zombies
	State       byte     // 'R', 'S', 'D', 'Z', 'X', 'T', 't', 'I', ...
	Flags       uint     // stat field 9 (task->flags)
	UID         int      // real uid (status "Uid:" first field)
	RSS         uint64   // bytes (status VmRSS); 0 when absent (kernel thread, zombie)
	OOMScoreAdj int      // /proc/PID/oom_score_adj
	Kthread     bool     // PF_KTHREAD
}

// OOMAdj is the legacy /proc/PID/oom_adj, which the kernel derives from
// oom_score_adj on every read (1000 is 15, OOM_ADJUST_MAX; otherwise
// oom_score_adj*17/1000, truncated, so -1000 is -17, OOM_DISABLE) [6.12 fs/proc/base.c:oom_adj_read]: it
// is computed here, not read, saving four system calls per task while the
// kernel loops. Writing -17 to oom_adj sets oom_score_adj to -1000, so
// OOMScoreAdj covers the legacy protection too.
func (p Proc) OOMAdj() int {
	if p.OOMScoreAdj == OOMScoreAdjMax {
		return OOMAdjustMax
	}
	return p.OOMScoreAdj * -OOMDisable / OOMScoreAdjMax
}

// SafeComm returns Comm escaped for logs and terminals (see Safe).
func (p Proc) SafeComm() string { return Safe(p.Comm) }

// Exiting reports whether the task is a zombie, dead, or already in
// do_exit (PF_EXITING). Such a task frees its memory on its own; it is not
// worth acting on.
func (p Proc) Exiting() bool {
	switch p.State {
	case 'Z', 'X', 'x': // 'x' is TASK_DEAD on 2.6.33–3.13
		return true
	}
	return p.Flags&PFExiting != 0
}

// Unkillable reports whether the OOM killer will never choose this task:
// oom_badness() returns LONG_MIN for oom_score_adj == OOM_SCORE_ADJ_MIN, and
// oom_unkillable_task() skips kernel threads. [6.12 mm/oom_kill.c]
func (p Proc) Unkillable() bool {
	return p.Kthread || p.OOMScoreAdj == OOMScoreAdjMin
}

// protected is the -1000 test used by Origin: a user task explicitly at
// OOM_SCORE_ADJ_MIN. Kernel threads are excluded since they never pass the
// value on to anyone.
func (p Proc) protected() bool {
	return !p.Kthread && p.OOMScoreAdj == OOMScoreAdjMin
}

// Origin returns the index in chain (as returned by Ancestry, chain[0] being
// the task) of the process that leaked the -1000 protection: walking up from
// chain[0], the highest consecutive ancestor at oom_score_adj -1000, i.e. the
// one whose parent is not at -1000 (or which is the last element, PID 1 or
// the end of a truncated chain). It returns -1 if chain[0] is not at -1000.
// oom_score_adj is inherited on fork and kept across execve, so that process
// (an sshd, a container runtime) is where the value was set or not reset.
func Origin(chain []Proc) int {
	if len(chain) == 0 || !chain[0].protected() {
		return -1
	}
	i := 0
	for i+1 < len(chain) && chain[i+1].protected() {
		i++
	}
	return i
}

// Proc reads a snapshot of pid. A process that exits while being read gives
// an error wrapping ErrGone.
func (fsys FS) Proc(pid int) (Proc, error) { return fsys.read(pid, readProc) }

// read opens /proc/PID and reads it with fn. Reading every file through one
// dirfd keeps them from the same process: once /proc/PID is open, openat
// under it fails with ENOENT after the process is reaped instead of reaching
// a new process with a recycled PID.
func (fsys FS) read(pid int, fn func(dir int, dirPath string, want int) (Proc, error)) (Proc, error) {
	if pid <= 0 {
		return Proc{}, fmt.Errorf("read pid %d: invalid pid", pid)
	}
	d, err := fsys.openDir(pid, unix.O_RDONLY)
	if err != nil {
		return Proc{}, err
	}
	defer unix.Close(d)
	return fn(d, fsys.pidDir(pid), pid)
}

// Cgroups reads /proc/PID/cgroup.
func (fsys FS) Cgroups(pid int) ([]CgroupLine, error) {
	if pid <= 0 {
		return nil, fmt.Errorf("read cgroup of pid %d: invalid pid", pid)
	}
	d, err := fsys.openDir(pid, unix.O_RDONLY)
	if err != nil {
		return nil, err
	}
	defer unix.Close(d)
	return readCgroups(d, fsys.pidDir(pid))
}

// Ancestry returns pid, its parent, grandparent … up to and including PID 1,
// or up to the first process whose PPID is 0 (kthreadd, the init of another
// pid namespace). If an ancestor exits during the walk (ErrGone), the chain
// read so far is returned without error: it then ends in a process that is
// neither PID 1 nor has PPID 0. If pid itself is gone, the error wraps
// ErrGone. A loop or a chain longer than 4096 gives ErrCycle. pid is read
// in full (Proc), its ancestors briefly (see Brief).
func (fsys FS) Ancestry(pid int) ([]Proc, error) {
	p, err := fsys.Proc(pid)
	if err != nil {
		return nil, fmt.Errorf("ancestry of pid %d: %w", pid, err)
	}
	return fsys.AncestryOf(p, nil)
}

// AncestryOf is Ancestry for a process already read: p, then its ancestors
// read with Brief. memo, if not nil, holds ancestors read before in the same
// inspection (tasks of one cgroup share most of their ancestry) and is
// filled with the ones read now.
func (fsys FS) AncestryOf(p Proc, memo map[int]Proc) ([]Proc, error) {
	return fsys.ancestry(p, memo, false)
}

// OriginChain is AncestryOf cut short for Origin: it stops after the first
// ancestor that is not protected (-1000), which is as far as Origin and the
// origin's parent need. Most tasks sit a few unprotected generations below
// PID 1: those reads are saved while the kernel loops.
func (fsys FS) OriginChain(p Proc, memo map[int]Proc) ([]Proc, error) {
	return fsys.ancestry(p, memo, true)
}

func (fsys FS) ancestry(p Proc, memo map[int]Proc, originOnly bool) ([]Proc, error) {
	chain := []Proc{p}
	seen := map[int]bool{p.PID: true}
	for p.PID != 1 && p.PPID != 0 && (!originOnly || p.protected()) {
		cur := p.PPID
		if seen[cur] || len(chain) >= maxAncestry {
			return nil, fmt.Errorf("ancestry of pid %d: at pid %d after %d steps: %w", chain[0].PID, cur, len(chain), ErrCycle)
		}
		seen[cur] = true
		q, ok := memo[cur]
		if !ok {
			var err error
			if q, err = fsys.Brief(cur); err != nil {
				if errors.Is(err, ErrGone) {
					return chain, nil
				}
				return nil, fmt.Errorf("ancestry of pid %d: %w", chain[0].PID, err)
			}
			if memo != nil {
				memo[cur] = q
			}
		}
		chain = append(chain, q)
		p = q
	}
	return chain, nil
}

// Brief reads what an ancestor is needed for (stat, cmdline,
// oom_score_adj): Proc without status (RSS, UID). Under a looping kernel
// every read is paid for by the loop.
func (fsys FS) Brief(pid int) (Proc, error) { return fsys.read(pid, readBrief) }

func readBrief(dir int, dirPath string, want int) (Proc, error) {
	p, err := readStat(dir, dirPath, want)
	if err != nil {
		return p, err
	}
	b, err := readAt(dir, dirPath, "cmdline")
	if err != nil {
		return p, err
	}
	p.Cmdline = parseCmdline(b)
	return p, readScoreAdj(dir, dirPath, &p)
}

func (fsys FS) pidDir(pid int) string { return filepath.Join(fsys.root, strconv.Itoa(pid)) }

// openDir opens <root>/<pid> as a directory fd with the extra flags (O_RDONLY
// or O_PATH).
func (fsys FS) openDir(pid int, flags int) (int, error) {
	path := fsys.pidDir(pid)
	fd, err := unix.Open(path, flags|unix.O_DIRECTORY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return -1, ioErr("open", path, err)
	}
	return fd, nil
}

// ioErr wraps err from op on path, adding ErrGone when it means the process
// is gone: ENOENT (reaped: /proc/PID or a file under a stale dirfd) or ESRCH
// (reading or writing a file that was opened before the task exited).
func ioErr(op, path string, err error) error {
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("%s %s: %w (%w)", op, path, ErrGone, err)
	}
	return fmt.Errorf("%s %s: %w", op, path, err)
}

// readAt reads the whole of name under the directory fd dir. /proc files
// report size 0; for the files read here a read that leaves room in the
// buffer has reached the end: stat, status and cgroup are single seq_show
// files rendered whole, cmdline copies until the count or the arguments
// end, oom_score_adj is a simple_read_from_buffer. (Not true of iterating
// seq_files such as /proc/PID/maps, which return a page at most per read.)
// So a small file costs open, one read and close: no read that only finds
// EOF, no *os.File. While the kernel loops, every system call counts.
func readAt(dir int, dirPath, name string) ([]byte, error) {
	fd, err := unix.Openat(dir, name, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, ioErr("open", dirPath+"/"+name, err)
	}
	defer unix.Close(fd)
	bp := readBufs.Get().(*[]byte)
	defer func() {
		if cap(*bp) > 64<<10 {
			*bp = make([]byte, 0, 4096) // do not keep a huge cmdline's buffer
		}
		readBufs.Put(bp)
	}()
	b := (*bp)[:0]
	for {
		n, err := unix.Read(fd, b[len(b):cap(b)])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, ioErr("read", dirPath+"/"+name, err)
		}
		b = b[:len(b)+n]
		if n == 0 || len(b) < cap(b) {
			return slices.Clone(b), nil
		}
		b = slices.Grow(b, cap(b))
		*bp = b[:0] // keep the larger buffer (a long cmdline)
	}
}

// readBufs holds 4 KiB read buffers: one read takes a whole stat, status
// or cmdline of usual size.
var readBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// withFile fills in the full path of a ParseError.
func withFile(err error, path string) error {
	var pe *ParseError
	if errors.As(err, &pe) {
		pe.File = path
	}
	return err
}

func readCgroups(dir int, dirPath string) ([]CgroupLine, error) {
	b, err := readAt(dir, dirPath, "cgroup")
	if err != nil {
		return nil, err
	}
	lines, err := parseCgroup(b)
	if err != nil {
		return nil, withFile(err, dirPath+"/cgroup")
	}
	return lines, nil
}

// readProc reads a Proc through the directory fd of /proc/PID: what Brief
// reads, then status. want is the PID the caller opened; a stat naming
// another PID is refused.
func readProc(dir int, dirPath string, want int) (Proc, error) {
	p, err := readBrief(dir, dirPath, want)
	if err != nil {
		return p, err
	}
	b, err := readAt(dir, dirPath, "status")
	if err != nil {
		return p, err
	}
	ss, err := parseStatus(b)
	if err != nil {
		return p, withFile(err, dirPath+"/status")
	}
	p.UID, p.RSS = ss.UID, ss.RSS
	return p, nil
}

// readStat reads /proc/PID/stat through dir and checks it is want's.
func readStat(dir int, dirPath string, want int) (Proc, error) {
	var p Proc
	b, err := readAt(dir, dirPath, "stat")
	if err != nil {
		return p, err
	}
	st, err := parseStat(b)
	if err != nil {
		return p, withFile(err, dirPath+"/stat")
	}
	if st.PID != want {
		return p, &ParseError{File: dirPath + "/stat", Err: fmt.Errorf("pid field is %d, want %d", st.PID, want)}
	}
	p.PID, p.PPID, p.Comm, p.State, p.Flags = st.PID, st.PPID, st.Comm, st.State, st.Flags
	p.Kthread = st.Flags&PFKthread != 0
	return p, nil
}

func readScoreAdj(dir int, dirPath string, p *Proc) error {
	b, err := readAt(dir, dirPath, "oom_score_adj")
	if err != nil {
		return err
	}
	if p.OOMScoreAdj, err = parseInt(dirPath+"/oom_score_adj", b); err != nil {
		return err
	}
	if p.OOMScoreAdj < OOMScoreAdjMin || p.OOMScoreAdj > OOMScoreAdjMax {
		return &ParseError{File: dirPath + "/oom_score_adj", Line: 1, Err: fmt.Errorf("%d outside -1000..1000", p.OOMScoreAdj)}
	}
	return nil
}

// summarize renders cgroup lines for an error message.
func summarize(lines []CgroupLine) string {
	parts := make([]string, len(lines))
	for i, l := range lines {
		s := strconv.Itoa(l.ID) + ":" + strings.Join(l.Controllers, ",") + ":" + l.Path
		if l.Deleted {
			s += deletedSuffix
		}
		parts[i] = Safe(s)
	}
	return strings.Join(parts, "; ")
}
