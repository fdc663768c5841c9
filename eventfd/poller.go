package eventfd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Kind says what happened.
type Kind uint8

const (
	// OOM: the eventfd registered on a v1 memory.oom_control fired. Count is
	// the 8-byte value read: a coalesced count of OOM invocations.
	OOM Kind = iota + 1
	// Modified: a file inside a watched directory was modified (IN_MODIFY on a
	// child). Name is the file's base name, e.g. "memory.events".
	Modified
	// Created: a subdirectory was created in (or moved into) a watched
	// directory. Name is the child's base name.
	Created
	// Removed: a subdirectory was removed from (or moved out of) a watched
	// directory. Name is the child's base name. On cgroupfs this is the only
	// sign that a watched child cgroup is gone: Unwatch its key then.
	Removed
	// Gone: the watched thing itself is gone — the watched directory was
	// deleted (its own IN_DELETE_SELF/IN_IGNORED; never sent on cgroupfs,
	// see Removed) or unmounted, or a v1 eventfd fired and its
	// memory.oom_control no longer exists. When Gone is delivered the poller
	// has already dropped every watch and eventfd registered under Key; Gone
	// is sent once per key.
	Gone
	// Overflow: the inotify queue overflowed and events were lost; the
	// consumer must rescan. Key is "".
	Overflow
)

var kindNames = [...]string{OOM: "OOM", Modified: "Modified", Created: "Created", Removed: "Removed", Gone: "Gone", Overflow: "Overflow"}

