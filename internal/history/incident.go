package history

import (
	"time"

	"github.com/oomwatch/oomwatch/policy"
	"github.com/oomwatch/oomwatch/watchdog"
)

// MaxCandidates is how many candidates (largest first) an opened record keeps.
const MaxCandidates = 5

// Names are what the daemon knows about an incident's cgroup beyond its path.
type Names struct {
	Container, ContainerName, Unit, Rule string
}

// Opened is the record of a newly opened incident. kernelLog is the kmsg
// evidence at that moment (may be nil).
func Opened(inc *watchdog.Incident, n Names, kernelLog []string) Record {
	r := Record{
		Type: TypeOpened, Time: time.Now(), ID: inc.ID, Verdict: string(inc.Verdict), Cgroup: inc.Cgroup,
		Container: n.Container, ContainerName: n.ContainerName, Unit: n.Unit, Rule: n.Rule, Started: inc.Started,
		WindowMS:  inc.Evidence.Window.Milliseconds(),
		OOMEvents: inc.Evidence.OOMs, OOMKills: inc.Evidence.Kills,
		Limit: inc.Evidence.Limit, Usage: inc.Evidence.Usage, KernelLog: kernelLog,
		Origin: inc.Origin,
	}
	for i, c := range inc.Candidates { // sorted by RSS, largest first
		if i == MaxCandidates {
			break
		}
		c.Origin = nil // the incident's origin is recorded once
		r.Candidates = append(r.Candidates, c)
	}
	return r
}

// Step is the record of one action of a ladder: its announcement before
// it changes the host (a.Pending), or its result.
func Step(inc *watchdog.Incident, a policy.Action) Record {
	return Record{Type: TypeActions, Time: time.Now(), ID: inc.ID, Cgroup: inc.Cgroup, Started: inc.Started, Actions: []policy.Action{a}}
}

// LadderDone is the record of a ladder's end: how it ended (its actions
// have their own records).
func LadderDone(inc *watchdog.Incident, out policy.Outcome) Record {
	return Record{Type: TypeActions, Time: time.Now(), ID: inc.ID, Cgroup: inc.Cgroup, Started: inc.Started, Outcome: out}
}

// Resolved is the record of an incident's end.
func Resolved(inc *watchdog.Incident, why string, kernelLog []string) Record {
	return Record{Type: TypeResolved, Time: time.Now(), ID: inc.ID, Cgroup: inc.Cgroup, Started: inc.Started, Why: why, KernelLog: kernelLog}
}

// Start is the record of a daemon start.
func Start(version string, pid int) Record {
	return Record{Type: TypeStart, Time: time.Now(), Version: version, PID: pid}
}
