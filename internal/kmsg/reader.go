package kmsg

import (
	"context"
	"errors"
	"fmt"
	"path"
	"sort"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultPath is the kernel log device.
const DefaultPath = "/dev/kmsg"

// Bounds on what a Reader keeps.
const (
	DefaultPerCgroup = 20  // evidence lines kept per cgroup
	DefaultCgroups   = 256 // cgroups with evidence; the least recently seen is dropped
	maxPerRead       = 8192
	bufSize          = 8 << 10  // CONSOLE_EXT_LOG_MAX: larger than any record
	maxBufSize       = 64 << 10 // grown to on EINVAL before giving up on a record
)

// ErrUnavailable: /dev/kmsg cannot be read here (no permission: no
// CAP_SYSLOG with dmesg_restrict=1, a container without the device, …).
// Evidence is optional: log it once and carry on.
var ErrUnavailable = errors.New("kernel log unavailable")

// Options configure a Reader.
type Options struct {
	Path      string // default DefaultPath
	PerCgroup int    // default DefaultPerCgroup
	Cgroups   int    // default DefaultCgroups
	// Clock returns CLOCK_REALTIME and CLOCK_MONOTONIC; nil reads them with
	// clock_gettime. Tests pin it.
	Clock func() (real time.Time, mono time.Duration)
}

// Reader reads /dev/kmsg without blocking and keeps, per memory cgroup, a
// bounded ring of the recent OOM lines. Safe for concurrent use; the
// callback of ReadAvailable must not call back into the Reader.
type Reader struct {
	fd    int
	wake  int // eventfd that interrupts Run; -1 when not made
	opts  Options
	read  func(fd int, p []byte) (int, error)
	close sync.Once

	mu      sync.Mutex
	buf     []byte
	lastSeq uint64
	haveSeq bool
	lost    uint64
	bad     uint64
	stamp   uint64 // LRU clock
	rings   map[string]*ring
	dump    dump // the OOM report being printed
}

// dump is the context of one OOM report: its first lines (invoked,
// usage) name no cgroup; the "Memory cgroup stats for" line that follows
// does. oom_lock serialises reports, so they do not interleave.
type dump struct {
	cgroup  string
	known   bool
	pending []entry
}

type entry struct {
	t   time.Time
	msg string
}

type ring struct {
	e       []entry // oldest first, at most PerCgroup
	dropped uint64  // entries pushed out
	stamp   uint64
}

// Open opens the kernel log non-blocking, positioned at its end so only new
// records are read. A permission or availability problem wraps
// ErrUnavailable (and the errno).
func Open(opts Options) (*Reader, error) {
	if opts.Path == "" {
		opts.Path = DefaultPath
	}
	fd, err := unix.Open(opts.Path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		switch {
		case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
			return nil, fmt.Errorf("open %s: %w: %w (needs CAP_SYSLOG, or kernel.dmesg_restrict=0; kernel log evidence off)", opts.Path, ErrUnavailable, err)
		case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENXIO), errors.Is(err, unix.ENODEV):
			return nil, fmt.Errorf("open %s: %w: %w (no kernel log device here, e.g. a container; kernel log evidence off)", opts.Path, ErrUnavailable, err)
		}
		return nil, fmt.Errorf("open %s: %w", opts.Path, err)
	}
	// SEEK_END on /dev/kmsg moves to the next record to be written
	// (devkmsg_llseek): the backlog is not ours to attribute.
	if _, err := unix.Seek(fd, 0, unix.SEEK_END); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("seek %s to its end: %w", opts.Path, err)
	}
	r, err := newReader(fd, opts)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	return r, nil
}

func newReader(fd int, opts Options) (*Reader, error) {
	if opts.PerCgroup <= 0 {
		opts.PerCgroup = DefaultPerCgroup
	}
	if opts.Cgroups <= 0 {
		opts.Cgroups = DefaultCgroups
	}
	if opts.Clock == nil {
		opts.Clock = sysClock
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	return &Reader{fd: fd, wake: wake, opts: opts, read: unix.Read, buf: make([]byte, bufSize), rings: map[string]*ring{}}, nil
}

func sysClock() (time.Time, time.Duration) {
	var rt, mt unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &mt)
	_ = unix.ClockGettime(unix.CLOCK_REALTIME, &rt)
	return time.Unix(rt.Unix()), time.Duration(mt.Nano())
}

// Fd is the descriptor to watch for EPOLLIN in an epoll loop; call
// ReadAvailable when it is readable.
func (r *Reader) Fd() int { return r.fd }

// Lost is how many records were overwritten in the ring buffer before they
// were read (an OOM loop on a slow reader); Bad how many did not parse.
func (r *Reader) Lost() (lost, bad uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lost, r.bad
}

// ReadAvailable reads every record available now and returns at EAGAIN
// (bounded per call; a level-triggered poller calls again). fn, if not nil,
// sees each record; it must not call the Reader.
func (r *Reader) ReadAvailable(fn func(Record)) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.drain(fn)
}

