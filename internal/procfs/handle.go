package procfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// Handle is a verified reference to one live (or zombie) process: a pidfd
// plus an O_PATH directory fd of /proc/PID that both refer to the same
// process, so reads and writes through it can never reach a process that
// later got the same PID (pidfd_open(2); the PID-reuse race of procps-ng #207).
//
// A Handle requires the FS root to be the real proc filesystem of our own
// pid namespace (normally "/proc"): pidfd_open resolves PIDs in the caller's
// pid namespace, so a fake tree or a procfs of another namespace would pair
// a pidfd with the wrong directory. Open checks this and returns
// ErrNotProcRoot otherwise.
//
// Methods are safe for concurrent use; Close is idempotent and makes the
// other methods return fs.ErrClosed.
type Handle struct {
	pid     int
	dirPath string

	mu    sync.RWMutex
	pidfd int // -1 once closed
	dirfd int
}

// Open returns a Handle for pid after checking, in order: pid is not 1, not
// <= 0 and not ourselves (ErrProtected); pidfd_open(pid); /proc/PID opened as
// a dirfd; pidfd_send_signal(pidfd, 0) still succeeds, which proves the
// dirfd belongs to the pidfd's process (ESRCH: exited or recycled →
// ErrGone); and inCgroup accepts the process's /proc/PID/cgroup read through
// the dirfd (else ErrNotInCgroup). inCgroup is the caller's: it knows v1 vs
// v2 and the subtree. A zombie passes (its PID is not reused until reaped).
func (fsys FS) Open(pid int, inCgroup func([]CgroupLine) bool) (*Handle, error) {
	if pid <= 1 || pid == os.Getpid() {
		return nil, fmt.Errorf("open pid %d: %w", pid, ErrProtected)
	}
	if inCgroup == nil {
		return nil, fmt.Errorf("open pid %d: nil inCgroup check", pid)
	}
	if err := fsys.checkProcRoot(); err != nil {
		return nil, fmt.Errorf("open pid %d: %w", pid, err)
	}

	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			return nil, fmt.Errorf("pidfd_open pid %d: %w (%w)", pid, ErrGone, err)
		}
		// pid is a thread, not a thread-group leader: EINVAL per
		// pidfd_open(2), ENOENT observed on 6.18. Not ErrGone: the PID
		// exists, it is just not a process. ENOSYS: kernel < 5.3.
		return nil, fmt.Errorf("pidfd_open pid %d: %w", pid, err)
	}
	ok := false
	defer func() {
		if !ok {
			unix.Close(pidfd)
		}
	}()

	dirfd, err := fsys.openDir(pid, unix.O_PATH)
	if err != nil {
		return nil, fmt.Errorf("open pid %d: %w", pid, err)
	}
	defer func() {
		if !ok {
			unix.Close(dirfd)
		}
	}()

	// The order matters: the dirfd was opened after pidfd_open, and the
	// pidfd's process is still unreaped now, so its PID cannot have been
	// reused in between: the dirfd is that process's.
	if err := unix.PidfdSendSignal(pidfd, 0, nil, 0); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return nil, fmt.Errorf("verify pid %d: %w (%w)", pid, ErrGone, err)
		}
		return nil, fmt.Errorf("verify pid %d: pidfd_send_signal 0: %w", pid, err)
	}

	dirPath := fsys.pidDir(pid)
	lines, err := readCgroups(dirfd, dirPath)
	if err != nil {
		return nil, fmt.Errorf("open pid %d: %w", pid, err)
	}
	if !inCgroup(lines) {
		return nil, fmt.Errorf("open pid %d: cgroups are %s: %w", pid, summarize(lines), ErrNotInCgroup)
	}
	ok = true
	return &Handle{pid: pid, dirPath: dirPath, pidfd: pidfd, dirfd: dirfd}, nil
}

// checkProcRoot verifies that the root is a procfs whose "self" is us, i.e.
// a procfs of our pid namespace (a procfs mounted from another namespace
// shows our PID differently, or not at all).
func (fsys FS) checkProcRoot() error {
	if _, ok := procRootOK.Load(fsys.root); ok {
		return nil
	}
	if err := fsys.verifyProcRoot(); err != nil {
		return err
	}
	procRootOK.Store(fsys.root, true)
	return nil
}

// procRootOK remembers the roots verified once: the check costs a statfs
// and a readlink, and every action opens a handle while the kernel loops.
// Which procfs is mounted at /proc does not change under a running daemon.
var procRootOK sync.Map