func (k Kind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Event is one notification.
type Event struct {
	Key  string
	Kind Kind
	Name string // child base name for Modified, Created, Removed
	// Count is the value read from the v1 eventfd for OOM. For a Gone that
	// came from a v1 eventfd it is the raw value read, which includes the
	// removal signal itself (and any OOMs coalesced with it).
	Count uint64
}

// ErrClosed is returned by Wait and the Watch methods once Close was called.
var ErrClosed = errors.New("eventfd: poller closed")

// ErrFDBudget is returned by PollFile when another polled file would leave
// fewer than fdReserve descriptors of RLIMIT_NOFILE for everything else.
var ErrFDBudget = errors.New("eventfd: no fd left to poll with (RLIMIT_NOFILE)")

// fdReserve is what PollFile leaves of RLIMIT_NOFILE for other descriptors.
const fdReserve = 1024

// ErrGone is wrapped by WatchDir and WatchV1OOM when the target does not exist
// (ENOENT, or ENODEV from a kernfs node being removed). A vanished cgroup is
// normal, so callers test for it with errors.Is(err, ErrGone);
// errors.Is(err, fs.ErrNotExist) is true as well.
var ErrGone error = goneError{}

type goneError struct{}

func (goneError) Error() string        { return "eventfd: target is gone" }
func (goneError) Is(target error) bool { return target == fs.ErrNotExist }

// dirMask: no IN_MASK_ADD, so a repeated WatchDir on the same directory
// replaces the mask instead of accumulating. IN_EXCL_UNLINK drops events for
// children already unlinked but still open.
const dirMask = unix.IN_CREATE | unix.IN_DELETE | unix.IN_MODIFY | unix.IN_DELETE_SELF |
	unix.IN_MOVED_FROM | unix.IN_MOVED_TO | unix.IN_ONLYDIR | unix.IN_EXCL_UNLINK

const (
	inotifyBufSize = 64 << 10
	maxEpollEvents = 128
	// maxInterned bounds the Modified-name cache; the names of files in a
	// cgroup directory are a small fixed set.
	maxInterned = 256
)

// entry is everything registered under one key: at most one directory
// watch, one pinned file, one polled file and one v1 OOM eventfd, which is
// what a cgroup needs. One small struct per key, found from its key, from either of its
// watch descriptors (10,000 cgroups are 10,000 entries: the per-cgroup cost
// is kept low on purpose; no path is kept).
type entry struct {
	key     string
	oom     *fdWatch // v1 eventfd, nil if none
	polled  *fdWatch // polled file (PollFile), nil if none
	dirWD   int32    // 0: no directory watch (inotify wds start at 1)
	pinWD   int32    // 0: no pinned file
	dirMask uint32   // the mask the directory watch was added with
}

func (e *entry) empty() bool {
	return e.dirWD == 0 && e.pinWD == 0 && e.oom == nil && e.polled == nil
}

// fdWatch is a descriptor of its own in the epoll set: a v1 OOM eventfd
// (path is its memory.oom_control) or a polled kernfs file (name is its
// base name, reported as Event.Name).
type fdWatch struct {
	key  string
	path string // v1 eventfd: the memory.oom_control it was registered on
	name string // polled file: its base name; "" for a v1 eventfd
	fd   int
	// id is stored in the epoll data next to the fd: a stale epoll event for
	// an fd that was closed (Unwatch) and whose number was reused by a new
	// registration must not be attributed to the new one.
	id uint32
}

// Poller multiplexes inotify directory watches and v1 OOM eventfds through
// one epoll instance. Its methods are safe for concurrent use, except that
// only one goroutine may call Wait at a time.
type Poller struct {
	epfd, infd, wakefd int
	pokefd             int // Poke: Wait returns early, with no events

	closeMu sync.Mutex // serialises Close so a second Close returns after fds are closed
	waitMu  sync.Mutex // held by Wait for its whole run; Close takes it before closing fds

	mu     sync.Mutex // guards everything below
	closed bool
	byWD   map[int32]*entry // directory and pin watches
	byFD   map[int]*fdWatch // v1 eventfds and polled files
	byKey  map[string]*entry
	nextID uint32
	polled int // polled files in byFD
	// pollMax bounds the descriptors in byFD that PollFile may add to: the
	// process's RLIMIT_NOFILE less fdReserve, so that polling never takes
	// the fds every read of a cgroup or /proc file needs.
	pollMax int

	// Owned by Wait (under waitMu).
	epEvents []unix.EpollEvent
	inBuf    []byte
	names    map[string]string
}

// New creates a Poller.
func New() (p *Poller, err error) {
	p = &Poller{epfd: -1, infd: -1, wakefd: -1, pokefd: -1}
	defer func() {
		if err != nil {
			p.closeFDs()
		}
	}()
	if p.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	if p.infd, err = unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK); err != nil {
		return nil, fmt.Errorf("inotify_init1: %w", err)
	}
	if p.wakefd, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		return nil, fmt.Errorf("create wake eventfd: %w", err)
	}
	if p.pokefd, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		return nil, fmt.Errorf("create poke eventfd: %w", err)
	}
	for _, fd := range []int{p.infd, p.wakefd, p.pokefd} {
		ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}
		if err = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
			return nil, fmt.Errorf("epoll_ctl add %d: %w", fd, err)
		}
	}
	p.byWD = make(map[int32]*entry)
	p.byFD = make(map[int]*fdWatch)
	var rl unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &rl) == nil {
		p.pollMax = int(min(rl.Cur, math.MaxInt32)) - fdReserve
	}
	p.byKey = make(map[string]*entry)
	p.epEvents = make([]unix.EpollEvent, maxEpollEvents)
	p.inBuf = make([]byte, inotifyBufSize)
	p.names = make(map[string]string)
	return p, nil
}

func (p *Poller) closeFDs() error {
	var errs []error
	for _, fd := range []int{p.infd, p.wakefd, p.pokefd, p.epfd} {
		if fd >= 0 {
			if err := unix.Close(fd); err != nil {
				errs = append(errs, fmt.Errorf("close fd %d: %w", fd, err))
			}
		}
	}
	p.infd, p.wakefd, p.pokefd, p.epfd = -1, -1, -1, -1
	return errors.Join(errs...)
}

// entryLocked returns key's entry, creating it (not yet in byKey: the caller
// adds it once something is registered).
func (p *Poller) entryLocked(key string) *entry {
	if e := p.byKey[key]; e != nil {
		return e
	}
	return &entry{key: key}
}

