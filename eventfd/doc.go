// Package eventfd multiplexes every kernel notification oomwatch listens to
// through one epoll instance. It is mechanism only: the standard library and
// golang.org/x/sys/unix, no logging, no policy. Every descriptor it opens is
// O_CLOEXEC and non-blocking.
//
// # Design
//
// A Poller owns exactly four long-lived descriptors plus one per memory
// cgroup:
//
//   - an epoll instance that everything else is registered with;
//   - one inotify instance for all directory watches (WatchDir);
//   - one eventfd per v1 memory cgroup, registered on memory.oom_control via
//     cgroup.event_control (WatchV1OOM);
//   - one open memory.events per v2 memory cgroup, edge-triggered for
//     EPOLLPRI and never read (PollFile);
//   - one internal "wake" eventfd that Close signals, so that a Wait blocked in
//     epoll_wait(-1) returns ErrClosed at once (checking a flag between waits
//     is not enough: shutdown could hang forever on an idle host), and a
//     "poke" eventfd that makes Wait return early (Poke).
//
// Descriptors are closed only after Wait has returned, never under a running
// epoll_wait.
//
// Watches are grouped under a caller-chosen key (typically one cgroup). A key
// may hold directory watches and v1 eventfds at the same time; a v1 cgroup
// directory usually gets both. Unwatch drops everything under a key.
//
// # Kernel facts this package relies on
//
// One inotify watch per cgroup directory carries the cgroup v2 notifications:
// when cgroup_file_notify() fires for memory.events or cgroup.events, kernfs
// first wakes poll() waiters and then, from a workqueue
// (kernfs_notify_workfn), emits fsnotify(FS_MODIFY) on the file and
// FS_MODIFY|FS_EVENT_ON_CHILD to the watchers of its parent directory. A
// directory watch with IN_MODIFY therefore sees "memory.events" and
// "cgroup.events" change without a watch per file, which matters at 10,000
// cgroups (fs.inotify.max_user_watches). The workqueue can run long after the
// notification on a busy CPU — exactly when a task loops in the OOM path — so
// the file the caller must hear at once (memory.events) is also polled:
// PollFile's fd is woken by kernfs_notify itself, and the directory watch's
// later Modified for that file is not reported again. cgroup_file_notify() is rate limited
// to about 100 notifications per second per file, and inotify merges
// identical unread events, so a Modified event is a hint: re-read the file,
// never count the events. Writes made through the VFS (including our own
// writes to cgroup.procs or cgroup.event_control) are reported as Modified
// too; filter by Name.
//
// Two kernfs quirks bend that design (both observed on the 6.18 host):
//
//   - kernfs_notify_workfn only notifies if ilookup() finds the file's inode
//     in the inode cache; otherwise it skips the file silently. A fresh
//     cgroup's cgroup.events has no inode until someone looks it up, and
//     (inference from the code) an unused kernfs dentry and its inode can be
//     reclaimed later, silencing a file that was once read. PinFile
//     holds an inotify mark (an inode reference, no fd) on the files whose
//     changes must be seen; the events still arrive once, via the directory
//     watch.
//   - kernfs never drops i_nlink to 0 on rmdir, so a watched cgroup directory
//     never gets IN_DELETE_SELF or IN_IGNORED; its watch would pin the dead
//     inode until removed. The parent's IN_DELETE is the removal signal: the
//     parent's key gets Removed with the child's name, and the caller, who
//     knows which key it gave the child, Unwatches it.
//
// A v1 OOM eventfd holds a counter: every mem_cgroup_oom_notify() adds one and
// an 8-byte read returns the sum and resets it. Event.Count is therefore a
// coalesced count of OOM invocations since the previous read, not one OOM.
//
// Removing a v1 cgroup (rmdir) also signals its eventfds: css offline runs
// memcg_event_remove(), which calls eventfd_signal() ("Notify userspace the
// event is going away"). That wake-up is not an OOM. The poller tells the two
// apart the way containerd does: after draining the counter it checks whether
// memory.oom_control still exists, and reports Gone (and drops the key) when it
// does not.
//
// Since Linux 6.12 the first registration on memory.oom_control per boot logs
// "oom_control is deprecated and will be removed ..." to the kernel log; this
// is expected. Without CONFIG_MEMCG_V1 (6.11+, default n) there is no
// memory.oom_control or cgroup.event_control, and PREEMPT_RT kernels reject the
// registration with EOPNOTSUPP; both are reported wrapping
// errors.ErrUnsupported so the caller can fall back to the v2 path.
package eventfd
