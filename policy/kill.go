package policy

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/oomwatch/oomwatch/internal/procfs"
	"github.com/oomwatch/oomwatch/watchdog"
)

// kill is the last rung: SIGKILL the largest task through a pidfd (a -1000
// task dies like any other), or every task of the subtree. Exemptions from
// reset-adj do not protect from kill: an operator who ladders to kill asked
// for it. A container's monitor is never killed: the largest task is chosen
// among the others, and a whole subtree holding one is refused.
func (p *Policy) kill(ctx context.Context, log zerolog.Logger, inc *watchdog.Incident, opts Options) ([]Action, bool) {
	start := time.Now()
	r := Action{Name: Kill}
	cands, err := p.insp.Candidates(inc.Cgroup)
	if err != nil {
		r.Error = err.Error()
		return []Action{r}, false
	}
	var targets []watchdog.Candidate
	for _, c := range cands {
		if !c.Exiting && !monitorTask(c) {
			targets = append(targets, c)
		}
	}
	if len(targets) == 0 {
		r.Detail = "no live task to kill"
		return []Action{r}, false
	}
	if opts.KillMode == KillLargest {
		targets = targets[:1]
		r.PID, r.Comm = targets[0].PID, procfs.Safe(targets[0].Comm)
	}
	if opts.DryRun {
		r.Detail = fmt.Sprintf("dry-run: would SIGKILL %d task(s) (%s)", len(targets), opts.KillMode)
		return []Action{r}, true
	}
	if opts.KillMode == KillCgroup {
		if err := p.protectedInside(inc.Cgroup); err != nil {
			r.Error = err.Error()
			return []Action{r}, false
		}
	}
	if !p.allow(inc.Cgroup, &r) {
		return []Action{r}, false
	}
	base, err := p.progress(inc.Cgroup)
	if err != nil {
		r.Error = err.Error()
		return []Action{r}, false
	}
	p.intend(inc, Action{Name: Kill, PID: r.PID, Comm: r.Comm, Detail: fmt.Sprintf("SIGKILL to %d task(s) (%s)", len(targets), opts.KillMode)})
	killed := 0
	if opts.KillMode == KillCgroup && p.cg.KillSupported(inc.Cgroup) {
		// cgroup.kill also catches tasks forking while we kill.
		if err := p.cg.KillAll(inc.Cgroup); err != nil {
			r.Error = err.Error()
			return []Action{r}, false
		}
		killed = len(targets)
	} else {
		var errs []error
		for _, t := range targets {
			h, err := p.proc.Open(t.PID, p.inSubtree(inc.Cgroup))
			if errors.Is(err, procfs.ErrGone) {
				continue
			}
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if err := h.Kill(); err != nil && !errors.Is(err, procfs.ErrGone) {
				errs = append(errs, err)
			} else {
				killed++
			}
			h.Close()
		}
		if err := errors.Join(errs...); err != nil {
			r.Error = err.Error()
		}
	}
	// A v1-frozen task stays in the refrigerator with SIGKILL pending:
	// thaw so the kill lands. v2 frozen tasks die on SIGKILL by themselves.
	if p.cg.Version == 1 {
		if st, err := p.cg.FreezerState(inc.Cgroup); err == nil && st != "THAWED" {
			if err := p.cg.Thaw(inc.Cgroup, opts.FreezeTimeout, opts.Poll); err != nil {
				log.Warn().Err(err).Msg("thaw after kill failed")
			}
		}
	}
	r.Done = killed > 0
	if !r.Done {
		return []Action{r}, false
	}
	ok, detail := p.verifyStopped(ctx, inc.Cgroup, base, opts)
	r.Verified, r.Took = ok, Millis(time.Since(start))
	r.Detail = fmt.Sprintf("SIGKILL sent to %d task(s); %s", killed, detail)
	return []Action{r}, ok
}
