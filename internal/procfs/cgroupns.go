package procfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// CgroupNS is what can be told about the cgroup namespace of a process
// compared with the host's. The kernel renders every path of
// /proc/PID/cgroup relative to the *reader's* cgroup namespace root: in a
// private namespace the reader's own cgroup reads "/" and everything outside
// its subtree "/../..", so the host's absolute paths cannot be known from
// there. [6.12 kernel/cgroup/cgroup.c:proc_cgroup_show, cgroup_path_ns]
type CgroupNS struct {
	Own     uint64 // the process's cgroup namespace inode; 0 if unreadable
	Host    uint64 // the host's, read from HostPID; 0 if unreadable
	HostPID int    // 1, or kthreadd (2) when PID 1's link cannot be read; 0 if neither could
	Private bool   // the process is in a cgroup namespace other than the host's
	// Evidence says how Private was decided, for logs and errors.
	Evidence string
}

// CheckCgroupNamespace compares the cgroup namespace of pid (oomwatch
// passes its own) with the host's: PID 1's, or, when PID 1's ns link cannot
// be read (ptrace access to PID 1 denied, as on hosts whose init is
// non-dumpable), kthreadd's: kernel threads always live in the initial
// namespaces. When no namespace link can be read, a PID 1 cgroup path
// outside the namespace root ("/..") still proves a private namespace;
// nothing else does, so Private is false then.
func (fsys FS) CheckCgroupNamespace(pid int) CgroupNS {
	var ns CgroupNS
	own, ownErr := fsys.CgroupNamespace(pid)
	ns.Own = own
	var hostErr error
	for _, ref := range []int{1, 2} {
		if ref == 2 && !fsys.isKthreadd(2) {
			break
		}
		ino, err := fsys.CgroupNamespace(ref)
		if err == nil {
			ns.Host, ns.HostPID = ino, ref
			break
		}
		if hostErr == nil {
			hostErr = err
		}
	}
	if ownErr == nil && ns.HostPID != 0 {
		ns.Private = ns.Own != ns.Host
		ns.Evidence = fmt.Sprintf("cgroup namespace cgroup:[%d], PID %d's cgroup:[%d]", ns.Own, ns.HostPID, ns.Host)
		return ns
	}
	lines, err := fsys.Cgroups(1)
	if err == nil {
		for _, l := range lines {
			if OutsideNamespace(l.Path) {
				ns.Private = true
				ns.Evidence = fmt.Sprintf("PID 1's cgroup reads %q: outside this cgroup namespace", l.Path)
				return ns
			}
		}
	}
	why := ownErr
	if why == nil {
		why = hostErr
	}
	ns.Evidence = fmt.Sprintf("cannot compare cgroup namespaces (%v); PID 1's cgroup path is inside this namespace", why)
	return ns
}

// OutsideNamespace reports whether a /proc/PID/cgroup path lies outside the
// reader's cgroup namespace: the kernel then starts it with "/..".
func OutsideNamespace(p string) bool { return p == "/.." || strings.HasPrefix(p, "/../") }

// isKthreadd reports whether pid is kthreadd: a kernel thread whose parent
// is 0 (in a private PID namespace, PID 2 is an ordinary process).
func (fsys FS) isKthreadd(pid int) bool {
	p, err := fsys.read(pid, func(dir int, dirPath string, want int) (Proc, error) {
		bp := getBuf()
		defer putBuf(bp)
		return readStat(dir, dirPath, want, bp)
	})
	return err == nil && p.Kthread && p.PPID == 0
}

// CgroupNamespace returns the inode of pid's cgroup namespace, read from the
// <root>/PID/ns/cgroup link ("cgroup:[4026531835]"). Reading another
// process's link needs ptrace read access to it.
func (fsys FS) CgroupNamespace(pid int) (uint64, error) {
	p := filepath.Join(fsys.pidDir(pid), "ns", "cgroup")
	s, err := os.Readlink(p)
	if err != nil {
		return 0, err
	}
	ino, err := parseNSLink("cgroup", s)
	if err != nil {
		return 0, withFile(err, p)
	}
	return ino, nil
}

// parseNSLink parses a /proc/PID/ns/KIND link target, "KIND:[INODE]".
func parseNSLink(kind, s string) (uint64, error) {
	v, ok := strings.CutPrefix(s, kind+":[")
	if !ok || !strings.HasSuffix(v, "]") {
		return 0, parseErr("ns/"+kind, 0, "%q: want %s:[INODE]", s, kind)
	}
	digits := strings.TrimSuffix(v, "]")
	ino, err := strconv.ParseUint(digits, 10, 64)
	if err != nil || ino == 0 || strconv.FormatUint(ino, 10) != digits {
		return 0, parseErr("ns/"+kind, 0, "%q: inode is not a positive integer", s)
	}
	return ino, nil
}

// ErrNamespaceChanged is returned by JoinCgroupNamespace when the namespace
// opened is not the one expected (the reference process changed namespace
// or PID).
var ErrNamespaceChanged = errors.New("cgroup namespace is not the one expected")

// JoinCgroupNamespace moves the calling OS thread into pid's cgroup
// namespace, which must have inode want, and locks the calling goroutine to
// that thread for good. setns(2) changes the calling thread only: the other
// threads of a Go program stay where they were, and each renders
// /proc/PID/cgroup in its own namespace. So the caller's next step must be
// execve(2), which keeps only this thread; if anything fails the process
// is left with threads in two namespaces and must exit. The thread-self
// link is read back to check the join. Needs CAP_SYS_ADMIN over both
// namespaces and ptrace read access to pid.
func (fsys FS) JoinCgroupNamespace(pid int, want uint64) error {
	runtime.LockOSThread() // never unlocked: the thread dies with its goroutine
	p := filepath.Join(fsys.pidDir(pid), "ns", "cgroup")
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", p, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("fstat %s: %w", p, err)
	}
	if st.Ino != want {
		return fmt.Errorf("%s is cgroup:[%d], want cgroup:[%d]: %w", p, st.Ino, want, ErrNamespaceChanged)
	}
	if err := unix.Setns(fd, unix.CLONE_NEWCGROUP); err != nil {
		return fmt.Errorf("setns %s: %w", p, err)
	}
	self := filepath.Join(fsys.root, "thread-self", "ns", "cgroup")
	s, err := os.Readlink(self)
	if err != nil {
		return fmt.Errorf("after setns: %w", err)
	}
	if got, err := parseNSLink("cgroup", s); err != nil || got != want {
		return fmt.Errorf("after setns %s reads %q, want cgroup:[%d]: %w", self, s, want, ErrNamespaceChanged)
	}
	return nil
}
