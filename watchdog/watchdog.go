// Package watchdog turns kernel hints into incidents: it discovers every
// memory cgroup, arms one notification source per cgroup on one epoll loop
// (package eventfd), re-reads counters on every wake-up, feeds a pure
// Detector per cgroup, inspects the tasks of a suspected loop and hands the
// resulting Incident to a Handler. Data flows one way; the watchdog never
// acts on the host itself.
package watchdog

import (
	"cmp"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"path"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/oomwatch/oomwatch/eventfd"
	"github.com/oomwatch/oomwatch/internal/cgnames"
	"github.com/oomwatch/oomwatch/internal/cgroupfs"
	"github.com/oomwatch/oomwatch/internal/procfs"
)

// Handler receives incidents. Open is called once when an episode is
// recognised, Resolved once when its OOMs have stopped or the cgroup is gone.
// Both must return quickly: the event loop waits for them.
type Handler interface {
	Open(inc *Incident)
	Resolved(inc *Incident, why string)
}

// Config configures a Watchdog.
type Config struct {
	CG         cgroupfs.Hierarchy
	Proc       procfs.FS
	Detector   Params
	MaxCgroups int // bound on watched cgroups; <= 0 means DefaultMaxCgroups
	// MaxPerSubtree bounds the cgroups watched in one container, or under
	// one top-level cgroup outside containers (see capKey);
	// <= 0 means DefaultMaxPerSubtree.
	MaxPerSubtree int
	MaxProcs      int // bound on tasks inspected per incident
	// ResolveAfter is how long a cgroup with an open incident must see no OOM
	// before the incident is resolved. <= 0 means 2 × Detector.Window.
	ResolveAfter time.Duration
	// Ready, if set, is called once every source is armed, with the number
	// of cgroups watched.
	Ready func(watched int)
	// ParamsFor, if set, gives the detector parameters of one cgroup (config
	// rules); Detector is used otherwise. Reconfigure makes the watchdog ask
	// again.
	ParamsFor func(cgroup string) Params
	// Ignore lists cgroups (and their subtrees) never watched: oomwatch's
	// own cgroup, whose OOM simply kills oomwatch (it runs killable, at
	// -900 under systemd) and which a sidecar must not act on. "/" is never
	// ignored.
	Ignore []string
	// ForcedChargeKernel: the kernel charges over the limit instead of
	// looping (4.19–5.15, see KernelForcesCharge); usage above the limit
	// after kill-less OOMs is then reported as VerdictForced.
	ForcedChargeKernel bool
	// FollowFor is how long the counters of a cgroup with kill-less OOMs
	// are read every millisecond (v2, see followEvery); 0 means 50 ms.
	FollowFor time.Duration
	// RiskHint, if set, is called from the event loop when a cgroup's
	// would-loop risk may have changed: an OOM killed a task at its limit
	// (at most once per detection window, as the oom_kill line), or it was
	// created after start-up (RiskMonitor.Hint). It must not block.
	RiskHint func(cgroup string)
	// Tick, if set, is called from the event loop at least every TickEvery
	// (systemd watchdog pings: a stuck loop stops pinging).
	Tick      func()
	TickEvery time.Duration
}

// DefaultMaxCgroups bounds discovery when the config says nothing.
const DefaultMaxCgroups = 65536

// DefaultMaxPerSubtree bounds one container's subtree (its delegated
// cgroups) when the config says nothing.
const DefaultMaxPerSubtree = 16384

type cgroupState struct {
	det      *Detector // nil until the counters first move: most cgroups never OOM
	last     Counters  // last counters read
	v1OOM    uint64    // v1: running total of eventfd counts
	localOOM uint64    // v2: last memory.events.local oom
	armKills uint64    // v1: this cgroup's own oom_kill when it was armed
	gen      uint64    // configuration generation the detector was built for
	inc      *Incident // open incident, nil when none
	capKey   string    // the subtree it counts against for MaxPerSubtree (see capKey)
	lastOOM  stamp
	killLog  stamp // last "oom_kill" info line (one per detection window)
	recheck  stamp // v1: re-read the counters then (see settleV1)
	episode  stamp // first OOM after a quiet window: detection latency starts here
	pos      int32 // index in its parent's kids list (see eachBelow)
	// The flags together (one word, not one each: 10,000 cgroups).
	hasLocal bool
	paused   bool
	noMemory bool // v2 cgroup without the memory controller
	needBase bool // v1: no baseline yet (built at the first wake-up)
	baseLate bool // v2: memory.events not read yet (see readBaselines)
	inCtr    bool // capKey is a container's cgroup
	stalled  bool // a stalled verdict waits for the recheck before it is reported
}

// stamp is an instant as the monotonic time since the watchdog was created,
// 0 for never: 8 bytes where a time.Time takes 24 (three per cgroup).
type stamp time.Duration

func (w *Watchdog) stamp(t time.Time) stamp { return stamp(max(t.Sub(w.t0), 1)) }

// since is how long before now s was.
func (w *Watchdog) since(now time.Time, s stamp) time.Duration {
	return time.Duration(w.stamp(now) - s)
}

// Stats is a snapshot for status and metrics.
type Stats struct {
	Watched       int
	OpenIncidents int
	Events        uint64 // notifications handled
	OOMs          uint64 // OOM events counted (sum of counter deltas)
	Kills         uint64 // OOM kills counted
	Incidents     uint64
	Unsupported   bool // v1 OOM notifications unavailable
	// Baselining is how many v2 cgroups found at start-up still wait for
	// their first memory.events read (watched already; see readBaselines).
	Baselining int
	LastEvent  time.Time // zero before the first notification
	// BusySince is when the loop started handling the current batch; zero
	// while it waits for the kernel. A loop busy for long is stuck.
	BusySince time.Time
}