// WatchDir adds one inotify watch on dir whose events are reported under key:
// Created/Removed for child directories, Modified for files in dir, Gone when
// dir itself is deleted. On cgroupfs the same watch also reports changes of
// memory.events and cgroup.events, but only for files whose inode is cached:
// see PinFile.
//
// cgroupfs (kernfs) never sends IN_DELETE_SELF for a removed cgroup, so
// there a cgroup's own watch never says Gone: its removal is the Removed
// event of its parent's watch, and the caller must then Unwatch the child's
// key, or the child's watch keeps the dead inode pinned. Watch the parent as
// well, or the removal of a cgroup is only visible as a failing read. (The
// poller does not map the parent's event to the child's key itself: that
// needs every watched path kept, about 100 bytes per cgroup, for what the
// caller already knows.) A v1 OOM eventfd is signalled on rmdir, so a key
// with one also gets Gone.
//
// A key has at most one directory watch. Watching a directory already
// watched under the same key is a no-op; under a different key it is an
// error, because inotify gives one watch (one wd) per inode and per inotify
// instance.
func (p *Poller) WatchDir(key, dir string) error {
	return p.addWatch(key, dir, dirMask, false, "watch dir")
}

// subdirMask is dirMask without IN_MODIFY.
const subdirMask = dirMask &^ unix.IN_MODIFY

// WatchSubdirs is WatchDir for a directory whose files need not be
// followed: only subdirectories created, moved and removed are reported
// (and Gone as for WatchDir). cgroup v1 needs no file events (OOMs come
// from an eventfd), and registering that eventfd writes
// cgroup.event_control, which a WatchDir would report as Modified: at
// 16,384 cgroups those arming echoes alone overflowed the inotify queue
// (fs.inotify.max_queued_events) and forced a rescan, and every write by
// anyone to any cgroup file woke the loop.
func (p *Poller) WatchSubdirs(key, dir string) error {
	return p.addWatch(key, dir, subdirMask, false, "watch dir")
}

// pinMask: the watch exists only to hold a reference on the inode, so it asks
// for nothing that kernfs ever sends (kernfs never drops i_nlink to 0, so no
// IN_DELETE_SELF either); events for the file arrive through the watch on its
// directory, once, with the file's name.
const pinMask = unix.IN_DELETE_SELF | unix.IN_EXCL_UNLINK

// PinFile keeps the inode of path (a file in a directory watched with
// WatchDir) in the inode cache for as long as key is watched, at the cost of
// one inotify watch and no fd. It reports no events of its own.
//
// Why: kernfs_notify_workfn delivers FS_MODIFY for a cgroup file (to the file
// and, with FS_EVENT_ON_CHILD, to its directory's watchers) only if
// ilookup() finds the file's inode; if nobody has looked the file up since
// its dentry was reclaimed, the notification is silently dropped and the
// directory watch sees nothing. Observed on 6.18: a fresh cgroup2 directory
// watch got no "cgroup.events" modification until the file had been read or
// pinned. An inotify mark holds an inode reference, so a pinned file is
// always found.
func (p *Poller) PinFile(key, path string) error {
	return p.addWatch(key, path, pinMask, true, "pin file")
}

func (p *Poller) addWatch(key, path string, mask uint32, pin bool, verb string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	wd, err := unix.InotifyAddWatch(p.infd, path, mask)
	if err != nil {
		if isGoneErrno(err) {
			return fmt.Errorf("%s %s: %w: %w", verb, path, ErrGone, err)
		}
		return fmt.Errorf("%s %s: %w", verb, path, err)
	}
	w := int32(wd)
	if old, ok := p.byWD[w]; ok {
		// Same inode already watched: inotify_add_watch returned the existing
		// wd and replaced its mask, so restore the owner's mask if it differs.
		oldMask := old.dirMask
		if w == old.pinWD {
			oldMask = pinMask
		}
		if oldMask != mask {
			_, _ = unix.InotifyAddWatch(p.infd, path, oldMask)
		}
		if old.key == key && oldMask == mask {
			return nil
		}
		return fmt.Errorf("%s %s: already watched under key %q", verb, path, old.key)
	}
	e := p.entryLocked(key)
	switch {
	case pin && e.pinWD != 0:
		_, _ = unix.InotifyRmWatch(p.infd, uint32(wd))
		return fmt.Errorf("%s %s: key %q already pins a file", verb, path, key)
	case pin:
		// A pin's path is never looked up again: not keeping it saves a
		// string per cgroup.
		e.pinWD = w
	case e.dirWD != 0:
		_, _ = unix.InotifyRmWatch(p.infd, uint32(wd))
		return fmt.Errorf("%s %s: key %q already watches a directory", verb, path, key)
	default:
		e.dirWD, e.dirMask = w, mask
	}
	p.byWD[w] = e
	p.byKey[key] = e
	return nil
}