func (r *Reader) drain(fn func(Record)) error {
	realNow, monoNow := r.opts.Clock()
	boot := realNow.Add(-monoNow) // wall time of usec 0
	for range maxPerRead {
		n, err := r.read(r.fd, r.buf)
		switch {
		case err == nil:
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EAGAIN):
			return nil
		case errors.Is(err, unix.EPIPE):
			// Records were overwritten before we read them; the kernel has
			// moved us to the oldest one left. The seq gap counts them.
			continue
		case errors.Is(err, unix.EINVAL):
			// The record does not fit the buffer, and the kernel keeps our
			// position: grow once, then skip to the end rather than spin.
			if len(r.buf) < maxBufSize {
				r.buf = make([]byte, maxBufSize)
				continue
			}
			r.bad++
			if _, err := unix.Seek(r.fd, 0, unix.SEEK_END); err != nil {
				return fmt.Errorf("skip an oversized kmsg record: %w", err)
			}
			r.haveSeq = false
			continue
		default:
			return fmt.Errorf("read kernel log: %w", err)
		}
		if n <= 0 {
			return nil
		}
		rec, perr := Parse(r.buf[:n])
		if perr != nil {
			r.bad++
			continue
		}
		if r.haveSeq && rec.Seq > r.lastSeq+1 {
			r.lost += rec.Seq - r.lastSeq - 1
		}
		r.lastSeq, r.haveSeq = rec.Seq, true
		rec.Time = boot.Add(time.Duration(rec.Usec) * time.Microsecond)
		r.observe(rec)
		if fn != nil {
			fn(rec)
		}
	}
	return nil
}

// observe files an OOM line under its cgroup. Records written from
// userspace are no evidence, and cannot start, name or end a report.
func (r *Reader) observe(rec Record) {
	if !rec.Kernel() {
		return
	}
	l, ok := Match(rec.Message)
	if !ok {
		return
	}
	e := entry{t: rec.Time, msg: rec.Message}
	switch l.Kind {
	case KindInvoked:
		r.dump = dump{pending: []entry{e}} // a new report starts
		return
	case KindStats, KindTaskIn:
		r.setDump(l.Cgroup)
		if l.Kind == KindStats {
			return
		}
	case KindConstraint:
		if l.Cgroup != "" && !r.dump.known {
			r.setDump(l.Cgroup)
		}
	}
	cg := r.dump.cgroup
	if !r.dump.known {
		if l.Kind == KindGroup {
			cg = l.Cgroup
		} else {
			// Not yet attributable (usage comes before stats); a global
			// OOM never names a memcg, and its lines are dropped with it.
			if len(r.dump.pending) < 8 {
				r.dump.pending = append(r.dump.pending, e)
			}
			return
		}
	}
	r.add(cg, e)
}

func (r *Reader) setDump(cg string) {
	cg = clean(cg)
	r.dump.cgroup, r.dump.known = cg, true
	for _, p := range r.dump.pending {
		r.add(cg, p)
	}
	r.dump.pending = nil
}

func (r *Reader) add(cg string, e entry) {
	cg = clean(cg)
	rg := r.rings[cg]
	if rg == nil {
		if len(r.rings) >= r.opts.Cgroups {
			r.evict()
		}
		rg = &ring{}
		r.rings[cg] = rg
	}
	r.stamp++
	rg.stamp = r.stamp
	if len(rg.e) >= r.opts.PerCgroup {
		copy(rg.e, rg.e[1:])
		rg.e = rg.e[:len(rg.e)-1]
		rg.dropped++
	}
	rg.e = append(rg.e, e)
}

func (r *Reader) evict() {
	var old string
	var min uint64
	for cg, rg := range r.rings {
		if old == "" || rg.stamp < min {
			old, min = cg, rg.stamp
		}
	}
	delete(r.rings, old)
}

func clean(cg string) string { return path.Clean("/" + cg) }

// Evidence returns the OOM lines logged for cgroup at or after since, oldest
// first, each as "RFC3339-time message". It first reads what the kernel has
// logged so far, so lines printed just before an incident opened are
// included. When older lines were pushed out of the ring, the first line
// says how many.
func (r *Reader) Evidence(cgroup string, since time.Time) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	_ = r.drain(nil) // best effort: what was already read still counts
	rg := r.rings[clean(cgroup)]
	if rg == nil {
		return nil
	}
	i := sort.Search(len(rg.e), func(i int) bool { return !rg.e[i].t.Before(since) })
	var out []string
	if rg.dropped > 0 && i == 0 {
		out = append(out, fmt.Sprintf("(%d earlier kernel log lines for this cgroup not kept)", rg.dropped))
	}
	for _, e := range rg.e[i:] {
		out = append(out, e.t.UTC().Format("2006-01-02T15:04:05.000000Z")+" "+e.msg)
	}
	return out
}

// Run reads records as they arrive until ctx is done, for callers without
// an epoll loop of their own. It coalesces a flood: after each batch it
// waits a little before reading again, so an OOM loop logging thousands of
// lines a second costs a few wake-ups, not thousands.
func (r *Reader) Run(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() {
		_, _ = unix.Write(r.wake, []byte{1, 0, 0, 0, 0, 0, 0, 0})
	})
	defer stop()
	for {
		fds := []unix.PollFd{{Fd: int32(r.fd), Events: unix.POLLIN}, {Fd: int32(r.wake), Events: unix.POLLIN}}
		_, err := unix.Poll(fds, -1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("poll kernel log: %w", err)
		}
		if fds[1].Revents != 0 || ctx.Err() != nil {
			return nil
		}
		if err := r.ReadAvailable(nil); err != nil {
			return err
		}
		// Coalesce: sleep up to 20 ms, still interruptible by ctx.
		fds = fds[1:]
		if _, err := unix.Poll(fds, 20); err == nil && fds[0].Revents != 0 {
			return nil
		}
	}
}

// Close releases the descriptors; call it after Run returned. Idempotent.
func (r *Reader) Close() error {
	var err error
	r.close.Do(func() {
		err = unix.Close(r.fd)
		if r.wake >= 0 {
			_ = unix.Close(r.wake)
		}
	})
	return err
}
