// Package report tells everyone who follows an incident about each of its
// steps: the alert sinks, the incident journal, the status server and the
// metrics. Fanout is the policy's Reporter, so an incident flows one way:
// the watchdog opens it, the policy runs its ladder and reports each step,
// in lifecycle order, and Fanout hands every step to each of them. It also
// sends the risk monitor's findings to the sinks that asked for them.
package report

import (
	"sync/atomic"
	"time"

	"github.com/oomwatch/oomwatch/alert"
	"github.com/oomwatch/oomwatch/internal/history"
	"github.com/oomwatch/oomwatch/internal/metrics"
	"github.com/oomwatch/oomwatch/internal/statusd"
	"github.com/oomwatch/oomwatch/policy"
	"github.com/oomwatch/oomwatch/watchdog"
)

// Evidence finds the kernel's log lines about a cgroup since a time (the
// kmsg reader).
type Evidence interface {
	Evidence(cg string, since time.Time) []string
}

// Alerts holds the daemon's alert dispatcher: none until a config names a
// sink, then the same one across reloads (its spools and queues stay).
// The zero value has none.
type Alerts struct {
	d atomic.Pointer[alert.Dispatcher]
}

// Load returns the dispatcher, or nil.
func (a *Alerts) Load() *alert.Dispatcher { return a.d.Load() }

// Store sets the dispatcher.
func (a *Alerts) Store(d *alert.Dispatcher) { a.d.Store(d) }

// Stats are the sinks' delivery counters (none without a dispatcher).
func (a *Alerts) Stats() []alert.SinkStats {
	if d := a.d.Load(); d != nil {
		return d.Stats()
	}
	return nil
}

// send builds a document and sends it, only when there are sinks.
func (a *Alerts) send(doc func() alert.Document) {
	if d := a.d.Load(); d != nil {
		d.Send(doc())
	}
}

// writeAhead bounds how long the journal entry announcing a host change
// may hold the ladder: a SIGKILL right after the change still leaves it in
// the journal, and a slow disk costs the loop at most this.
const writeAhead = 500 * time.Millisecond

// Fanout reports every step of every incident to each of its receivers.
// Alerts and Status are required; Journal, Metrics and Kernel may be nil.
type Fanout struct {
	Host    string
	Alerts  *Alerts
	Status  *statusd.Tracker
	Journal *history.Async   // nil without a state directory
	Metrics *metrics.Metrics // nil: none
	Kernel  Evidence         // nil when /dev/kmsg cannot be read
}

var _ policy.Reporter = (*Fanout)(nil)

// Opened reports a new incident.
func (f *Fanout) Opened(inc *watchdog.Incident, rule string) {
	f.alert(alert.TypeDetected, inc, nil)
	f.Status.Opened(statusd.OpenIncident{ID: inc.ID, Cgroup: inc.Cgroup, Container: inc.Container, ContainerName: inc.ContainerName,
		Verdict: string(inc.Verdict), Since: inc.Started})
	if f.Metrics != nil {
		f.Metrics.IncidentOpened(inc)
	}
	if f.Journal != nil {
		// No kernel-log lookup here: draining a kmsg flood can take long,
		// and the write-ahead entry of the first action waits behind this
		// record. The resolved record carries the kernel's lines.
		rec := history.Opened(inc, history.Names{Container: inc.Container, ContainerName: inc.ContainerName, Unit: inc.Unit, Rule: rule}, nil)
		f.Journal.Append(func() history.Record { return rec })
	}
}

// Action reports one action: its announcement (a.Pending) goes to the
// journal before the host changes, its result everywhere.
func (f *Fanout) Action(inc *watchdog.Incident, a policy.Action) {
	if a.Pending {
		if f.Journal != nil {
			rec := history.Step(inc, a)
			f.Journal.AppendWait(func() history.Record { return rec }, writeAhead)
		}
		return
	}
	f.Status.Acted(statusd.Action{Time: time.Now(), Incident: inc.ID, Cgroup: inc.Cgroup,
		Container: inc.Container, ContainerName: inc.ContainerName, Action: a})
	if f.Journal != nil {
		rec := history.Step(inc, a)
		f.Journal.Append(func() history.Record { return rec })
	}
}

// LadderDone reports how the ladder ended, with every action it ran.
func (f *Fanout) LadderDone(inc *watchdog.Incident, acts []policy.Action, out policy.Outcome) {
	if f.Journal != nil {
		rec := history.LadderDone(inc, out)
		f.Journal.Append(func() history.Record { return rec })
	}
	if f.Metrics != nil {
		f.Metrics.LadderDone(inc, acts, out, time.Now())
	}
	f.alert(ladderType(out), inc, acts)
}

// ladderType is the alert document type of a ladder's end.
func ladderType(out policy.Outcome) string {
	switch {
	case out.Remediated():
		return alert.TypeRemediated
	case out == policy.OutcomeDryRun:
		return alert.TypeDetected // nothing was done
	}
	return alert.TypeRemediationFailed
}

// Resolved reports an incident's end, with the kernel's lines about it.
func (f *Fanout) Resolved(inc *watchdog.Incident, why string) {
	f.alert(alert.TypeResolved, inc, nil)
	f.Status.Resolved(inc.ID)
	if f.Metrics != nil {
		f.Metrics.IncidentResolved(inc)
	}
	if f.Journal != nil {
		rec, since := history.Resolved(inc, why, nil), inc.Started.Add(-2*inc.Evidence.Window)
		f.Journal.Append(func() history.Record {
			if f.Kernel != nil {
				rec.KernelLog = f.Kernel.Evidence(rec.Cgroup, since)
			}
			return rec
		})
	}
}

// RiskFound sends a firing risk document to the sinks that opted in.
func (f *Fanout) RiskFound(r watchdog.Risk) {
	f.Alerts.send(func() alert.Document { return alert.NewRiskDocument(r, false, f.Host, time.Now()) })
}

// RiskGone sends the risk's resolution.
func (f *Fanout) RiskGone(r watchdog.Risk, _ string) {
	f.Alerts.send(func() alert.Document { return alert.NewRiskDocument(r, true, f.Host, time.Now()) })
}

func (f *Fanout) alert(typ string, inc *watchdog.Incident, acts []policy.Action) {
	f.Alerts.send(func() alert.Document {
		return alert.NewDocument(typ, inc, alert.Names{Container: inc.Container, ContainerName: inc.ContainerName, Unit: inc.Unit}, acts, f.Host, time.Now())
	})
}