// WatchV1OOM registers a new eventfd on the v1 memory.oom_control file
// oomControl by writing "<efd> <cfd>" to eventControl, the
// cgroup.event_control file of the same cgroup directory (the kernel rejects
// other pairs), and adds the eventfd to the poller under key.
//
// A missing cgroup is reported wrapping ErrGone. A kernel without the v1
// event interface (no cgroup.event_control or memory.oom_control in an
// existing directory, a file that is not on a cgroup v1 filesystem, or
// EOPNOTSUPP on PREEMPT_RT) is reported wrapping errors.ErrUnsupported.
func (p *Poller) WatchV1OOM(key, eventControl, oomControl string) error {
	wrap := func(err error) error {
		switch {
		case errors.Is(err, errors.ErrUnsupported), errors.Is(err, ErrGone):
			return fmt.Errorf("register oom eventfd on %s: %w", oomControl, err)
		case isGoneErrno(err):
			return fmt.Errorf("register oom eventfd on %s: %w: %w", oomControl, ErrGone, err)
		case errors.Is(err, unix.EOPNOTSUPP):
			// memcg_write_event_control on CONFIG_PREEMPT_RT.
			return fmt.Errorf("register oom eventfd on %s: %w: %w", oomControl, errors.ErrUnsupported, err)
		}
		return fmt.Errorf("register oom eventfd on %s: %w", oomControl, err)
	}
	if filepath.Dir(filepath.Clean(eventControl)) != filepath.Dir(filepath.Clean(oomControl)) {
		return wrap(fmt.Errorf("%s is not in the same cgroup directory", eventControl))
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	if e := p.byKey[key]; e != nil && e.oom != nil {
		return wrap(fmt.Errorf("key %q already has an OOM eventfd", key))
	}

	cfd, err := openRetry(oomControl, unix.O_RDONLY|unix.O_CLOEXEC)
	if err != nil {
		if isGoneErrno(err) && dirExists(filepath.Dir(oomControl)) {
			// The cgroup exists but has no memory.oom_control: a cgroup2
			// directory, or a kernel built without CONFIG_MEMCG_V1.
			return wrap(fmt.Errorf("%w: open %s: %w", errors.ErrUnsupported, oomControl, err))
		}
		return wrap(fmt.Errorf("open %s: %w", oomControl, err))
	}
	defer unix.Close(cfd) // the kernel keeps only the control file's dentry, not our fd
	var sfs unix.Statfs_t
	if err := unix.Fstatfs(cfd, &sfs); err != nil {
		return wrap(fmt.Errorf("statfs %s: %w", oomControl, err))
	}
	if sfs.Type != unix.CGROUP_SUPER_MAGIC {
		// Writing "<efd> <cfd>" into a regular file would "succeed" and
		// register nothing.
		return wrap(fmt.Errorf("%w: %s is not on a cgroup v1 filesystem", errors.ErrUnsupported, oomControl))
	}

	ecfd, err := openRetry(eventControl, unix.O_WRONLY|unix.O_CLOEXEC)
	if err != nil {
		if isGoneErrno(err) && fileExists(oomControl) {
			return wrap(fmt.Errorf("%w: open %s: %w", errors.ErrUnsupported, eventControl, err))
		}
		return wrap(fmt.Errorf("open %s: %w", eventControl, err))
	}
	defer unix.Close(ecfd)

	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return wrap(fmt.Errorf("create eventfd: %w", err))
	}
	// Closing efd on any failure below also unregisters it in the kernel:
	// the final fput sends EPOLLHUP to memcg_event_wake, which queues removal.
	msg := strconv.Itoa(efd) + " " + strconv.Itoa(cfd)
	if err := writeRetry(ecfd, []byte(msg)); err != nil {
		unix.Close(efd)
		return wrap(fmt.Errorf("write %q to %s: %w", msg, eventControl, err))
	}
	p.nextID++
	w := &fdWatch{key: key, path: oomControl, fd: efd, id: p.nextID}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(efd), Pad: int32(w.id)}
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, efd, &ev); err != nil {
		unix.Close(efd)
		return wrap(fmt.Errorf("epoll_ctl add eventfd: %w", err))
	}
	p.addFDWatchLocked(w)
	return nil
}

