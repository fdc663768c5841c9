// Package procfs is the /proc leaf: it reads what oomwatch needs about a task
// (stat, status, cmdline, oom_score_adj, oom_adj, cgroup) under a proc root
// given as a value, and acts on one task through a verified pidfd (Handle).
//
// Parsers are pure functions of bytes; the I/O around them is thin. Nothing
// here logs. A task that exits while we read it is normal: every ENOENT/ESRCH
// becomes a wrapped ErrGone.
package procfs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
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

// maxMemo bounds the ancestors a memo of AncestryOf and OriginChain holds,
// and so the memory of one inspection's memo (each ancestor keeps up to
// MaxCmdline of cmdline): the tasks of one cgroup share a few ancestors, a
// tenant's fork tree may have thousands. Ancestors beyond it are read
// again when another chain passes them.
const maxMemo = 4096

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

// KernelRelease is the running kernel's release (sys/kernel/osrelease,
// "6.1.0-56-cloud-amd64"), "" when it cannot be read. When the root is the
// host's /proc and its sys/ is hidden (the shipped unit's ProcSubset=pid),
// it comes from uname(2): the same kernel.
func (fsys FS) KernelRelease() string {
	return kernelRelease(filepath.Join(fsys.root, "sys/kernel/osrelease"), fsys.root == "/proc")
}

func kernelRelease(osrelease string, host bool) string {
	f, err := os.Open(osrelease)
	if err != nil {
		var u unix.Utsname
		if !host || unix.Uname(&u) != nil {
			return ""
		}
		return unix.ByteSliceToString(u.Release[:])
	}
	defer f.Close()
	b := make([]byte, 256)
	n, _ := io.ReadFull(f, b)
	return strings.TrimSpace(string(b[:n]))
}

