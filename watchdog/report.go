package watchdog

import (
	"context"
	"sort"
	"time"

	"github.com/oomwatch/oomwatch/internal/cgnames"
	"github.com/oomwatch/oomwatch/internal/cgroupfs"
)

// CgroupStatus is one watched cgroup as `oomwatch status` lists it.
type CgroupStatus struct {
	Cgroup    string `json:"cgroup"`
	Container string `json:"container,omitempty"`
	// ContainerName: the open incident's Incident.ContainerName (the
	// runtime's state is read when an incident opens, not for a listing)
	ContainerName string    `json:"container_name,omitempty"`
	Unit          string    `json:"unit,omitempty"`
	Limit         uint64    `json:"limit_bytes"` // cgroupfs.Unlimited: none
	Usage         uint64    `json:"usage_bytes"`
	OOMs          uint64    `json:"oom_events"`
	Kills         uint64    `json:"oom_kills"`
	Incident      string    `json:"incident,omitempty"`
	Verdict       Verdict   `json:"verdict,omitempty"`
	Since         time.Time `json:"since,omitzero"`
	Frozen        bool      `json:"frozen,omitempty"`
	Raised        bool      `json:"limit_raised,omitempty"` // raise-limit holds it above its original
	WouldLoop     bool      `json:"would_loop,omitempty"`   // at the risk monitor's last look
	NoMemory      bool      `json:"memory_not_enabled,omitempty"`
}

// CgroupSummary counts what the whole watched set holds; the listing
// shows at most Filter.Max of it.
type CgroupSummary struct {
	Watched   int       `json:"watched"`
	Open      int       `json:"open_incidents"`
	AtRisk    int       `json:"would_loop"`
	NoMemory  int       `json:"memory_not_enabled,omitempty"`
	Matched   int       `json:"matched"` // by the filter
	Shown     int       `json:"shown"`
	RiskSwept time.Time `json:"risk_checked,omitzero"` // the risk monitor's last sweep
}

// StatusFilter selects the cgroups listed.
type StatusFilter struct {
	Match  func(cg string) bool // nil: every cgroup
	AtRisk bool                 // only cgroups at risk or with an open incident
	Max    int                  // <= 0: DefaultStatusRows
}

// DefaultStatusRows bounds the listing when the filter says nothing.
const DefaultStatusRows = 50

// Raised tells which cgroups raise-limit holds above their limit (the
// policy).
type Raised interface{ Raised(cg string) bool }

// StatusReport lists the watched cgroups for `oomwatch status`: open
// incidents first, then cgroups at risk, then the rest by path, at most
// f.Max of them. Only the listed cgroups' files are read (limit, usage,
// freezer), so its cost is the rows shown, not the cgroups watched.
// risk and raised may be nil.
func StatusReport(ctx context.Context, l Lister, cg cgroupfs.Hierarchy, risk *RiskMonitor, raised Raised, f StatusFilter) (CgroupSummary, []CgroupStatus, error) {
	list, err := l.Watched(ctx)
	if err != nil {
		return CgroupSummary{}, nil, err
	}
	atRisk := map[string]bool{}
	var sum CgroupSummary
	if risk != nil {
		for _, r := range risk.AtRisk() {
			atRisk[r.Cgroup] = true
		}
		sum.RiskSwept = risk.Swept()
	}
	max := f.Max
	if max <= 0 {
		max = DefaultStatusRows
	}
	sum.Watched = len(list)
	var sel []Watched
	for _, c := range list {
		if c.Incident != "" {
			sum.Open++
		}
		if atRisk[c.Cgroup] {
			sum.AtRisk++
		}
		if c.NoMemory {
			sum.NoMemory++
		}
		if f.Match != nil && !f.Match(c.Cgroup) {
			continue
		}
		if f.AtRisk && c.Incident == "" && !atRisk[c.Cgroup] {
			continue
		}
		sel = append(sel, c)
	}
	sum.Matched = len(sel)
	rank := func(c Watched) int {
		switch {
		case c.Incident != "":
			return 0
		case atRisk[c.Cgroup]:
			return 1
		}
		return 2
	}
	sort.SliceStable(sel, func(i, j int) bool { return rank(sel[i]) < rank(sel[j]) })
	if len(sel) > max {
		sel = sel[:max]
	}
	sum.Shown = len(sel)
	rows := make([]CgroupStatus, 0, len(sel))
	for _, c := range sel {
		names := cgnames.Parse(c.Cgroup)
		r := CgroupStatus{Cgroup: c.Cgroup, Container: names.Container, ContainerName: c.ContainerName, Unit: names.Unit, Limit: cgroupfs.Unlimited,
			OOMs: c.OOMs, Kills: c.Kills, Incident: c.Incident, Verdict: c.Verdict, Since: c.Since,
			WouldLoop: atRisk[c.Cgroup], NoMemory: c.NoMemory}
		if lim, err := cg.Limit(c.Cgroup); err == nil {
			r.Limit = lim
		}
		r.Usage, _ = cg.Usage(c.Cgroup)
		if c.Cgroup != "/" && cg.FreezeSupported(c.Cgroup) == nil {
			r.Frozen, _ = cg.Frozen(c.Cgroup)
		}
		if raised != nil {
			r.Raised = raised.Raised(c.Cgroup)
		}
		rows = append(rows, r)
	}
	return sum, rows, nil
}
