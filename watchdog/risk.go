package watchdog

import (
	"context"
	"errors"
	"sort"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/oomwatch/oomwatch/internal/cgnames"
	"github.com/oomwatch/oomwatch/internal/cgroupfs"
	"github.com/oomwatch/oomwatch/internal/procfs"
)

// Risk is a watched cgroup where the next OOM would loop: it has a memory
// limit and every task in its subtree is unkillable (the rule of Classify
// and Scan), so the kernel could kill nothing.
type Risk struct {
	Cgroup    string    `json:"cgroup"`
	Container string    `json:"container,omitempty"`
	Unit      string    `json:"unit,omitempty"`
	Since     time.Time `json:"since"` // the sweep that first found it
	Limit     uint64    `json:"limit_bytes"`
	Usage     uint64    `json:"usage_bytes"` // at the last sweep
	Tasks     int       `json:"tasks"`
	Origin    *Origin   `json:"origin,omitempty"` // of the largest unkillable task
}

// RiskEvents is told when a cgroup becomes at risk and when it stops
// being so (alerts). Calls come from the sweep and must return quickly.
type RiskEvents interface {
	RiskFound(r Risk)
	RiskGone(r Risk, why string)
}

// Lister lists the watched cgroups (the Watchdog).
type Lister interface {
	Watched(ctx context.Context) ([]Watched, error)
}

// DefaultRiskEvery is how often the daemon re-checks the would-loop risk.
const DefaultRiskEvery = time.Minute

// DefaultRiskChecks bounds the cgroups whose tasks one sweep reads; the
// next sweep goes on where it stopped.
const DefaultRiskChecks = 2048

// RiskHintDelay is how long after a hint (Hint) the hinted cgroups are
// checked: the killed task has gone, the new cgroup's first tasks have
// moved in, and a burst of hints costs one check.
const RiskHintDelay = 2 * time.Second

// maxHints bounds the cgroups one early check reads; hints beyond it wait
// for the next sweep.
const maxHints = 256

// maxRiskLogs bounds the risk lines one sweep logs: a tenant who makes a
// thousand cgroups risky at once gets a count, not a thousand lines.
const maxRiskLogs = 16

// RiskMonitor keeps the daemon's would-loop finding current. It runs beside
// the event loop, never in it: one sweep every Every over the watched
// cgroups that have a limit, reading the tasks of at most MaxChecks of them
// (in path order, resuming where the last sweep stopped), and nothing
// between sweeps: no wake-up on an idle host except the sweep's timer.
// Hint brings the check of one cgroup forward when the event loop sees its
// risk may have changed.
type RiskMonitor struct {
	List      Lister
	Insp      Inspector
	Every     time.Duration // <= 0: DefaultRiskEvery
	MaxChecks int           // <= 0: DefaultRiskChecks
	Events    RiskEvents    // nil: none
	Log       zerolog.Logger

	mu     sync.Mutex
	atRisk map[string]Risk
	swept  time.Time // end of the last sweep
	next   string    // the path the next sweep starts at (MaxChecks reached)
	hinted map[string]bool
	hint   chan struct{}
}

// Hint asks for an early check of cg, RiskHintDelay from now: an OOM killed
// a task in it (what is left may all be unkillable), or it is new. It
// never blocks (the event loop calls it); hints beyond maxHints before the
// check are left to the next sweep.
func (m *RiskMonitor) Hint(cg string) {
	m.mu.Lock()
	if m.hinted == nil {
		m.hinted = map[string]bool{}
	}
	if len(m.hinted) < maxHints {
		m.hinted[cg] = true
	}
	c := m.hintC()
	m.mu.Unlock()
	select {
	case c <- struct{}{}:
	default:
	}
}

// hintC is the channel Hint wakes Run on; under m.mu.
func (m *RiskMonitor) hintC() chan struct{} {
	if m.hint == nil {
		m.hint = make(chan struct{}, 1)
	}
	return m.hint
}

// Run sweeps until ctx is done, the first time right away.
func (m *RiskMonitor) Run(ctx context.Context) {
	every := m.Every
	if every <= 0 {
		every = DefaultRiskEvery
	}
	m.mu.Lock()
	hint := m.hintC()
	m.mu.Unlock()
	t := time.NewTimer(0)
	defer t.Stop()
	early := time.NewTimer(RiskHintDelay)
	early.Stop()
	defer early.Stop()
	pending := false // early is running
	first := true    // the sweep at start, part of the start-up
	for {
		select {
		case <-ctx.Done():
			return
		case <-hint:
			if !pending {
				early.Reset(RiskHintDelay)
				pending = true
			}
			continue
		case <-early.C:
			pending = false
			m.checkHinted(ctx)
			continue
		case <-t.C:
		}
		if err := m.Sweep(ctx); err != nil && ctx.Err() == nil && !errors.Is(err, ErrNotRunning) {
			m.Log.Warn().Err(err).Msg("would-loop risk check failed")
		}
		if first {
			// The first sweep runs right after ready, after the start-up
			// walk's garbage went back to the kernel: its own (the
			// watched list, task reads; 4 MiB at 10,000 cgroups) would
			// otherwise stay resident until the runtime's next forced GC.
			first = false
			startupDone()
		}
		t.Reset(every)
	}
}

// checkHinted checks the hinted cgroups, and only them.
func (m *RiskMonitor) checkHinted(ctx context.Context) {
	m.mu.Lock()
	cgs := make([]string, 0, len(m.hinted))
	for cg := range m.hinted {
		cgs = append(cgs, cg)
	}
	m.hinted = nil
	m.mu.Unlock()
	sort.Strings(cgs)
	found := map[string]Risk{}
	checked := map[string]bool{}
	for _, cg := range cgs {
		if ctx.Err() != nil {
			return
		}
		if cg == "/" {
			continue
		}
		checked[cg] = true
		if r, risky, _ := m.check(cg); risky {
			found[cg] = r
		}
	}
	m.merge(found, checked, nil)
}

