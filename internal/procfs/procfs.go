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
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Kernel constants. [6.12 include/linux/sched.h, include/uapi/linux/oom.h]
const (
	PFExiting = 0x00000004 // PF_EXITING: getting shut down
	PFKthread = 0x00200000 // PF_KTHREAD: I am a kernel thread

	OOMScoreAdjMin = -1000 // OOM_SCORE_ADJ_MIN: never chosen by the OOM killer
	OOMScoreAdjMax = 1000  // OOM_SCORE_ADJ_MAX
	OOMDisable     = -17   // legacy oom_adj OOM_DISABLE, reads back for -1000
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
	OOMAdj      int      // legacy /proc/PID/oom_adj, valid if OOMAdjKnown
	OOMAdjKnown bool     // false when oom_adj does not exist (not an error)
	Kthread     bool     // PF_KTHREAD
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
	chain := []Proc{p}
	seen := map[int]bool{p.PID: true}
	for p.PID != 1 && p.PPID != 0 {
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
// oom_score_adj): no status (RSS, UID) and no oom_adj, half the system calls
// of Proc. Under a looping kernel every read is paid for by the loop.
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
// report size 0, so it reads until EOF.
func readAt(dir int, dirPath, name string) ([]byte, error) {
	path := dirPath + "/" + name
	fd, err := unix.Openat(dir, name, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, ioErr("open", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, ioErr("read", path, err)
	}
	return b, nil
}

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

// readProc reads a Proc through the directory fd of /proc/PID. want is the
// PID the caller opened; a stat naming another PID is refused.
func readProc(dir int, dirPath string, want int) (Proc, error) {
	p, err := readStat(dir, dirPath, want)
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

	if b, err = readAt(dir, dirPath, "cmdline"); err != nil {
		return p, err
	}
	p.Cmdline = parseCmdline(b)

	// oom_adj before oom_score_adj: if oom_adj is missing because the
	// process was just reaped, the oom_score_adj read after it fails with
	// ErrGone instead of us reporting "oom_adj unknown" for a dead task.
	b, err = readAt(dir, dirPath, "oom_adj")
	switch {
	case err == nil:
		if p.OOMAdj, err = parseInt(dirPath+"/oom_adj", b); err != nil {
			return p, err
		}
		if p.OOMAdj != OOMDisable && (p.OOMAdj < -16 || p.OOMAdj > 15) {
			return p, &ParseError{File: dirPath + "/oom_adj", Line: 1, Err: fmt.Errorf("%d outside -17..15", p.OOMAdj)}
		}
		p.OOMAdjKnown = true
	case errors.Is(err, unix.ENOENT):
		// No legacy file: not an error (see the comment above).
	default:
		return p, err
	}

	return p, readScoreAdj(dir, dirPath, &p)
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