func (p *Poller) addFDWatchLocked(w *fdWatch) {
	p.byFD[w.fd] = w
	e := p.entryLocked(w.key)
	if w.name != "" {
		e.polled = w
		p.polled++
	} else {
		e.oom = w
	}
	p.byKey[w.key] = e
}

// PollFile wakes the poller as soon as the kernel notifies the cgroup file
// path (memory.events), reported as Modified under key with the file's base
// name, at the cost of one open fd and no read. The same change reaches a
// WatchDir of its directory later, from the kernel's workqueue; that
// inotify Modified is not reported again while the file is polled.
//
// Why: kernfs_notify (cgroup_file_notify, for memory.events at every OOM)
// wakes the file's poll waiters at once and only queues the fsnotify event
// on the system workqueue (kernfs_notify_workfn). While a task loops in the
// OOM path on a busy CPU the kworker can run many milliseconds later, and
// every one of them is another OOM attempt before the loop is seen.
//
// The fd is in the epoll set edge-triggered for EPOLLPRI and is never read:
// kernfs reports EPOLLPRI while the open file has not read the latest
// notification (kernfs_generic_poll), so an unread fd stays "changed" and
// edge triggering turns each wake-up of the file's poll queue into one
// event. Reading it would re-arm the level but makes seq_file keep a page
// per fd. The first Wait after PollFile may report the file once (a fresh
// fd has read nothing yet). A file that cannot be polled (not kernfs: the
// epoll_ctl is refused) is reported wrapping errors.ErrUnsupported, a
// missing one wrapping ErrGone, and one more fd than RLIMIT_NOFILE leaves
// (fdReserve kept for the rest of the process) as ErrFDBudget. Polling a
// file of the same name under the same key again is a no-op.
func (p *Poller) PollFile(key, path string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	if e := p.byKey[key]; e != nil && e.polled != nil {
		if e.polled.name == filepath.Base(path) {
			return nil // already polled
		}
		return fmt.Errorf("poll %s: key %q already polls a file", path, key)
	}
	if len(p.byFD) >= p.pollMax {
		return fmt.Errorf("poll %s: %w: %d descriptors in use", path, ErrFDBudget, len(p.byFD))
	}
	fd, err := openRetry(path, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW)
	if err != nil {
		if isGoneErrno(err) {
			return fmt.Errorf("poll %s: %w: %w", path, ErrGone, err)
		}
		return fmt.Errorf("poll %s: %w", path, err)
	}
	p.nextID++
	w := &fdWatch{key: key, name: filepath.Base(path), fd: fd, id: p.nextID}
	ev := unix.EpollEvent{Events: unix.EPOLLPRI | unix.EPOLLET, Fd: int32(fd), Pad: int32(w.id)}
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		unix.Close(fd)
		if errors.Is(err, unix.EPERM) {
			// A regular file: no poll of its own (tmpfs, a test's fake
			// hierarchy). Its directory watch still reports it.
			return fmt.Errorf("poll %s: %w: %w", path, errors.ErrUnsupported, err)
		}
		return fmt.Errorf("poll %s: epoll_ctl add: %w", path, err)
	}
	p.addFDWatchLocked(w)
	return nil
}

