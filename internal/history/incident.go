package history

import (
	"time"

	"github.com/oomwatch/oomwatch/watchdog"
)

// MaxCandidates is how many candidates (largest first) an opened record keeps.
const MaxCandidates = 5

// Names are what the daemon knows about an incident's cgroup beyond its path.
type Names struct {
	Container, Unit, Rule string
}

// Opened is the record of a newly opened incident. kernelLog is the kmsg
// evidence at that moment (may be nil).
func Opened(inc *watchdog.Incident, n Names, kernelLog []string) Record {
	r := Record{
		Type: TypeOpened, Time: time.Now(), ID: inc.ID, Verdict: string(inc.Verdict), Cgroup: inc.Cgroup,
		Container: n.Container, Unit: n.Unit, Rule: n.Rule, Started: inc.Started,
		WindowMS:  inc.Evidence.Window.Milliseconds(),
		OOMEvents: inc.Evidence.OOMs, OOMKills: inc.Evidence.Kills,
		Limit: inc.Evidence.Limit, Usage: inc.Evidence.Usage, KernelLog: kernelLog,
	}
	if o := inc.Origin; o != nil {
		r.Origin = &Origin{PID: o.PID, Comm: o.Comm, ParentPID: o.ParentPID, ParentComm: o.ParentComm}
	}
	for i, c := range inc.Candidates { // sorted by RSS, largest first
		if i == MaxCandidates {
			break
		}
		r.Candidates = append(r.Candidates, Candidate{PID: c.PID, Comm: c.Comm, Adj: c.OOMScoreAdj, RSS: c.RSS})
	}
	return r
}

// Actions is the record of a finished ladder. outcome "" is computed with
// Outcome.
func Actions(inc *watchdog.Incident, acts []Action, outcome string) Record {
	if outcome == "" {
		outcome = Outcome(acts)
	}
	return Record{Type: TypeActions, Time: time.Now(), ID: inc.ID, Cgroup: inc.Cgroup, Started: inc.Started, Actions: acts, Outcome: outcome}
}

// Resolved is the record of an incident's end.
func Resolved(inc *watchdog.Incident, why string, kernelLog []string) Record {
	return Record{Type: TypeResolved, Time: time.Now(), ID: inc.ID, Cgroup: inc.Cgroup, Started: inc.Started, Why: why, KernelLog: kernelLog}
}

// Start is the record of a daemon start.
func Start(version string, pid int) Record {
	return Record{Type: TypeStart, Time: time.Now(), Version: version, PID: pid}
}

// Outcome names how a ladder ended from its results, as the daemon's
// ladder_done log event does: dry-run (nothing done, no error), contained
// (the last verified rung froze the cgroup), resolved (the last rung
// verified), none (no action), else unresolved.
func Outcome(acts []Action) string {
	if len(acts) == 0 {
		return "none"
	}
	dry := true
	for _, a := range acts {
		if a.Done || a.Error != "" {
			dry = false
		}
	}
	last := acts[len(acts)-1]
	switch {
	case dry:
		return "dry-run"
	case last.Verified && last.Action == "freeze":
		return "contained"
	case last.Verified:
		return "resolved"
	}
	return "unresolved"
}