// Watchdog is the main loop. Create with New, run with Run.
type Watchdog struct {
	cfg       Config
	h         Handler
	log       zerolog.Logger
	poller    *eventfd.Poller
	insp      Inspector
	cgroups   map[string]*cgroupState
	t0        time.Time       // stamps count from here
	full      bool            // MaxCgroups reached, warned once
	perTop    map[string]int  // watched cgroups per subtree (capKey)
	capped    map[string]bool // subtrees warned about
	armErrors int
	fresh     bool // arming cgroups created after start-up (v2: zero baseline)

	// kids lists the watched children of each watched cgroup that has
	// any: every walk of a subtree while handling an event goes through
	// it (eachBelow), so its cost is the subtree's, never the number of
	// watched cgroups.
	kids   map[string][]string
	opened map[string]*cgroupState // cgroups with an open incident
	visits uint64                  // cgroups visited by eachBelow and forgetTree (tests read it)

	events, incidents atomic.Uint64
	ooms, kills       atomic.Uint64
	watched, open     atomic.Int64
	baselining        atomic.Int64
	unsupported       atomic.Bool
	lastEvent, busy   atomic.Int64  // unix nanoseconds; 0 = never / idle
	gen               atomic.Uint64 // bumped by Reconfigure
	rechecks          map[string]bool
	rechecksLeft      bool             // recheckDue stopped at its budget with due rechecks left
	follows           map[string]stamp // v2: kill-less OOMs under way, read until then (see followEvery)
	lastFollow        stamp            // when followDue last read them
	pending           []string         // v2 cgroups armed at start-up whose baseline is not read yet

	running  atomic.Pointer[eventfd.Poller] // set while Run's loop runs (Watched pokes it)
	listReqs chan chan []Watched            // Watched calls waiting for the loop
	listTook atomic.Int64                   // how long the loop took for the last list (benchmarks)
}

// New checks cfg and prepares a watchdog; nothing is armed until Run.
func New(cfg Config, h Handler, log zerolog.Logger) (*Watchdog, error) {
	if err := cfg.Detector.Validate(); err != nil {
		return nil, err
	}
	if cfg.MaxCgroups <= 0 {
		cfg.MaxCgroups = DefaultMaxCgroups
	}
	if cfg.MaxPerSubtree <= 0 {
		cfg.MaxPerSubtree = DefaultMaxPerSubtree
	}
	if cfg.ResolveAfter <= 0 {
		cfg.ResolveAfter = 2 * cfg.Detector.Window
	}
	if cfg.Tick != nil && cfg.TickEvery <= 0 {
		return nil, errors.New("watchdog: Tick set without TickEvery")
	}
	return &Watchdog{
		cfg: cfg, h: h, log: log, t0: time.Now(),
		insp:     Inspector{CG: cfg.CG, Proc: cfg.Proc, MaxProcs: cfg.MaxProcs, MaxCgroups: inspectCgroups},
		cgroups:  make(map[string]*cgroupState),
		perTop:   make(map[string]int),
		kids:     make(map[string][]string),
		opened:   make(map[string]*cgroupState),
		rechecks: make(map[string]bool),
		follows:  make(map[string]stamp),
		capped:   make(map[string]bool),
		listReqs: make(chan chan []Watched, 16),
	}, nil
}


// Reconfigure makes every detector pick up new parameters (after a config
// reload) at its cgroup's next notification. Safe from any goroutine.
func (w *Watchdog) Reconfigure() { w.gen.Add(1) }

func (w *Watchdog) params(cg string) Params {
	if w.cfg.ParamsFor != nil {
		if p := w.cfg.ParamsFor(cg); p.Validate() == nil {
			return p
		}
	}
	return w.cfg.Detector
}

// Stats returns counters that are safe to read from any goroutine.
func (w *Watchdog) Stats() Stats {
	st := Stats{Watched: int(w.watched.Load()), OpenIncidents: int(w.open.Load()),
		Events: w.events.Load(), OOMs: w.ooms.Load(), Kills: w.kills.Load(),
		Incidents: w.incidents.Load(), Unsupported: w.unsupported.Load(), Baselining: int(w.baselining.Load())}
	if t := w.lastEvent.Load(); t != 0 {
		st.LastEvent = time.Unix(0, t)
	}
	if t := w.busy.Load(); t != 0 {
		st.BusySince = time.Unix(0, t)
	}
	return st
}