// Unwatch drops every watch and eventfd registered under key. Events already
// queued for them are discarded. An unknown key is a no-op.
func (p *Poller) Unwatch(key string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.dropKeyLocked(key, -1)
}

// dropKeyLocked forgets key. except is a wd the kernel is already removing
// (after IN_DELETE_SELF or IN_IGNORED) and that must not be removed again.
func (p *Poller) dropKeyLocked(key string, except int32) {
	e := p.byKey[key]
	if e == nil {
		return
	}
	for _, wd := range [2]int32{e.dirWD, e.pinWD} {
		if wd == 0 {
			continue
		}
		delete(p.byWD, wd)
		if wd != except {
			// EINVAL here means the kernel already dropped the watch (the
			// directory went away); nothing is left to release either way.
			// The IN_IGNORED this queues is discarded as an unknown wd. wds
			// are allocated cyclically, so it cannot alias a new watch
			// before the 2^31 wrap.
			_, _ = unix.InotifyRmWatch(p.infd, uint32(wd))
		}
	}
	for _, w := range [2]*fdWatch{e.oom, e.polled} {
		if w == nil {
			continue
		}
		delete(p.byFD, w.fd)
		_ = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, w.fd, nil)
		_ = unix.Close(w.fd) // a v1 eventfd: unregisters from the memcg (EPOLLHUP → memcg_event_wake)
	}
	if e.polled != nil {
		p.polled--
	}
	delete(p.byKey, key)
}

// dropPinLocked forgets one pin whose watch the kernel already removed.
func (p *Poller) dropPinLocked(e *entry) {
	delete(p.byWD, e.pinWD)
	e.pinWD = 0
	if e.empty() {
		delete(p.byKey, e.key)
	}
}

// Stats reports the number of live inotify watches (directories and pinned
// files) and v1 eventfds.
func (p *Poller) Stats() (dirWatches, eventfds int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.byWD), len(p.byFD) - p.polled
}

// Polled reports the number of polled files (PollFile), one fd each.
func (p *Poller) Polled() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.polled
}

// Poke makes a blocked Wait (or the next one) return, with no events if
// none are ready: another goroutine has work for the one that waits.
// Pokes before that Wait returns coalesce into one. Safe from any goroutine.
func (p *Poller) Poke() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	return writeRetry(p.pokefd, one[:])
}

// Close wakes a blocked Wait (which returns ErrClosed), waits for it to
// return and closes every descriptor. It is idempotent and may be called from
// any goroutine.
func (p *Poller) Close() error {
	p.closeMu.Lock()
	defer p.closeMu.Unlock()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()

	// The wake eventfd is level-triggered and never read, so a Wait that is
	// about to enter epoll_wait also sees it.
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	werr := writeRetry(p.wakefd, one[:])

	// Do not close fds under a running epoll_wait or inotify read.
	p.waitMu.Lock()
	defer p.waitMu.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	if werr != nil {
		errs = append(errs, fmt.Errorf("wake poller: %w", werr))
	}
	for fd := range p.byFD {
		if err := unix.Close(fd); err != nil {
			errs = append(errs, fmt.Errorf("close fd %d: %w", fd, err))
		}
	}
	clear(p.byFD)
	p.polled = 0
	clear(p.byWD)
	clear(p.byKey)
	// Closing the inotify fd drops all its watches.
	errs = append(errs, p.closeFDs())
	return errors.Join(errs...)
}

