package policy

import "github.com/oomwatch/oomwatch/watchdog"

// hooks is a Reporter for tests: each function, if set, gets its step.
type hooks struct {
	opened   func(inc *watchdog.Incident)
	action   func(inc *watchdog.Incident, a Action)
	done     func(inc *watchdog.Incident, acts []Action)
	resolved func(inc *watchdog.Incident, why string)
}

func (h hooks) Opened(inc *watchdog.Incident, _ string) {
	if h.opened != nil {
		h.opened(inc)
	}
}

func (h hooks) Action(inc *watchdog.Incident, a Action) {
	if h.action != nil && !a.Pending {
		h.action(inc, a)
	}
}

func (h hooks) LadderDone(inc *watchdog.Incident, acts []Action, _ Outcome) {
	if h.done != nil {
		h.done(inc, acts)
	}
}

func (h hooks) Resolved(inc *watchdog.Incident, why string) {
	if h.resolved != nil {
		h.resolved(inc, why)
	}
}
