package policy

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/oomwatch/oomwatch/internal/cgroupfs"
	"github.com/oomwatch/oomwatch/internal/procfs"
	"github.com/oomwatch/oomwatch/watchdog"
)

// resetAdj writes ResetTo to the oom_score_adj of the largest non-exempt
// unkillable task, then waits for a kill or for the OOMs to stop; if the loop
// goes on it tries the next task, up to MaxResets.
func (p *Policy) resetAdj(ctx context.Context, log zerolog.Logger, inc *watchdog.Incident, opts Options) ([]Action, bool) {
	var results []Action
	tried := map[int]bool{}
	for len(tried) < opts.MaxResets {
		// The first pick uses the tasks the watchdog just inspected: every
		// millisecond counts while the kernel loops. The pidfd check in
		// resetOne makes a stale pick harmless. Later picks re-read /proc.
		cands := inc.Candidates
		if len(tried) > 0 || len(cands) == 0 {
			var err error
			cands, err = p.insp.Candidates(inc.Cgroup)
			if err != nil {
				results = append(results, Action{Name: ResetAdj, Error: err.Error()})
				return results, errors.Is(err, cgroupfs.ErrGone)
			}
		}
		var target *watchdog.Candidate
		for i := range cands { // largest RSS first
			c := &cands[i]
			if c.Unkillable && !c.Exiting && !tried[c.PID] && !p.exempt(*c, opts) && !monitorTask(*c) {
				target = c
				break
			}
		}
		if target == nil {
			log.Info().Msg("reset-adj: no resettable task left (all exempt, in a container monitor or already tried)")
			return results, false
		}
		tried[target.PID] = true
		r := p.resetOne(ctx, log, inc, *target, opts)
		results = append(results, r)
		if r.limited {
			return results, false // the ladder waits for a token and runs the rung again
		}
		if r.Verified || opts.DryRun {
			return results, true // dry-run: nothing changed, nothing to verify: report once
		}
	}
	return results, false
}

func (p *Policy) resetOne(ctx context.Context, log zerolog.Logger, inc *watchdog.Incident, c watchdog.Candidate, opts Options) Action {
	start := time.Now()
	r := Action{Name: ResetAdj, PID: c.PID, Comm: procfs.Safe(c.Comm)}
	ev := log.With().Int("pid", c.PID).Str("comm", procfs.Safe(c.Comm)).Uint64("rss", c.RSS).Int("oom_score_adj", c.OOMScoreAdj).Logger()
	if opts.DryRun {
		r.Detail = fmt.Sprintf("dry-run: would write %d to oom_score_adj", opts.ResetTo)
		return r
	}
	if !p.allow(inc.Cgroup, &r) {
		return r
	}
	// Act only through a pidfd whose /proc dir is verified to still be this
	// process, and only if it is still in the incident's subtree: PID reuse
	// can never redirect the write.
	h, err := p.proc.Open(c.PID, p.inSubtree(inc.Cgroup))
	if err != nil {
		r.Error = err.Error()
		return r
	}
	defer h.Close()
	base, err := p.progress(inc.Cgroup)
	if err != nil {
		r.Error = err.Error()
		return r
	}
	p.intend(inc, Action{Name: ResetAdj, PID: c.PID, Comm: r.Comm, Detail: fmt.Sprintf("writing %d to oom_score_adj", opts.ResetTo)})
	if err := h.SetOOMScoreAdj(opts.ResetTo); err != nil {
		r.Error = err.Error()
		return r
	}
	r.Done = true
	ev.Warn().Int("new_oom_score_adj", opts.ResetTo).Msg("reset oom_score_adj: the kernel may now kill this task")
	r.Verified, r.Detail = p.verifyStopped(ctx, inc.Cgroup, base, opts)
	r.Took = Millis(time.Since(start))
	return r
}
