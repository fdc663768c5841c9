// Package watchdog turns kernel hints into incidents: it discovers every
// memory cgroup, arms one notification source per cgroup on one epoll loop
// (package eventfd), re-reads counters on every wake-up, feeds a pure
// Detector per cgroup, inspects the tasks of a suspected loop and hands the
// resulting Incident to a Handler. Data flows one way; the watchdog never
// acts on the host itself.
package watchdog

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
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

// Namer names a container the cgroup path knows only by its id, from the
// runtime's own state (ctrstate.Reader); "" when it cannot. It is asked
// once per incident, when the incident opens, never for an idle cgroup.
type Namer interface {
	Name(n cgnames.Names) string
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
	// Namer, if set, names the container of an incident's cgroup
	// (Incident.ContainerName).
	Namer Namer
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
	// FollowFor is how long the counters of a cgroup with kill-less OOMs,
	// or of one whose unkillable tasks hit its limit, are read every
	// millisecond (v2, see followEvery and watchLimit); 0 means 50 ms and
	// 15 ms.
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
	max      uint64    // v2: last memory.events max (the limit hit, reclaim run)
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
	cfg        Config
	h          Handler
	log        zerolog.Logger
	poller     *eventfd.Poller
	insp       Inspector
	cgroups    map[string]*cgroupState
	t0         time.Time       // stamps count from here
	full       bool            // MaxCgroups reached, warned once
	pollWarned bool            // a memory.events could not be polled, warned once
	perTop     map[string]int  // watched cgroups per subtree (capKey)
	capped     map[string]bool // subtrees warned about
	armErrors  int
	fresh      bool // arming cgroups created after start-up (v2: zero baseline)

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
	rechecksLeft      bool                     // recheckDue stopped at its budget with due rechecks left
	follows           map[string]following     // v2: kill-less OOMs under way, or a limit hit by unkillable tasks (see followEvery)
	limitHits         map[string]limitHit      // v2: whose tasks were read at a limit hit (see watchLimit)
	pre               map[string]preInspection // tasks read at a limit holder's first kill-less OOM (see preInspect)
	rescan            []string                 // after an inotify overflow: the directories still to visit (see rescanStep)
	rescanned         int                      // directories the rescan under way has visited
	lastFollow        stamp                    // when followDue last read them
	pending           []string                 // v2 cgroups armed at start-up whose baseline is not read yet

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
		insp:      Inspector{CG: cfg.CG, Proc: cfg.Proc, MaxProcs: cfg.MaxProcs, MaxCgroups: inspectCgroups},
		cgroups:   make(map[string]*cgroupState),
		perTop:    make(map[string]int),
		kids:      make(map[string][]string),
		opened:    make(map[string]*cgroupState),
		rechecks:  make(map[string]bool),
		follows:   make(map[string]following),
		limitHits: make(map[string]limitHit),
		pre:       make(map[string]preInspection),
		capped:    make(map[string]bool),
		listReqs:  make(chan chan []Watched, 16),
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
	if len(w.rescan) > 0 {
		w.rescanStep()
	}
	if len(w.pending) > 0 {
		w.readBaselines(now)
		if len(w.pending) == 0 {
			w.log.Debug().Str("event", "baselines_read").Dur("since_start", time.Since(start)).Msg("OOM counters of every cgroup read")
			go startupDone() // off the loop, which is handling events by now
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
// that follows an inotify queue overflow); once the loop handles events it
// runs on a goroutine of its own, since at tens of thousands of cgroups it
// takes longer than a loop turn may.
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
	if w.rechecksLeft || len(w.rescan) > 0 {
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

// baselineBatch is how many deferred baselines one loop turn reads before it
// looks at the kernel's events again.
const baselineBatch = 256

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

// recheckBudget bounds the time one loop turn spends on due v1 rechecks
// before it looks at the kernel's events again: a v1 OOM at a cgroup with
// 2,000 descendants makes 2,001 of them due at once, each a file read or
// more, 30 ms in one turn on the 6.18 host. The rest wait for the next turn,
// which comes at once (see nextTimeout).
const recheckBudget = 5 * time.Millisecond

// rescanBudget and rescanMin bound one loop turn's slice of a rescan (see
// rescanStep).
const (
	rescanBudget = 2 * time.Millisecond
	rescanMin    = 16
)

// followEvery and followFor: after a kill-less OOM on cgroup v2, the
// watchdog reads memory.events itself every followEvery for followFor
// instead of waiting for the kernel's next notification. cgroup_file_notify()
// sends at most one notification per 10 ms (HZ/100, 12 ms at HZ=250), while a
// loop's OOMs can come faster than that: the evidence is then
// complete at the OOM that completes it, not at the next 10 ms mark. Only
// while kill-less OOMs are under way and below the detector's count: no
// wake-up on an idle host, none once the kernel kills or an incident opens.
// (v1's eventfd is signalled at every OOM: nothing to gain there.)
//
// limitFollowFor, limitCheckEvery, maxLimitHits, maxFollows: see watchLimit.
// A limit watch covers one held-back notification (12 ms at HZ=250).
const (
	followEvery     = time.Millisecond
	followFor       = 50 * time.Millisecond // Config.FollowFor's default
	limitFollowFor  = 15 * time.Millisecond
	limitCheckEvery = 10 * time.Second
	maxLimitHits    = 256
	maxFollows      = 64
)
