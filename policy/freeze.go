package policy

import (
	"context"
	"time"

	"github.com/rs/zerolog"

	"github.com/oomwatch/oomwatch/watchdog"
)

// freeze stops the CPU burn and keeps the tasks for an operator. It is
// bounded: some tasks (v1 oom_kill_disable sleepers, kernel threads) never
// freeze.
func (p *Policy) freeze(_ context.Context, log zerolog.Logger, inc *watchdog.Incident, opts Options) ([]Action, bool) {
	start := time.Now()
	r := Action{Name: Freeze}
	if err := p.cg.FreezeSupported(inc.Cgroup); err != nil {
		r.Error = err.Error()
		return []Action{r}, false
	}
	if err := p.protectedInside(inc.Cgroup); err != nil {
		r.Error = err.Error()
		return []Action{r}, false
	}
	if opts.DryRun {
		r.Detail = "dry-run: would freeze the cgroup"
		return []Action{r}, true
	}
	if !p.allow(inc.Cgroup, &r) {
		return []Action{r}, false
	}
	p.intend(inc, Action{Name: Freeze, Detail: "freezing the cgroup"})
	err := p.cg.Freeze(inc.Cgroup, opts.FreezeTimeout, opts.Poll)
	r.Done, r.Took = true, Millis(time.Since(start))
	if err != nil {
		r.Error = err.Error()
		return []Action{r}, false
	}
	r.Verified = true
	p.rememberFrozen(inc.Cgroup, inc.ID)
	r.Detail = "cgroup frozen; the loop is contained, not fixed: fix the cause, then run oomwatch thaw " + inc.Cgroup
	log.Error().Dur("took", time.Duration(r.Took)).Msg("froze the looping cgroup: an operator must fix it and thaw it")
	return []Action{r}, true
}
