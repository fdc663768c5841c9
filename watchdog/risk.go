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

// maxRiskLogs bounds the risk lines one sweep logs: a tenant who makes a
// thousand cgroups risky at once gets a count, not a thousand lines.
const maxRiskLogs = 16

// RiskMonitor keeps the daemon's would-loop finding current. It runs beside
// the event loop, never in it: one sweep every Every over the watched
// cgroups that have a limit, reading the tasks of at most MaxChecks of them
// (in path order, resuming where the last sweep stopped), and nothing
// between sweeps: no wake-up on an idle host except the sweep's timer.
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
}

// Run sweeps until ctx is done, the first time right away.
func (m *RiskMonitor) Run(ctx context.Context) {
	every := m.Every
	if every <= 0 {
		every = DefaultRiskEvery
	}
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := m.Sweep(ctx); err != nil && ctx.Err() == nil && !errors.Is(err, ErrNotRunning) {
			m.Log.Warn().Err(err).Msg("would-loop risk check failed")
		}
		t.Reset(every)
	}
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
		lim, err := m.Insp.CG.Limit(c.Cgroup)
		if err != nil || lim == cgroupfs.Unlimited {
			checked[c.Cgroup] = true // gone, or no limit: no risk
			continue
		}
		checks++
		cands, err := m.Insp.Candidates(c.Cgroup)
		checked[c.Cgroup] = true
		if err != nil || len(cands) == 0 || Classify(cands) != VerdictLoop {
			continue
		}
		names := cgnames.Parse(c.Cgroup)
		use, _ := m.Insp.CG.Usage(c.Cgroup)
		found[c.Cgroup] = Risk{Cgroup: c.Cgroup, Container: names.Container, Unit: names.Unit,
			Limit: lim, Usage: use, Tasks: len(cands), Origin: LargestOrigin(cands)}
	}
	watched := make(map[string]bool, len(list))
	for _, c := range list {
		watched[c.Cgroup] = true
	}
	now := time.Now()
	var newly, gone []Risk
	var goneWhy []string
	m.mu.Lock()
	if m.atRisk == nil {
		m.atRisk = map[string]Risk{}
	}
	for cg, r := range m.atRisk {
		switch {
		case !watched[cg]:
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
	m.next, m.swept = next, now
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
	return nil
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