// Wait blocks until at least one event is available, the timeout elapses
// (then it returns buf[:0] and nil; a negative timeout waits forever) or
// Close is called (then it returns ErrClosed). Events are appended to buf[:0];
// reusing buf avoids allocation in steady state. Only one goroutine may call
// Wait at a time.
func (p *Poller) Wait(buf []Event, timeout time.Duration) ([]Event, error) {
	buf = buf[:0]
	p.waitMu.Lock()
	defer p.waitMu.Unlock()
	p.mu.Lock()
	closed := p.closed
	p.mu.Unlock()
	if closed {
		return buf, ErrClosed
	}

	var deadline time.Time
	if timeout >= 0 {
		deadline = time.Now().Add(timeout)
	}
	for {
		msec := -1
		if timeout >= 0 {
			msec = 0
			if rem := time.Until(deadline); rem > 0 {
				// Round up: epoll_wait would otherwise return early and
				// this loop would spin through the last millisecond.
				msec = int(min((rem+time.Millisecond-1)/time.Millisecond, math.MaxInt32))
			}
		}
		n, err := unix.EpollWait(p.epfd, p.epEvents, msec)
		if err != nil {
			if err == unix.EINTR {
				// epoll_wait is never restarted after a signal handler, even
				// with SA_RESTART (and Go's runtime signals hit any thread);
				// retry with what is left of the timeout.
				continue
			}
			return buf, fmt.Errorf("epoll_wait: %w", err)
		}
		ready := p.epEvents[:n]
		for i := range ready {
			if int(ready[i].Fd) == p.wakefd {
				return buf[:0], ErrClosed
			}
		}
		poked := false
		for i := range ready {
			if int(ready[i].Fd) == p.pokefd {
				var v [8]byte
				_, _ = unix.Read(p.pokefd, v[:]) // resets the counter; EAGAIN: a racing read took it
				poked = true
				continue
			}
			if int(ready[i].Fd) == p.infd {
				buf, err = p.drainInotify(buf)
				if err != nil {
					return buf, err
				}
				continue
			}
			buf = p.handleFD(buf, int(ready[i].Fd), uint32(ready[i].Pad))
		}
		if len(buf) > 0 || poked {
			return buf, nil
		}
		// Woken for nothing the caller can see (a stale eventfd, an
		// IN_IGNORED for a watch we removed): wait again.
		if msec == 0 || (timeout >= 0 && time.Until(deadline) <= 0) {
			return buf, nil
		}
	}
}

// handleFD reports one ready polled file or drains one v1 OOM eventfd.
func (p *Poller) handleFD(buf []Event, fd int, id uint32) []Event {
	p.mu.Lock()
	defer p.mu.Unlock()
	w := p.byFD[fd]
	if w == nil || w.id != id {
		return buf // unwatched (or fd number reused) since epoll_wait returned
	}
	if w.name != "" {
		return append(buf, Event{Key: w.key, Kind: Modified, Name: w.name}) // edge-triggered: nothing to drain
	}
	var count uint64
	var b [8]byte
	for {
		// A plain (non-EFD_SEMAPHORE) read returns the accumulated counter
		// and resets it: one read may stand for many OOMs.
		n, err := unix.Read(fd, b[:])
		if err == unix.EINTR {
			continue
		}
		if err != nil || n != 8 {
			break // EAGAIN: drained
		}
		count += binary.NativeEndian.Uint64(b[:])
	}
	if count == 0 {
		return buf
	}
	// rmdir signals the eventfd too (memcg_event_remove: "the event is going
	// away"). By then the cgroup directory is already unlinked, so a missing
	// memory.oom_control means removal, not OOM.
	var st unix.Stat_t
	if err := unix.Stat(w.path, &st); err != nil && isGoneErrno(err) {
		key := w.key
		p.dropKeyLocked(key, -1)
		return append(buf, Event{Key: key, Kind: Gone, Count: count})
	}
	return append(buf, Event{Key: w.key, Kind: OOM, Count: count})
}

// drainInotify reads the inotify fd until EAGAIN and appends the events.
func (p *Poller) drainInotify(buf []Event) ([]Event, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		n, err := unix.Read(p.infd, p.inBuf)
		if err == unix.EINTR {
			continue
		}
		if err == unix.EAGAIN {
			return buf, nil
		}
		if err != nil {
			return buf, fmt.Errorf("read inotify: %w", err)
		}
		if n <= 0 {
			return buf, nil
		}
		buf = p.parseInotifyLocked(buf, p.inBuf[:n])
	}
}