// Proc is a snapshot of one process.
type Proc struct {
	PID, PPID int
	// Comm is stat field 2 exactly as the kernel printed it: raw bytes that
	// may contain spaces, parentheses, newlines or invalid UTF-8. Show it
	// with SafeComm (or Safe), never raw.
	Comm        string
	Cmdline     []string // NUL-separated argv, at most MaxCmdline bytes (parseCmdline); nil for kernel threads and zombies
	State       byte     // 'R', 'S', 'D', 'Z', 'X', 'T', 't', 'I', ...
	Flags       uint     // stat field 9 (task->flags)
	UID         int      // real uid (status "Uid:" first field)
	RSS         uint64   // bytes (status VmRSS); 0 when absent (kernel thread, zombie)
	OOMScoreAdj int      // /proc/PID/oom_score_adj
	Kthread     bool     // PF_KTHREAD

	// CmdlineTruncated: /proc/PID/cmdline was longer than MaxCmdline;
	// Cmdline holds its start and its last argument ends in CmdlineCut.
	CmdlineTruncated bool
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
// filled with the ones read now, up to 4096 of them.
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
			if memo != nil && len(memo) < maxMemo {
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
	bp := getBuf()
	defer putBuf(bp)
	return readBriefBuf(dir, dirPath, want, bp)
}

func readBriefBuf(dir int, dirPath string, want int, bp *[]byte) (Proc, error) {
	p, err := readStat(dir, dirPath, want, bp)
	if err != nil {
		return p, err
	}
	b, cut, err := readAt(dir, dirPath, "cmdline", MaxCmdline, bp)
	if err != nil {
		return p, err
	}
	p.Cmdline, p.CmdlineTruncated = parseCmdline(b, cut), cut
	return p, readScoreAdj(dir, dirPath, &p, bp)
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

// Read bounds of the files read whole. The kernel prints each in far less;
// a longer one (a fake tree, a kernel we do not know) is an error, not
// memory spent on it.
const (
	maxStat   = 4096     // a comm of at most 64 bytes and 50 numbers
	maxAdj    = 64       // one integer
	maxCgroup = 64 << 10 // a line per hierarchy, each path shorter than PATH_MAX [6.12 kernel/cgroup/cgroup.c:proc_cgroup_show]
)

// readBufSize is the size of the pooled read buffers: more than a whole
// stat, or MaxCmdline and the byte that shows there is more, and the most
// readStatus keeps of a line.
const readBufSize = 8 << 10

// readAt reads name under the directory fd dir into *bp: up to limit
// bytes, and reports whether the file has more (cut), which costs reading
// one byte beyond limit, never the rest. The result aliases *bp, which may
// grow up to limit+1 bytes: parse it and copy what is kept before the
// buffer is used again.
//
// /proc files report size 0; for the files read here a read that leaves
// room in the buffer has reached the end: stat, status and cgroup are single
// seq_show files rendered whole, cmdline copies until the count or the
// arguments end, oom_score_adj is a simple_read_from_buffer. (Not true of
// iterating seq_files such as /proc/PID/maps, which return a page at most
// per read.) So a small file costs open, one read and close: no read that
// only finds EOF, no *os.File. While the kernel loops, every system call
// counts.
func readAt(dir int, dirPath, name string, limit int, bp *[]byte) (b []byte, cut bool, err error) {
	fd, err := openAt(dir, dirPath, name)
	if err != nil {
		return nil, false, err
	}
	defer unix.Close(fd)
	b = (*bp)[:0]
	for {
		if len(b) == cap(b) {
			b = slices.Grow(b, min(cap(b), limit+1-len(b)))
			*bp = b[:0]
		}
		want := min(cap(b), limit+1)
		n, err := unix.Read(fd, b[len(b):want])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, false, ioErr("read", dirPath+"/"+name, err)
		}
		b = b[:len(b)+n]
		if len(b) > limit {
			return b[:limit], true, nil
		}
		if n == 0 || len(b) < want {
			return b, false, nil
		}
	}
}

// readWhole is readAt for a file that must fit limit: a longer one is a
// ParseError.
func readWhole(dir int, dirPath, name string, limit int, bp *[]byte) ([]byte, error) {
	b, cut, err := readAt(dir, dirPath, name, limit, bp)
	if err == nil && cut {
		err = &ParseError{File: dirPath + "/" + name, Err: fmt.Errorf("longer than %d bytes", limit)}
	}
	return b, err
}

func openAt(dir int, dirPath, name string) (int, error) {
	fd, err := unix.Openat(dir, name, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return -1, ioErr("open", dirPath+"/"+name, err)
	}
	return fd, nil
}

// readStatus reads /proc/PID/status a buffer at a time and parses it line
// by line, so its size does not matter: Groups: lists every supplementary
// group, up to 65,536 (NGROUPS_MAX) of them, 700 KB that a tenant's root can
// set for each of its tasks. A line longer than the buffer reaches the
// parser cut (see statusParser.line) and the rest of it is skipped.
func readStatus(dir int, dirPath string, bp *[]byte) (status, error) {
	fd, err := openAt(dir, dirPath, "status")
	if err != nil {
		return status{}, err
	}
	defer unix.Close(fd)
	if cap(*bp) < readBufSize {
		*bp = make([]byte, 0, readBufSize)
	}
	var sp statusParser
	err = scanLines(fd, (*bp)[:cap(*bp)], sp.line)
	if err == nil {
		return sp.end()
	}
	var pe *ParseError
	if !errors.As(err, &pe) {
		return status{}, ioErr("read", dirPath+"/status", err)
	}
	return status{}, withFile(err, dirPath+"/status")
}

// scanLines reads fd through buf and calls fn with each line, numbered
// from 1 and without its '\n'. A line that does not fit buf is passed once,
// cut to the first len(buf) bytes, and the rest of it is read past. A read
// that leaves room in buf is the end (see readAt).
func scanLines(fd int, buf []byte, fn func(n int, line []byte, cut bool) error) error {
	start, end, n := 0, 0, 1
	skip := false // in the rest of a line already passed cut
	for {
		want := len(buf) - end
		r, err := unix.Read(fd, buf[end:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		end += r
		for {
			i := bytes.IndexByte(buf[start:end], '\n')
			if i < 0 {
				break
			}
			if !skip {
				if err := fn(n, buf[start:start+i], false); err != nil {
					return err
				}
			}
			skip = false
			start += i + 1
			n++
		}
		eof := r == 0 || r < want
		switch {
		case eof:
			if start < end && !skip {
				return fn(n, buf[start:end], false)
			}
			return nil
		case start == 0 && end == len(buf): // one line fills buf
			if !skip {
				if err := fn(n, buf, true); err != nil {
					return err
				}
			}
			skip, end = true, 0
		default:
			end = copy(buf, buf[start:end])
			start = 0
		}
	}
}

func getBuf() *[]byte { return readBufs.Get().(*[]byte) }

func putBuf(bp *[]byte) {
	if cap(*bp) > 2*readBufSize {
		*bp = make([]byte, 0, readBufSize) // do not keep a cgroup file's buffer
	}
	readBufs.Put(bp)
}

// readBufs holds read buffers: one read takes a whole stat, status line or
// MaxCmdline.
var readBufs = sync.Pool{New: func() any { b := make([]byte, 0, readBufSize); return &b }}

// withFile fills in the full path of a ParseError.
func withFile(err error, path string) error {
	var pe *ParseError
	if errors.As(err, &pe) {
		pe.File = path
	}
	return err
}

func readCgroups(dir int, dirPath string) ([]CgroupLine, error) {
	bp := getBuf()
	defer putBuf(bp)
	b, err := readWhole(dir, dirPath, "cgroup", maxCgroup, bp)
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
	bp := getBuf()
	defer putBuf(bp)
	p, err := readBriefBuf(dir, dirPath, want, bp)
	if err != nil {
		return p, err
	}
	ss, err := readStatus(dir, dirPath, bp)
	if err != nil {
		return p, err
	}
	p.UID, p.RSS = ss.UID, ss.RSS
	return p, nil
}

// readStat reads /proc/PID/stat through dir and checks it is want's.
func readStat(dir int, dirPath string, want int, bp *[]byte) (Proc, error) {
	var p Proc
	b, err := readWhole(dir, dirPath, "stat", maxStat, bp)
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

func readScoreAdj(dir int, dirPath string, p *Proc, bp *[]byte) error {
	b, err := readWhole(dir, dirPath, "oom_score_adj", maxAdj, bp)
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