func (fsys FS) verifyProcRoot() error {
	var st unix.Statfs_t
	if err := unix.Statfs(fsys.root, &st); err != nil {
		return fmt.Errorf("statfs %s: %w", fsys.root, err)
	}
	if st.Type != unix.PROC_SUPER_MAGIC {
		return fmt.Errorf("%s has filesystem type %#x: %w", fsys.root, st.Type, ErrNotProcRoot)
	}
	self, err := os.Readlink(fsys.root + "/self")
	if err != nil {
		return fmt.Errorf("%s: %w (%w)", fsys.root, ErrNotProcRoot, err)
	}
	if self != strconv.Itoa(os.Getpid()) {
		return fmt.Errorf("%s/self is %q, our pid is %d: %w", fsys.root, self, os.Getpid(), ErrNotProcRoot)
	}
	return nil
}

// PID returns the process's PID in our pid namespace.
func (h *Handle) PID() int { return h.pid }

// Proc re-reads the process through the directory fd. Once the process has
// been reaped it returns ErrGone, never another process's data.
func (h *Handle) Proc() (Proc, error) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if h.pidfd < 0 {
		return Proc{}, fmt.Errorf("read pid %d: %w", h.pid, fs.ErrClosed)
	}
	return readProc(h.dirfd, h.dirPath, h.pid)
}

// Cgroups re-reads /proc/PID/cgroup through the directory fd.
func (h *Handle) Cgroups() ([]CgroupLine, error) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if h.pidfd < 0 {
		return nil, fmt.Errorf("read cgroup of pid %d: %w", h.pid, fs.ErrClosed)
	}
	return readCgroups(h.dirfd, h.dirPath)
}

// SetOOMScoreAdj writes v (-1000..1000) to the process's oom_score_adj. The
// value is per process (signal_struct), so this covers all its threads, and
// it spreads to CLONE_VM sharers and to future children. Raising needs only
// write access; lowering below the task's oom_score_adj_min needs
// CAP_SYS_RESOURCE in the initial user namespace (EACCES otherwise), and a
// writer holding CAP_SYS_RESOURCE also moves oom_score_adj_min to v.
// [6.12 fs/proc/base.c:__set_oom_adj]
func (h *Handle) SetOOMScoreAdj(v int) error {
	if v < OOMScoreAdjMin || v > OOMScoreAdjMax {
		return fmt.Errorf("set oom_score_adj of pid %d to %d: outside %d..%d", h.pid, v, OOMScoreAdjMin, OOMScoreAdjMax)
	}
	h.mu.RLock()
	defer h.mu.RUnlock()
	if h.pidfd < 0 {
		return fmt.Errorf("set oom_score_adj of pid %d to %d: %w", h.pid, v, fs.ErrClosed)
	}
	path := h.dirPath + "/oom_score_adj"
	fd, err := unix.Openat(h.dirfd, "oom_score_adj", unix.O_WRONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return fmt.Errorf("set oom_score_adj of pid %d to %d: %w", h.pid, v, ioErr("open", path, err))
	}
	defer unix.Close(fd)
	s := strconv.Itoa(v)
	n, err := unix.Write(fd, []byte(s))
	if err != nil {
		return fmt.Errorf("set oom_score_adj of pid %d to %d: %w", h.pid, v, ioErr("write", path, err))
	}
	if n != len(s) {
		return fmt.Errorf("set oom_score_adj of pid %d to %d: short write %d of %d bytes", h.pid, v, n, len(s))
	}
	return nil
}

// Kill sends SIGKILL through the pidfd, so it can only reach this process.
// ESRCH (already reaped) gives ErrGone.
func (h *Handle) Kill() error {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if h.pidfd < 0 {
		return fmt.Errorf("kill pid %d: %w", h.pid, fs.ErrClosed)
	}
	if err := unix.PidfdSendSignal(h.pidfd, unix.SIGKILL, nil, 0); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("kill pid %d: %w (%w)", h.pid, ErrGone, err)
		}
		return fmt.Errorf("kill pid %d: %w", h.pid, err)
	}
	return nil
}

// Close releases both fds. It is idempotent.
func (h *Handle) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.pidfd < 0 {
		return nil
	}
	err1 := unix.Close(h.pidfd)
	err2 := unix.Close(h.dirfd)
	h.pidfd, h.dirfd = -1, -1
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("close handle of pid %d: %w", h.pid, err)
	}
	return nil
}
