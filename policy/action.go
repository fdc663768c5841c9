package policy

import (
	"strconv"
	"time"

	"github.com/oomwatch/oomwatch/watchdog"
)

// Action is one action of the ladder as it ran: what every report of an
// incident (alerts, the journal, status, metrics) carries. Its JSON names
// are those of the alert documents' and the journal's "actions".
type Action struct {
	Name     string `json:"action"` // the rung: reset-adj, raise-limit, freeze, kill
	PID      int    `json:"pid,omitempty"`
	Comm     string `json:"comm,omitempty"`
	Done     bool   `json:"done"`     // the action was carried out (false in dry-run)
	Verified bool   `json:"verified"` // the loop stopped / the cgroup froze afterwards
	Detail   string `json:"detail,omitempty"`
	Error    string `json:"error,omitempty"`
	Took     Millis `json:"took_ms,omitempty"`
	// Pending marks the announcement of an action about to change the
	// host (the journal's write-ahead entry); its result follows.
	Pending bool `json:"pending,omitempty"`

	limited bool // refused by the rate limit: nothing was done
}

// Millis is a duration serialized as whole milliseconds.
type Millis time.Duration

// MarshalJSON writes d in milliseconds.
func (d Millis) MarshalJSON() ([]byte, error) {
	return strconv.AppendInt(nil, time.Duration(d).Milliseconds(), 10), nil
}

// UnmarshalJSON reads milliseconds.
func (d *Millis) UnmarshalJSON(b []byte) error {
	ms, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return err
	}
	*d = Millis(time.Duration(ms) * time.Millisecond)
	return nil
}

// Outcome is how a ladder ended.
type Outcome string

// Outcomes.
const (
	OutcomeResolved    Outcome = "resolved"     // the last action ended the loop
	OutcomeContained   Outcome = "contained"    // the last action froze the cgroup
	OutcomeDryRun      Outcome = "dry-run"      // nothing was changed
	OutcomeExhausted   Outcome = "exhausted"    // every rung ran and the loop goes on
	OutcomeAborted     Outcome = "aborted"      // the ladder stopped before it was verified (oomwatch stopping)
	OutcomeRateLimited Outcome = "rate-limited" // the incident ended, or oomwatch stopped, while an action waited for the rate limit
)

// Remediated says whether the ladder ended the loop or contained it.
func (o Outcome) Remediated() bool { return o == OutcomeResolved || o == OutcomeContained }

// outcome names how a ladder that stopped early (its last rung verified,
// or oomwatch stopping) ended.
func outcome(rs []Action, dryRun bool) Outcome {
	switch {
	case dryRun:
		return OutcomeDryRun
	case len(rs) > 0 && rs[len(rs)-1].Name == Freeze && rs[len(rs)-1].Verified:
		return OutcomeContained
	case len(rs) > 0 && rs[len(rs)-1].Verified:
		return OutcomeResolved
	}
	return OutcomeAborted
}

// Reporter receives every step of every incident, in lifecycle order:
// Opened, then (for a ladder) each Action as it is announced and as it
// ends and one LadderDone, then Resolved. Steps of one incident never
// overlap or reorder; steps of different incidents may interleave. Calls
// come from the watchdog's event loop (Opened, and Resolved of an incident
// without a ladder) or a ladder's goroutine and must return quickly; an
// Action with Pending set may wait briefly (a write-ahead journal entry).
type Reporter interface {
	Opened(inc *watchdog.Incident, rule string)
	Action(inc *watchdog.Incident, a Action)
	LadderDone(inc *watchdog.Incident, acts []Action, out Outcome)
	Resolved(inc *watchdog.Incident, why string)
}