// check reads cg's limit and, when it has one, its tasks: whether it is at
// risk, and whether it has a limit (the checks MaxChecks bounds).
func (m *RiskMonitor) check(cg string) (r Risk, risky, limited bool) {
	lim, err := m.Insp.CG.Limit(cg)
	if err != nil || lim == cgroupfs.Unlimited {
		return Risk{}, false, false // gone, or no limit: no risk
	}
	cands, err := m.Insp.Candidates(cg)
	if err != nil || len(cands) == 0 || Classify(cands) != VerdictLoop {
		return Risk{}, false, true
	}
	names := cgnames.Parse(cg)
	use, _ := m.Insp.CG.Usage(cg)
	return Risk{Cgroup: cg, Container: names.Container, Unit: names.Unit,
		Limit: lim, Usage: use, Tasks: len(cands), Origin: LargestOrigin(cands)}, true, true
}

// Sweep checks the watched cgroups once.
func (m *RiskMonitor) Sweep(ctx context.Context) error {
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	list, err := m.List.Watched(lctx)
	cancel()
	if err != nil {
		return err
	}
	max := m.MaxChecks
	if max <= 0 {
		max = DefaultRiskChecks
	}
	m.mu.Lock()
	start := m.next
	m.mu.Unlock()
	// Rotate the sorted list so the sweep starts where the last one stopped.
	i := sort.Search(len(list), func(i int) bool { return list[i].Cgroup >= start })
	order := append(list[i:len(list):len(list)], list[:i]...)

	found := map[string]Risk{}
	checked := map[string]bool{}
	next := ""
	checks := 0
	for _, c := range order {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if c.Cgroup == "/" || c.NoMemory {
			checked[c.Cgroup] = true
			continue
		}
		if checks >= max {
			next = c.Cgroup
			break
		}
		r, risky, limited := m.check(c.Cgroup)
		checked[c.Cgroup] = true
		if limited {
			checks++
		}
		if risky {
			found[c.Cgroup] = r
		}
	}
	watched := make(map[string]bool, len(list))
	for _, c := range list {
		watched[c.Cgroup] = true
	}
	m.merge(found, checked, watched)
	m.mu.Lock()
	m.next, m.swept = next, time.Now()
	m.mu.Unlock()
	return nil
}

// merge updates the cgroups at risk from a check: found are those found at
// risk among checked; watched, unless nil (an early check), lists every
// watched cgroup, and risks outside it are gone. It logs and tells Events.
func (m *RiskMonitor) merge(found map[string]Risk, checked, watched map[string]bool) {
	now := time.Now()
	var newly, gone []Risk
	var goneWhy []string
	m.mu.Lock()
	if m.atRisk == nil {
		m.atRisk = map[string]Risk{}
	}
	for cg, r := range m.atRisk {
		switch {
		case watched != nil && !watched[cg]:
			delete(m.atRisk, cg)
			gone, goneWhy = append(gone, r), append(goneWhy, "no longer watched")
		case checked[cg] && found[cg].Cgroup == "":
			delete(m.atRisk, cg)
			gone, goneWhy = append(gone, r), append(goneWhy, "a killable task, no limit, or no task")
		}
	}
	for cg, r := range found {
		if old, ok := m.atRisk[cg]; ok {
			r.Since = old.Since
		} else {
			r.Since = now
			newly = append(newly, r)
		}
		m.atRisk[cg] = r
	}
	total := len(m.atRisk)
	m.mu.Unlock()

	sort.Slice(newly, func(i, j int) bool { return newly[i].Cgroup < newly[j].Cgroup })
	for i, r := range newly {
		if i < maxRiskLogs {
			ev := m.Log.Warn().Str("event", "risk").Str("cgroup", r.Cgroup).Str("container", r.Container).Str("unit", r.Unit).
				Uint64("limit", r.Limit).Uint64("usage", r.Usage).Int("tasks", r.Tasks)
			if r.Origin != nil {
				ev = ev.Int("origin_pid", r.Origin.PID).Str("origin_comm", procfs.Safe(r.Origin.Comm))
			}
			ev.Msg("every task is unkillable: the next OOM here would loop")
		}
		if m.Events != nil {
			m.Events.RiskFound(r)
		}
	}
	if n := len(newly) - maxRiskLogs; n > 0 {
		m.Log.Warn().Str("event", "risk").Int("more", n).Int("at_risk", total).Msg("more cgroups where the next OOM would loop (oomwatch status --at-risk lists them)")
	}
	for i, r := range gone {
		if i < maxRiskLogs {
			m.Log.Info().Str("event", "risk_gone").Str("cgroup", r.Cgroup).Str("container", r.Container).Str("why", goneWhy[i]).Msg("no longer at risk of an OOM loop")
		}
		if m.Events != nil {
			m.Events.RiskGone(r, goneWhy[i])
		}
	}
}

// AtRisk returns the cgroups at risk, sorted by path.
func (m *RiskMonitor) AtRisk() []Risk {
	m.mu.Lock()
	out := make([]Risk, 0, len(m.atRisk))
	for _, r := range m.atRisk {
		out = append(out, r)
	}
	m.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Cgroup < out[j].Cgroup })
	return out
}

// Swept is when the last sweep ended (zero before the first).
func (m *RiskMonitor) Swept() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.swept
}