// Run arms every source and processes events until ctx is done.
func (w *Watchdog) Run(ctx context.Context) error {
	p, err := eventfd.New()
	if err != nil {
		return fmt.Errorf("start event loop: %w", err)
	}
	w.poller = p
	defer p.Close()
	// Watched calls may queue from here; the loop answers them.
	w.running.Store(p)
	defer w.running.Store(nil)
	stop := context.AfterFunc(ctx, func() { p.Close() })
	defer stop()

	start := time.Now()
	if err := w.add("/"); err != nil && !errors.Is(err, cgroupfs.ErrTooMany) {
		return fmt.Errorf("watch %s: %w", w.cfg.CG.Root, err)
	}
	w.log.Info().Str("event", "ready").Str("hierarchy", w.cfg.CG.String()).Int("cgroups", len(w.cgroups)).
		Dur("arm_time", time.Since(start)).Bool("v1_notifications_unsupported", w.unsupported.Load()).
		Msg("watching memory cgroups")
	w.baselining.Store(int64(len(w.pending)))
	if w.cfg.Ready != nil {
		w.cfg.Ready(len(w.cgroups))
	}
	if len(w.pending) == 0 {
		startupDone()
	}

	buf := make([]eventfd.Event, 0, 256)
	lastTick := time.Now()
	for {
		timeout := w.nextTimeout(lastTick)
		if len(w.pending) > 0 {
			timeout = 0
		}
		buf, err = p.Wait(buf, timeout)
		if errors.Is(err, eventfd.ErrClosed) {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if err != nil {
			return fmt.Errorf("wait for events: %w", err)
		}
		now := time.Now()
		w.busy.Store(now.UnixNano())
		if len(buf) > 0 {
			w.lastEvent.Store(now.UnixNano())
		}
		w.turn(now, buf, start)
		w.busy.Store(0)
		if w.cfg.Tick != nil && now.Sub(lastTick) >= w.cfg.TickEvery {
			w.cfg.Tick()
			lastTick = now
		}
	}
}

// turn is one turn of the loop: the events of one wait, then what is due.
// start is when Run started.
func (w *Watchdog) turn(now time.Time, evs []eventfd.Event, start time.Time) {
	w.handle(now, evs)
	if len(w.pending) > 0 {
		w.readBaselines(now)
		if len(w.pending) == 0 {
			w.log.Debug().Str("event", "baselines_read").Dur("since_start", time.Since(start)).Msg("OOM counters of every cgroup read")
			startupDone()
		}
	}
	w.recheckDue(now)
	w.followDue(now)
	w.resolveQuiet(now)
	w.answerLists()
}

// startupDone returns the garbage of the start-up walk (paths, directory
// listings, read buffers: about as much again as the watch state itself at
// 10,000 cgroups) to the kernel at once, instead of leaving it to the
// runtime's slow background scavenger: oomwatch then runs for months at its
// steady-state size. One forced GC at start-up (and after the rare rescan
// that follows an inotify queue overflow).
func startupDone() { debug.FreeOSMemory() }

// nextTimeout sleeps forever when nothing is open and nobody needs ticks:
// zero wake-ups on an idle host.
func (w *Watchdog) nextTimeout(lastTick time.Time) time.Duration {
	t := time.Duration(-1)
	if w.open.Load() > 0 {
		t = w.cfg.ResolveAfter / 4
	}
	if len(w.rechecks) > 0 && (t < 0 || settleV1 < t) {
		t = settleV1
	}
	if w.rechecksLeft {
		t = 0
	}
	if len(w.follows) > 0 && (t < 0 || followEvery < t) {
		t = followEvery
	}
	if w.cfg.Tick != nil {
		d := time.Until(lastTick.Add(w.cfg.TickEvery))
		if d < 0 {
			d = 0
		}
		if t < 0 || d < t {
			t = d
		}
	}
	return t
}

// add starts watching cg and its whole subtree (a cgroup created with
// mkdir -p may already have children when we see it).
func (w *Watchdog) add(cg string) error {
	return w.cfg.CG.Walk(cg, 0, func(c string) error {
		if _, ok := w.cgroups[c]; ok {
			return nil
		}
		if len(w.cgroups) >= w.cfg.MaxCgroups {
			if !w.full {
				w.full = true
				w.log.Warn().Str("event", "cgroup_cap").Int("max_cgroups", w.cfg.MaxCgroups).Str("cgroup", c).
					Msg("cgroup limit reached: further cgroups are not watched (raise max_cgroups)")
			}
			return cgroupfs.ErrTooMany
		}
		for _, ig := range w.cfg.Ignore {
			if ig != "/" && cgroupfs.Clean(ig) == c {
				w.log.Info().Str("cgroup", c).Msg("not watching oomwatch's own cgroup")
				return filepath.SkipDir
			}
		}
		// The per-subtree cap: a container that creates cgroups in its
		// delegated subtree cannot take the global budget from everyone else.
		key, inCtr := w.capKey(c)
		if key != "" && w.perTop[key] >= w.cfg.MaxPerSubtree {
			if !w.capped[key] {
				w.capped[key] = true
				w.log.Warn().Str("event", "cgroup_cap").Str("subtree", key).Int("max_per_subtree", w.cfg.MaxPerSubtree).
					Msg("subtree holds too many cgroups: its new cgroups are not watched")
			}
			return filepath.SkipDir
		}
		err := w.arm(c, key, inCtr)
		if errors.Is(err, cgroupfs.ErrGone) || errors.Is(err, eventfd.ErrGone) {
			return nil
		}
		if err == nil && w.fresh && w.cfg.RiskHint != nil {
			w.cfg.RiskHint(c)
		}
		if err != nil && c != "/" {
			// One cgroup we cannot watch (permissions, fd limit) must not
			// stop the daemon from watching the others.
			w.armErrors++
			if w.armErrors <= 10 {
				w.log.Warn().Err(err).Str("cgroup", c).Msg("cannot watch cgroup")
			}
			return nil
		}
		return err
	})
}

// capKey names the subtree c counts against for MaxPerSubtree: the
// outermost container cgroup at or above c (as internal/cgnames names it:
// /lxc/web1, /docker/<id>, …/cri-containerd-<id>.scope,
// /machine.slice/libpod-<id>.scope), so containers that share a parent
// (/lxc, /docker, /kubepods.slice) each have their own budget and one that
// floods its subtree cannot blind oomwatch to its siblings; outside any
// container, the top-level cgroup. inCtr reports the first case.
func (w *Watchdog) capKey(c string) (key string, inCtr bool) {
	c = cgroupfs.Clean(c)
	if c == "/" {
		return "", false
	}
	if p, ok := cgroupfs.Parent(c); ok && p != "/" {
		if ps := w.cgroups[p]; ps != nil && ps.capKey != "" {
			if ps.inCtr {
				return ps.capKey, true
			}
			if cgnames.Parse(c).Container != "" {
				return c, true
			}
			return ps.capKey, false
		}
	}
	// The parent is not watched (start of a walk, ignored, capped).
	return subtreeOf(c)
}

// Subtree names the subtree cg belongs to for the bounds kept per container
// (MaxPerSubtree, the policy's action budget): the outermost container
// cgroup at or above cg, or outside any container the top-level cgroup; ""
// for the root. capKey gives the same answer from its parent's.
func Subtree(cg string) string {
	key, _ := subtreeOf(cgroupfs.Clean(cg))
	return key
}

// subtreeOf is Subtree for a clean c, looking at every ancestor, outermost
// first; inCtr reports a container.
func subtreeOf(c string) (key string, inCtr bool) {
	if c == "/" {
		return "", false
	}
	for i := 1; i < len(c); i++ {
		if c[i] == '/' && cgnames.Parse(c[:i]).Container != "" {
			return c[:i], true
		}
	}
	if cgnames.Parse(c).Container != "" {
		return c, true
	}
	return topLevel(c), false
}

func topLevel(c string) string {
	c = cgroupfs.Clean(c)
	if c == "/" {
		return ""
	}
	if i := strings.IndexByte(c[1:], '/'); i >= 0 {
		return c[:i+1]
	}
	return c
}

// arm watches cg, which counts against the subtree capKey (see capKey).
func (w *Watchdog) arm(cg, capKey string, inCtr bool) error {
	watch := w.poller.WatchDir // v2: memory.events and cgroup.subtree_control changes
	if w.cfg.CG.Version == 1 {
		watch = w.poller.WatchSubdirs // v1: OOMs come from the eventfd
	}
	if err := watch(cg, w.cfg.CG.Dir(cg)); err != nil {
		return err
	}
	st := &cgroupState{gen: w.gen.Load()}
	w.cgroups[cg] = st
	if p, ok := cgroupfs.Parent(cg); ok {
		st.pos = int32(len(w.kids[p]))
		w.kids[p] = append(w.kids[p], cg)
	}
	if st.capKey, st.inCtr = capKey, inCtr; capKey != "" {
		w.perTop[capKey]++
	}
	w.watched.Store(int64(len(w.cgroups)))
	if cg == "/" {
		return nil // the root has no memory.events; v1: "OOM notification doesn't work for the root cgroup"
	}
	if w.cfg.CG.Version == 2 {
		// kernfs only notifies a file whose inode is cached
		// (kernfs_notify_workfn uses ilookup): pin memory.events so the
		// directory watch keeps seeing its changes.
		if err := w.poller.PinFile(cg, w.cfg.CG.MemoryEventsPath(cg)); err != nil {
			if errors.Is(err, eventfd.ErrGone) && w.cfg.CG.Exists(cg) {
				// No memory.events: the memory controller is not enabled
				// here (parent's subtree_control) and its usage is charged
				// to an ancestor. Keep the directory watch for new
				// children, nothing else.
				st.noMemory = true
				return nil
			}
			w.drop(cg)
			return err
		}
	}
	if w.cfg.CG.Version == 1 && !w.unsupported.Load() {
		ec, oc := w.cfg.CG.EventControlPaths(cg)
		err := w.poller.WatchV1OOM(cg, ec, oc)
		if errors.Is(err, errors.ErrUnsupported) {
			// CONFIG_MEMCG_V1=n or PREEMPT_RT: no OOM eventfd. Say so once.
			w.unsupported.Store(true)
			w.log.Error().Err(err).Msg("cgroup v1 OOM notifications are not supported by this kernel: v1 OOM loops cannot be detected")
		} else if err != nil {
			w.drop(cg)
			return err
		}
	}
	switch {
	case w.cfg.CG.Version == 1:
		// v1: only this cgroup's own oom_kill is read here; the subtree
		// baseline is summed from the armed cgroups of its subtree at the
		// first eventfd wake-up (see v1Base). Summing oom_kill over the
		// subtree for every cgroup at start-up walked each subtree twice;
		// reading the baseline only at the wake-up would absorb the very
		// kill that caused it.
		oc, err := w.cfg.CG.OOMControl(cg)
		if err != nil {
			w.drop(cg)
			return err
		}
		st.armKills, st.needBase = oc.OOMKill, true
	case w.fresh:
		// v2, a cgroup created while we run: a new memcg starts with every
		// counter at zero, which is the right baseline (an OOM between
		// mkdir and this arm still counts). Saves a read per new cgroup.
		// st.last is that baseline (see observe).
	default:
		// v2, an existing cgroup: its counters may hold old OOMs, so a
		// baseline is needed, but reading memory.events here was the
		// largest cost of arming (28 % of the CPU at 10,000 cgroups):
		// the watch is live now and readBaselines reads it right after.
		st.baseLate = true
		w.pending = append(w.pending, cg)
	}
	return nil
}

// baselineBatch is how many deferred baselines one loop turn reads before it
// looks at the kernel's events again.
const baselineBatch = 256

// readBaselines reads up to baselineBatch deferred v2 baselines. A cgroup
// whose notification came first got its baseline in observe instead.
func (w *Watchdog) readBaselines(now time.Time) {
	n := min(baselineBatch, len(w.pending))
	for _, cg := range w.pending[:n] {
		if st := w.cgroups[cg]; st != nil && st.baseLate {
			w.baseline(now, cg, st)
		}
	}
	w.pending = w.pending[n:]
	w.baselining.Store(int64(len(w.pending)))
	if len(w.pending) == 0 {
		w.pending = nil // release the start-up array
	}
}

// baseline reads a v2 cgroup's counters as the point deltas count from.
func (w *Watchdog) baseline(now time.Time, cg string, st *cgroupState) {
	c, _, err := w.counters(cg, st, 0)
	if errors.Is(err, cgroupfs.ErrGone) {
		w.drop(cg)
		return
	}
	if err != nil {
		// Still no baseline: the next notification tries again.
		w.log.Warn().Err(err).Str("cgroup", cg).Msg("cannot read OOM counters")
		return
	}
	st.baseLate = false
	st.last = c // the baseline: see observe
}

// enableMemory re-checks the children of cg after its cgroup.subtree_control
// was written: enabling +memory gives existing children memory.events, and
// kernfs sends no inotify event for files it adds. A child created before
// its parent enabled the controller would otherwise never be watched.
func (w *Watchdog) enableMemory(cg string) {
	for _, c := range w.kids[cgroupfs.Clean(cg)] {
		st := w.cgroups[c]
		w.visits++
		if !st.noMemory || !w.cfg.CG.HasMemoryEvents(c) {
			continue
		}
		if err := w.poller.PinFile(c, w.cfg.CG.MemoryEventsPath(c)); err != nil {
			continue
		}
		cnt, _, err := w.counters(c, st, 0)
		if err != nil {
			continue
		}
		st.noMemory, st.last = false, cnt // the baseline
		w.log.Debug().Str("cgroup", c).Msg("memory controller enabled: now watching OOM counters")
	}
}

// eachBelow calls fn for the watched descendants of cg, nearest first, and
// stops after max of them (max <= 0: no bound) or at fn's first error.
func (w *Watchdog) eachBelow(cg string, max int, fn func(c string, st *cgroupState) error) error {
	n := 0
	level := w.kids[cgroupfs.Clean(cg)]
	var next []string
	for len(level) > 0 {
		for _, c := range level {
			if max > 0 && n >= max {
				return nil
			}
			n++
			w.visits++
			if err := fn(c, w.cgroups[c]); err != nil {
				return err
			}
			next = append(next, w.kids[c]...)
		}
		level, next = next, level[:0:0]
	}
	return nil
}

// drop forgets cg and everything below it.
func (w *Watchdog) drop(cg string) {
	w.forgetTree(cgroupfs.Clean(cg))
	w.watched.Store(int64(len(w.cgroups)))
}

// forgetTree forgets c and its watched descendants, children first. rmdir
// needs an empty cgroup, so children are normally dropped before their
// parent; after an inotify overflow or a Gone of a whole subtree they are
// still here.
func (w *Watchdog) forgetTree(c string) {
	for k := w.kids[c]; len(k) > 0; k = w.kids[c] {
		w.visits++
		w.forgetTree(k[len(k)-1])
	}
	w.forget(c)
}

// forget drops one cgroup's watches and state; its children are gone
// already (forgetTree).
func (w *Watchdog) forget(c string) {
	st, ok := w.cgroups[c]
	if !ok {
		return
	}
	w.poller.Unwatch(c)
	if st.inc != nil {
		w.closeIncident(st, "cgroup removed")
	}
	delete(w.cgroups, c)
	delete(w.rechecks, c)
	delete(w.follows, c)
	delete(w.kids, c)
	if p, ok := cgroupfs.Parent(c); ok {
		// Swap with the last child: O(1) at any number of siblings.
		k := w.kids[p]
		last := k[len(k)-1]
		k[st.pos] = last
		if ls := w.cgroups[last]; ls != nil { // nil: c was the last
			ls.pos = st.pos
		}
		if k = k[:len(k)-1]; len(k) == 0 {
			delete(w.kids, p)
		} else {
			w.kids[p] = k
		}
	}
	if top := st.capKey; top != "" {
		if w.perTop[top]--; w.perTop[top] <= 0 {
			delete(w.perTop, top)
			delete(w.capped, top)
		}
	}
}

// subtreeReads bounds the cgroups one v1 reading of a cgroup's counters
// looks at: the cgroup and its nearest watched descendants (see counters).
// Every memory.oom_control read is a file read (12–16 µs on the 6.18 host of
// docs/BENCHMARKS.md): 256 of them keep a parent's notification within a
// few milliseconds however large its subtree is.
const subtreeReads = 256

// V2Counters reads cg's counters from its memory.events: oom, and the kills
// (oom_kill + oom_group_kill).
func V2Counters(h cgroupfs.Hierarchy, cg string) (Counters, error) {
	ev, err := h.MemoryEvents(cg)
	if err != nil {
		return Counters{}, err
	}
	return Counters{OOM: ev.OOM, Kills: ev.OOMKill + ev.OOMGroupKill}, nil
}

// counters reads cg's counters; v1Count is what the eventfd just reported.
// On v1 it also returns cg's memory.oom_control (zero on v2).
//
// v1's oom_kill is local to each memcg (the victim's), so a kill caused by
// an OOM at cg shows in a descendant: Kills sums cg's own and that of its
// watched descendants, the nearest subtreeReads-1 of them. A kill beyond
// them reads as a kill-less OOM: at worst a suspected loop that the
// inspection then calls stalled (the victim was killable). v1Base sums the
// baseline over the same cgroups.
func (w *Watchdog) counters(cg string, st *cgroupState, v1Count uint64) (Counters, cgroupfs.OOMControl, error) {
	if w.cfg.CG.Version == 2 {
		c, err := V2Counters(w.cfg.CG, cg)
		return c, cgroupfs.OOMControl{}, err
	}
	oc, err := w.cfg.CG.OOMControl(cg)
	if err != nil {
		return Counters{}, oc, err
	}
	st.v1OOM += v1Count
	kills := oc.OOMKill
	err = w.eachBelow(cg, subtreeReads-1, func(c string, _ *cgroupState) error {
		d, err := w.cfg.CG.OOMControl(c)
		if errors.Is(err, cgroupfs.ErrGone) {
			return nil // removed meanwhile: its Gone event follows
		}
		kills += d.OOMKill
		return err
	})
	if err != nil {
		return Counters{}, oc, err
	}
	return Counters{OOM: st.v1OOM, Kills: kills}, oc, nil
}

// v1Base is the v1 baseline of cg: the oom_kill of the cgroups counters
// sums, as each was when it was armed.
func (w *Watchdog) v1Base(cg string, st *cgroupState) Counters {
	kills := st.armKills
	_ = w.eachBelow(cg, subtreeReads-1, func(_ string, s *cgroupState) error {
		kills += s.armKills
		return nil
	})
	return Counters{OOM: st.v1OOM, Kills: kills}
}

func (w *Watchdog) handle(now time.Time, evs []eventfd.Event) {
	var suspects []string
	for _, ev := range evs {
		w.events.Add(1)
		switch ev.Kind {
		case eventfd.Created:
			if _, ok := w.cgroups[ev.Key]; ok {
				w.fresh = true
				err := w.add(path.Join(ev.Key, ev.Name))
				w.fresh = false
				if err != nil && !errors.Is(err, cgroupfs.ErrTooMany) {
					w.log.Warn().Err(err).Str("cgroup", path.Join(ev.Key, ev.Name)).Msg("cannot watch new cgroup")
				}
			}
		case eventfd.Removed:
			w.drop(path.Join(ev.Key, ev.Name))
		case eventfd.Gone:
			w.drop(ev.Key)
		case eventfd.Overflow:
			w.log.Warn().Msg("inotify queue overflow: rescanning the hierarchy")
			if err := w.add("/"); err != nil && !errors.Is(err, cgroupfs.ErrTooMany) {
				w.log.Error().Err(err).Msg("rescan failed")
			}
		case eventfd.OOM:
			if w.observe(now, ev.Key, ev.Count) {
				suspects = append(suspects, ev.Key)
			}
		case eventfd.Modified:
			if w.cfg.CG.Version == 2 && cgroupfs.SubtreeControlFile(ev.Name) {
				w.enableMemory(ev.Key)
				continue
			}
			if w.cfg.CG.Version == 2 && cgroupfs.MemoryEventsFile(ev.Name) {
				if w.observe(now, ev.Key, 0) {
					suspects = append(suspects, ev.Key)
				}
			}
		}
	}
	if len(suspects) == 0 {
		return
	}
	w.suspectAll(now, suspects)
}

// suspectAll inspects suspected loops. v1 notifies the OOMing cgroup and
// all its descendants: handle parents first and skip any cgroup below one
// with an open incident.
func (w *Watchdog) suspectAll(now time.Time, suspects []string) {
	sort.Slice(suspects, func(i, j int) bool { return depth(suspects[i]) < depth(suspects[j]) })
	for _, cg := range suspects {
		if !w.ancestorOpen(cg) {
			w.suspect(now, cg)
		}
	}
}

func depth(cg string) int { return strings.Count(cgroupfs.Clean(cg), "/") }

func (w *Watchdog) ancestorOpen(cg string) bool {
	for p, ok := cgroupfs.Parent(cg); ok; p, ok = cgroupfs.Parent(p) {
		if st := w.cgroups[p]; st != nil && st.inc != nil {
			return true
		}
	}
	return false
}

// observe feeds one notification into cg's detector and reports whether it
// is a suspected loop that needs inspection.
func (w *Watchdog) observe(now time.Time, cg string, v1Count uint64) bool {
	st := w.cgroups[cg]
	if st == nil || cg == "/" || st.noMemory {
		return false
	}
	if st.baseLate {
		// Notified before readBaselines got here: what memory.events
		// says now is the baseline. The kernel's next OOM notifies again,
		// so a loop costs one more OOM to detect, once, right after start.
		w.baseline(now, cg, st)
		return false
	}
	if st.needBase {
		st.last, st.needBase = w.v1Base(cg, st), false
	}
	c, oc, err := w.counters(cg, st, v1Count)
	if errors.Is(err, cgroupfs.ErrGone) {
		w.drop(cg)
		return false
	}
	if err != nil {
		w.log.Warn().Err(err).Str("cgroup", cg).Msg("cannot read OOM counters")
		return false
	}
	if c.OOM >= st.last.OOM && c.Kills >= st.last.Kills {
		if d := c.OOM - st.last.OOM; d > 0 {
			w.ooms.Add(d)
			if st.lastOOM == 0 || w.since(now, st.lastOOM) > w.cfg.Detector.Window {
				st.episode = w.stamp(now)
			}
		}
		w.kills.Add(c.Kills - st.last.Kills)
	}
	prev := st.last
	st.last = c
	if g := w.gen.Load(); st.gen != g {
		// New rules: a new detector, from the current counters.
		st.det, st.gen = nil, g
		prev = c
	}
	var a Assessment
	switch {
	case st.det != nil:
		a = st.det.Observe(now, c)
	case c != prev:
		// The detector is made at the first change, its history starting
		// from the baseline in st.last: most cgroups never see an OOM and
		// cost no detector at all.
		st.det = NewDetector(w.params(cg))
		st.det.Observe(now, prev)
		a = st.det.Observe(now, c)
	}
	if a.Reset {
		w.log.Info().Str("cgroup", cg).Msg("counters went backwards: cgroup was recreated, detector reset")
	}
	if a.OOMs > 0 {
		st.lastOOM = w.stamp(now)
	}
	if st.inc != nil {
		return false // evidence is fixed at open; resolution uses lastOOM
	}
	if w.cfg.CG.Version == 2 {
		w.follow(now, cg, a)
	}
	// A v1 OOM at a cgroup notifies its descendants too, and they inherit
	// oom_kill_disable at mkdir and share its under_oom: the paused cgroup
	// is the outermost one (parents are notified first), not each of them.
	if w.cfg.CG.Version == 1 && v1Count > 0 && oc.KillDisable && oc.UnderOOM && !st.paused && !w.ancestorOpen(cg) {
		st.paused = true
		t0 := time.Now()
		cands, _ := w.insp.Candidates(cg)
		inspection := time.Since(t0)
		lim, use, _ := w.limitUsage(cg)
		w.openIncident(now, cg, st, a, VerdictPaused, cands, lim, use, inspection)
		return false
	}
	if w.cfg.CG.Version == 1 && v1Count > 0 && a.Signal != Killed {
		w.scheduleRecheck(cg, st, now)
	}
	switch a.Signal {
	case Killed:
		w.logKill(now, cg, st, a)
		return false
	case Suspect:
		return w.isLimitHolder(cg, st)
	}
	return false
}

// logKill logs an ordinary OOM kill at info, as the kernel's own answer to
// an OOM: once per detection window per cgroup, and only at the cgroup
// whose limit was hit (v2 counters are hierarchical: every ancestor sees
// the same kill), so a tenant killing in a loop cannot flood the journal.
func (w *Watchdog) logKill(now time.Time, cg string, st *cgroupState, a Assessment) {
	if !w.isLimitHolder(cg, st) {
		return
	}
	if st.killLog != 0 && w.since(now, st.killLog) < w.cfg.Detector.Window {
		return
	}
	st.killLog = w.stamp(now)
	if w.cfg.RiskHint != nil {
		w.cfg.RiskHint(cg)
	}
	names := cgnames.Parse(cg)
	w.log.Info().Str("event", "oom_kill").Str("cgroup", cg).Str("container", names.Container).Str("unit", names.Unit).
		Uint64("oom_events", a.OOMs).Uint64("oom_kills", a.Kills).Msg("OOM killed a task: the kernel coped")
}

// isLimitHolder: v2 memory.events is hierarchical — an OOM at /a raises the
// counters of /a and every ancestor. Only the cgroup whose own limit was hit
// sees memory.events.local move (5.2+).
func (w *Watchdog) isLimitHolder(cg string, st *cgroupState) bool {
	if w.cfg.CG.Version == 1 {
		// v1 notifies the OOMing cgroup and all its descendants. Parents are
		// handled first (see handle); a child without a limit of its own
		// cannot be where the limit was hit.
		lim, err := w.cfg.CG.Limit(cg)
		return err == nil && lim != cgroupfs.Unlimited
	}
	loc, err := w.cfg.CG.MemoryEventsLocal(cg)
	if err != nil {
		// No memory.events.local (before 5.2): fall back to "has a limit".
		lim, lerr := w.cfg.CG.Limit(cg)
		return lerr == nil && lim != cgroupfs.Unlimited
	}
	rose := !st.hasLocal || loc.OOM > st.localOOM
	st.localOOM, st.hasLocal = loc.OOM, true
	return rose && loc.OOM > 0
}

func (w *Watchdog) suspect(now time.Time, cg string) {
	st := w.cgroups[cg]
	if st == nil || st.inc != nil {
		return
	}
	var a Assessment
	if st.det != nil {
		a = st.det.Assess(now)
	}
	if a.Signal != Suspect {
		st.stalled = false
		return
	}
	t0 := time.Now()
	cands, err := w.insp.Candidates(cg)
	if errors.Is(err, cgroupfs.ErrGone) {
		w.drop(cg)
		return
	}
	if err != nil {
		w.log.Warn().Err(err).Str("cgroup", cg).Msg("cannot inspect tasks")
		return
	}
	inspection := time.Since(t0)
	v := Classify(cands)
	if v == VerdictStalled && w.cfg.CG.Version == 1 && !st.stalled {
		// The v1 eventfd fires before the kernel counts the kill it is
		// about to make: look again once it has settled before calling
		// killable tasks "stalled".
		st.stalled = true
		w.scheduleRecheck(cg, st, now)
		return
	}
	st.stalled = false
	lim, use, err := w.limitUsage(cg)
	if errors.Is(err, cgroupfs.ErrGone) && !w.cfg.CG.Exists(cg) {
		// Removed while its tasks were read (they exited first: rmdir
		// needs an empty cgroup). An incident about it would name a
		// cgroup that no longer exists and tasks that are gone.
		w.log.Info().Str("event", "gone_during_inspection").Str("cgroup", cg).Msg("cgroup removed while its tasks were read; no incident")
		w.drop(cg)
		return
	}
	ok := err == nil
	if w.cfg.ForcedChargeKernel && ok {
		if forced, _ := ForcedCharge(ChargeSample{KilllessOOMs: a.OOMs, Kills: a.Kills, Usage: use, Limit: lim}); forced {
			v = VerdictForced
		}
	}
	w.openIncident(now, cg, st, a, v, cands, lim, use, inspection)
}

// inspectCgroups bounds the cgroups whose tasks the event loop reads for
// one incident (Inspector.MaxCgroups): a cgroup.procs read costs about
// 19 µs on the 6.18 host even for an empty cgroup, so 256 of them take
// 5 ms. The tasks of the nearest 256 cgroups of the subtree are the
// incident's candidates; the policy's own inspections read up to 4,096.
const inspectCgroups = 256

// settleV1 is how long after a v1 OOM wake-up the counters are read again:
// the eventfd is signalled before the kernel kills and counts oom_kill, so
// a wake-up alone cannot tell a kill from a loop.
const settleV1 = 100 * time.Millisecond

func (w *Watchdog) scheduleRecheck(cg string, st *cgroupState, now time.Time) {
	if st.recheck == 0 {
		st.recheck = w.stamp(now.Add(settleV1))
		w.rechecks[cg] = true
	}
}

// recheckBudget bounds the time one loop turn spends on due v1 rechecks
// before it looks at the kernel's events again: a v1 OOM at a cgroup with
// 2,000 descendants makes 2,001 of them due at once, each a file read or
// more, 30 ms in one turn on the 6.18 host. The rest wait for the next turn,
// which comes at once (see nextTimeout).
const recheckBudget = 5 * time.Millisecond

// recheckDue re-reads the counters of v1 cgroups whose settle time passed,
// for at most recheckBudget.
func (w *Watchdog) recheckDue(now time.Time) {
	w.rechecksLeft = false
	if len(w.rechecks) == 0 {
		return
	}
	start := time.Now()
	var suspects []string
	for cg := range w.rechecks {
		if time.Since(start) > recheckBudget {
			w.rechecksLeft = true
			break
		}
		st := w.cgroups[cg]
		if st == nil {
			delete(w.rechecks, cg)
			continue
		}
		if w.stamp(now) < st.recheck {
			continue
		}
		delete(w.rechecks, cg)
		st.recheck = 0
		stalled := st.stalled
		if w.observe(now, cg, 0) || stalled {
			suspects = append(suspects, cg)
		}
	}
	w.suspectAll(now, suspects)
}

// followEvery and followFor: after a kill-less OOM on cgroup v2, the
// watchdog reads memory.events itself every followEvery for followFor
// instead of waiting for the kernel's next notification. cgroup_file_notify()
// sends at most one notification per 10 ms (HZ/100, 12 ms at HZ=250), while a
// loop's OOMs can come faster than that: the evidence is then
// complete at the OOM that completes it, not at the next 10 ms mark. Only
// while kill-less OOMs are under way and below the detector's count: no
// wake-up on an idle host, none once the kernel kills or an incident opens.
// (v1's eventfd is signalled at every OOM: nothing to gain there.)
const (
	followEvery = time.Millisecond
	followFor   = 50 * time.Millisecond // Config.FollowFor's default
)

// follow starts or stops following cg after an observation (see followEvery).
func (w *Watchdog) follow(now time.Time, cg string, a Assessment) {
	if a.Signal != Quiet || a.OOMs == 0 || a.Kills > 0 {
		delete(w.follows, cg)
		return
	}
	if _, ok := w.follows[cg]; !ok {
		w.follows[cg] = w.stamp(now.Add(cmp.Or(w.cfg.FollowFor, followFor)))
	}
}

// followDue reads the counters of the cgroups being followed, at most every
// followEvery however often the loop wakes up.
func (w *Watchdog) followDue(now time.Time) {
	if len(w.follows) == 0 || w.since(now, w.lastFollow) < followEvery {
		return
	}
	w.lastFollow = w.stamp(now)
	var suspects []string
	for cg, until := range w.follows {
		if w.stamp(now) > until || w.ancestorOpen(cg) {
			delete(w.follows, cg)
			continue
		}
		if w.observe(now, cg, 0) {
			suspects = append(suspects, cg)
		}
	}
	w.suspectAll(now, suspects)
}

// limitUsage reads the limit and usage an incident reports, read once per
// incident (0 for what cannot be read); err is the first read's error.
func (w *Watchdog) limitUsage(cg string) (lim, use uint64, err error) {
	lim, lerr := w.cfg.CG.Limit(cg)
	use, uerr := w.cfg.CG.Usage(cg)
	return lim, use, cmp.Or(lerr, uerr)
}

// openIncident opens the incident; lim and use are the cgroup's limit and
// usage (limitUsage), inspection is how long reading cands took.
func (w *Watchdog) openIncident(now time.Time, cg string, st *cgroupState, a Assessment, v Verdict, cands []Candidate, lim, use uint64, inspection time.Duration) {
	names := cgnames.Parse(cg)
	inc := &Incident{
		ID: newID(), Verdict: v, Cgroup: cg, Container: names.Container, Unit: names.Unit, Version: w.cfg.CG.Version, Started: now,
		Evidence:   Evidence{Window: w.cfg.Detector.Window, OOMs: a.OOMs, Kills: a.Kills},
		Candidates: cands, Origin: LargestOrigin(cands),
	}
	inc.Evidence.Limit, inc.Evidence.Usage = lim, use
	st.inc = inc
	w.opened[cg] = st
	st.lastOOM = w.stamp(now)
	w.open.Add(1)
	w.incidents.Add(1)
	det := time.Duration(0)
	if st.episode != 0 {
		det = w.since(now, st.episode)
	}
	inc.Evidence.Detection = det
	// The handler first: while the kernel loops every millisecond counts,
	// and the log line can wait for it.
	t0 := time.Now()
	w.h.Open(inc)
	handlerTook := time.Since(t0)
	ev := w.log.Warn().Str("event", "incident").Str("incident", inc.ID).Str("verdict", string(v)).Str("cgroup", cg).
		Str("container", inc.Container).Str("unit", inc.Unit).
		Uint64("oom_events", a.OOMs).Uint64("oom_kills", a.Kills).Dur("window", w.cfg.Detector.Window).
		Int("tasks", len(cands)).
		// detection: first OOM notification of the episode → the batch
		// that found the loop; inspection: reading its tasks; handler:
		// handing the incident over (the policy starts its ladder).
		Dur("detection", det).Dur("inspection", inspection).Dur("handler", handlerTook).Dur("verdict_to_handler", t0.Sub(now))
	if inc.Origin != nil {
		ev = ev.Int("origin_pid", inc.Origin.PID).Str("origin_comm", procfs.Safe(inc.Origin.Comm)).Int("origin_parent_pid", inc.Origin.ParentPID)
	}
	ev.Msg(verdictMessage(v))
}

func verdictMessage(v Verdict) string {
	switch v {
	case VerdictLoop:
		return "OOM loop: repeated OOMs, no kill, every task unkillable"
	case VerdictStalled:
		return "OOM stalled: repeated OOMs without a kill although killable tasks exist"
	case VerdictPaused:
		return "OOM paused: oom_kill_disable=1 and under_oom, the kernel waits for a userspace handler"
	case VerdictForced:
		return "OOM forced charge: kill-less OOMs and usage above the limit (kernel 4.19-5.15 charges over the limit instead of looping)"
	}
	return string(v)
}

// resolveQuiet closes incidents whose cgroup has seen no OOM for ResolveAfter.
func (w *Watchdog) resolveQuiet(now time.Time) {
	if w.open.Load() == 0 {
		return
	}
	for cg, st := range w.opened {
		if st.inc.Verdict == VerdictPaused {
			if oc, err := w.cfg.CG.OOMControl(cg); err == nil && !oc.UnderOOM {
				st.paused = false
				w.closeIncident(st, "no longer under_oom")
			}
			continue
		}
		if w.since(now, st.lastOOM) >= w.cfg.ResolveAfter {
			w.closeIncident(st, fmt.Sprintf("no OOM for %v", w.cfg.ResolveAfter))
		}
	}
}

func (w *Watchdog) closeIncident(st *cgroupState, why string) {
	inc := st.inc
	st.inc = nil
	delete(w.opened, inc.Cgroup)
	w.open.Add(-1)
	w.log.Info().Str("event", "resolved").Str("incident", inc.ID).Str("cgroup", inc.Cgroup).Str("why", why).Msg("incident resolved")
	w.h.Resolved(inc, why)
}

// newID returns a random incident id. Not crypto/rand: its getrandom(2)
// blocks until the kernel's CRNG is ready, and early in boot that stalled
// the event loop for seconds while a loop ran unchecked (seen in the VM on
// 6.1 and 6.12). math/rand/v2 is seeded from AT_RANDOM and never blocks.
func newID() string {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], rand.Uint64())
	return hex.EncodeToString(b[:])
}