// parseInotifyLocked parses variable-length struct inotify_event records.
func (p *Poller) parseInotifyLocked(buf []Event, b []byte) []Event {
	for len(b) >= unix.SizeofInotifyEvent {
		wd := int32(binary.NativeEndian.Uint32(b[0:4]))
		mask := binary.NativeEndian.Uint32(b[4:8])
		nameLen := int(binary.NativeEndian.Uint32(b[12:16]))
		end := unix.SizeofInotifyEvent + nameLen
		if end > len(b) {
			break // cannot happen: the kernel returns whole records
		}
		name := b[unix.SizeofInotifyEvent:end]
		// The name is NUL-padded to an alignment boundary.
		for len(name) > 0 && name[len(name)-1] == 0 {
			name = name[:len(name)-1]
		}
		b = b[end:]

		if mask&unix.IN_Q_OVERFLOW != 0 {
			buf = append(buf, Event{Kind: Overflow})
			continue
		}
		w := p.byWD[wd]
		if w == nil {
			continue // unwatched, or the IN_IGNORED of a watch we removed
		}
		pin := wd == w.pinWD
		switch {
		case pin && mask&(unix.IN_DELETE_SELF|unix.IN_IGNORED) != 0:
			// A pinned file went away (not on cgroupfs, whose files go
			// only with their directory): forget the pin, keep the key.
			p.dropPinLocked(w)
		case mask&(unix.IN_DELETE_SELF|unix.IN_IGNORED) != 0:
			// IN_DELETE_SELF is followed by IN_IGNORED; IN_IGNORED alone
			// means the kernel dropped the watch (e.g. unmount). Dropping
			// the key here makes the later IN_IGNORED an unknown wd, so
			// Gone is sent once.
			key := w.key
			p.dropKeyLocked(key, wd)
			buf = append(buf, Event{Key: key, Kind: Gone})
		case mask&unix.IN_ISDIR != 0 && mask&(unix.IN_CREATE|unix.IN_MOVED_TO) != 0:
			buf = append(buf, Event{Key: w.key, Kind: Created, Name: string(name)})
		case mask&unix.IN_ISDIR != 0 && mask&(unix.IN_DELETE|unix.IN_MOVED_FROM) != 0:
			// On cgroupfs this is the only removal signal: the caller
			// Unwatches the child (see WatchDir).
			buf = append(buf, Event{Key: w.key, Kind: Removed, Name: string(name)})
		case pin:
			// A pin reports nothing of its own.
		case mask&unix.IN_ISDIR == 0 && mask&unix.IN_MODIFY != 0:
			// kernfs_notify_workfn: FS_MODIFY|FS_EVENT_ON_CHILD reaches the
			// directory watch when memory.events/cgroup.events change. A
			// polled file was reported at the notification itself.
			if w.polled == nil || string(name) != w.polled.name {
				buf = append(buf, Event{Key: w.key, Kind: Modified, Name: p.intern(name)})
			}
		}
	}
	return buf
}

// intern returns name as a string without allocating for names seen before
// (cgroup file names are a small fixed set).
func (p *Poller) intern(name []byte) string {
	if s, ok := p.names[string(name)]; ok { // no allocation for the lookup
		return s
	}
	s := string(name)
	if len(p.names) < maxInterned {
		p.names[s] = s
	}
	return s
}

func isGoneErrno(err error) bool {
	// ENODEV: kernfs returns it for a node that is being removed.
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENODEV)
}

func dirExists(path string) bool {
	var st unix.Stat_t
	return unix.Stat(path, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR
}

func fileExists(path string) bool {
	var st unix.Stat_t
	return unix.Stat(path, &st) == nil
}

func openRetry(path string, flags int) (int, error) {
	for {
		fd, err := unix.Open(path, flags, 0)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

func writeRetry(fd int, b []byte) error {
	for {
		n, err := unix.Write(fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n != len(b) {
			return fmt.Errorf("short write: %d of %d bytes", n, len(b))
		}
		return nil
	}
}
