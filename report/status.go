package report

import (
	"context"

	"github.com/oomwatch/oomwatch/internal/cgroupfs"
	"github.com/oomwatch/oomwatch/internal/config"
	"github.com/oomwatch/oomwatch/internal/statusd"
	"github.com/oomwatch/oomwatch/watchdog"
)

// Status answers `oomwatch status`: the daemon's fixed facts (Base), the
// watchdog's counters, the alert queues, the open incidents and recent
// actions, and the watched cgroups a request selects.
type Status struct {
	Base     statusd.Status // version, pid, roots, ladder, journal, … (set once)
	Watchdog *watchdog.Watchdog
	CG       cgroupfs.Hierarchy
	Risk     *watchdog.RiskMonitor // nil: the risk check is off
	Raised   watchdog.Raised       // the policy
	Alerts   *Alerts
	Tracker  *statusd.Tracker
}

// Answer builds the answer to req; ctx bounds the cgroup listing.
func (s *Status) Answer(ctx context.Context, req statusd.Request) statusd.Status {
	st := s.Watchdog.Stats()
	out := s.Base
	out.Watched, out.OOMs, out.Kills, out.Incidents, out.LastEvent = st.Watched, st.OOMs, st.Kills, st.Incidents, st.LastEvent
	out.Alerts = nil
	for _, a := range s.Alerts.Stats() {
		out.Alerts = append(out.Alerts, statusd.SinkQueue{Name: a.Name, Kind: a.Kind, Queued: a.QueueDepth, Sent: a.Sent, Failed: a.Failed, Dropped: a.Dropped})
	}
	s.Tracker.Fill(&out)
	f := watchdog.StatusFilter{AtRisk: req.AtRisk, Max: req.Rows}
	if req.Cgroups != "" {
		m, err := config.Matcher(req.Cgroups)
		if err != nil {
			return out // the client checks the glob before it asks
		}
		f.Match = m
	}
	qctx, cancel := context.WithTimeout(ctx, statusd.DefaultTimeout/2)
	defer cancel()
	out.CgroupSummary, out.Cgroups, _ = watchdog.StatusReport(qctx, s.Watchdog, s.CG, s.Risk, s.Raised, f)
	return out
}
