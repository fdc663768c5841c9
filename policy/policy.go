// Package policy breaks OOM loops: it runs a ladder of named actions for
// each incident the watchdog opens, verifying each rung before escalating.
// Every change to the host happens here, behind the safety rails: dry-run,
// one ladder per cgroup, never outside the incident's subtree, never on
// oomwatch itself or PID 1, and every wait bounded.
package policy

import (
	"context"
	"errors"
	"fmt"
	"path"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/oomwatch/oomwatch/internal/cgroupfs"
	"github.com/oomwatch/oomwatch/internal/procfs"
	"github.com/oomwatch/oomwatch/watchdog"
)

// Rung names.
const (
	ResetAdj   = "reset-adj"
	RaiseLimit = "raise-limit"
	Freeze     = "freeze"
	Kill       = "kill"
)

// Rungs lists every rung name, in the order a full ladder uses them.
var Rungs = []string{ResetAdj, RaiseLimit, Freeze, Kill}

// Amount is a quantity of memory: a percentage of a reference (the original
// limit) or a number of bytes.
type Amount struct {
	Percent float64 // used when > 0
	Bytes   uint64
}

// Of resolves a against ref.
func (a Amount) Of(ref uint64) uint64 {
	if a.Percent > 0 {
		return uint64(float64(ref) * a.Percent / 100)
	}
	return a.Bytes
}

// Kill modes.
const (
	KillLargest = "largest" // SIGKILL the largest task through a pidfd
	KillCgroup  = "cgroup"  // kill every task: cgroup.kill (v2, 5.14+) or each task (v1)
)

// Options configure the ladder for one incident.
type Options struct {
	Ladder        []string      // rung names in order; default reset-adj, freeze
	DryRun        bool          // detect and report, change nothing
	ResetTo       int           // oom_score_adj written by reset-adj (default 0)
	MaxResets     int           // tasks reset-adj may try before escalating (default 3)
	ExemptComm    []string      // glob patterns (path.Match) on comm: never reset these
	ExemptCmdline []string      // glob patterns on the space-joined cmdline
	ExemptCgroup  []string      // glob patterns on the task's cgroup path
	VerifyTimeout time.Duration // how long a rung gets to end the loop (default 2s)
	QuietFor      time.Duration // OOM counter flat this long = loop stopped (default 300ms)
	FreezeTimeout time.Duration // bound on waiting for frozen (default 5s)
	Poll          time.Duration // verification poll interval (default 20ms)

	RaiseStep    Amount        // raise-limit: added per step (default 10% of the original)
	RaiseCeiling Amount        // raise-limit: never above this (default 200% of the original)
	RevertMargin Amount        // revert once usage < original - margin … (default 10%)
	RevertHold   time.Duration // … for this long (default 5m)

	KillMode string // kill: largest or cgroup (default largest)

	Cooldown time.Duration // no new ladder for a cgroup this soon after one ended (default 30s)
	// PausedAction makes oomwatch the userspace OOM handler of v1 cgroups
	// with oom_kill_disable=1: "" (report only), raise-limit or kill.
	PausedAction string
}

// DefaultOptions are the documented defaults.
func DefaultOptions() Options {
	return Options{
		Ladder: []string{ResetAdj, Freeze}, ResetTo: 0, MaxResets: 3,
		VerifyTimeout: 2 * time.Second, QuietFor: 300 * time.Millisecond,
		FreezeTimeout: 5 * time.Second, Poll: 20 * time.Millisecond,
		RaiseStep: Amount{Percent: 10}, RaiseCeiling: Amount{Percent: 200},
		RevertMargin: Amount{Percent: 10}, RevertHold: 5 * time.Minute,
		KillMode: KillLargest, Cooldown: 30 * time.Second,
	}
}

// Validate checks the options and says what to fix.
func (o Options) Validate() error {
	if len(o.Ladder) == 0 {
		return errors.New("ladder is empty: name at least one of reset-adj, freeze")
	}
	seen := map[string]bool{}
	for _, r := range o.Ladder {
		if r != ResetAdj && r != Freeze {
			return fmt.Errorf("unknown ladder rung %q: known rungs are reset-adj, freeze", r)
		}
		if seen[r] {
			return fmt.Errorf("ladder rung %q appears twice", r)
		}
		seen[r] = true
	}
	if o.ResetTo < -999 || o.ResetTo > 1000 {
		return fmt.Errorf("reset value %d: want -999..1000 (-1000 would keep the task unkillable)", o.ResetTo)
	}
	for _, g := range o.ExemptComm {
		if _, err := path.Match(g, ""); err != nil {
			return fmt.Errorf("exempt comm pattern %q: %w", g, err)
		}
	}
	if o.MaxResets < 1 {
		return fmt.Errorf("max resets %d: want at least 1", o.MaxResets)
	}
	if o.VerifyTimeout <= 0 || o.QuietFor <= 0 || o.FreezeTimeout <= 0 || o.Poll <= 0 {
		return errors.New("verify timeout, quiet period, freeze timeout and poll interval must be positive")
	}
	if o.QuietFor >= o.VerifyTimeout {
		return fmt.Errorf("quiet period %v must be shorter than the verify timeout %v", o.QuietFor, o.VerifyTimeout)
	}
	return nil
}

// Result is the outcome of one action.
type Result struct {
	Rung     string        `json:"action"`
	PID      int           `json:"pid,omitempty"`
	Comm     string        `json:"comm,omitempty"`
	Done     bool          `json:"done"`     // the action was carried out (false in dry-run)
	Verified bool          `json:"verified"` // the loop stopped / the cgroup froze afterwards
	Err      string        `json:"error,omitempty"`
	Took     time.Duration `json:"took_ns"`
	Detail   string        `json:"detail,omitempty"`
}

// Policy is a watchdog.Handler that runs the ladder.
type Policy struct {
	opts Options
	cg   cgroupfs.Hierarchy
	proc procfs.FS
	insp watchdog.Inspector
	log  zerolog.Logger

	ctx      context.Context
	mu       sync.Mutex
	inflight map[string]bool
	wg       sync.WaitGroup

	// OnDone, if set, receives every finished ladder (alerts, tests).
	OnDone func(inc *watchdog.Incident, results []Result)
}

// New validates opts and returns a policy whose ladders stop when ctx ends.
func New(ctx context.Context, opts Options, cg cgroupfs.Hierarchy, proc procfs.FS, log zerolog.Logger) (*Policy, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	return &Policy{
		opts: opts, cg: cg, proc: proc, log: log, ctx: ctx,
		insp:     watchdog.Inspector{CG: cg, Proc: proc},
		inflight: make(map[string]bool),
	}, nil
}

// Open starts the ladder for a loop; other verdicts are reported only.
func (p *Policy) Open(inc *watchdog.Incident) {
	if inc.Verdict != watchdog.VerdictLoop {
		return
	}
	p.mu.Lock()
	if p.inflight[inc.Cgroup] {
		p.mu.Unlock()
		return // at most one ladder per cgroup
	}
	p.inflight[inc.Cgroup] = true
	p.mu.Unlock()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer func() {
			p.mu.Lock()
			delete(p.inflight, inc.Cgroup)
			p.mu.Unlock()
		}()
		res := p.run(p.ctx, inc)
		if p.OnDone != nil {
			p.OnDone(inc, res)
		}
	}()
}

// Resolved is informational for the ladder.
func (p *Policy) Resolved(*watchdog.Incident, string) {}

// Wait blocks until every running ladder has returned.
func (p *Policy) Wait() { p.wg.Wait() }

func (p *Policy) run(ctx context.Context, inc *watchdog.Incident) []Result {
	var results []Result
	log := p.log.With().Str("incident", inc.ID).Str("cgroup", inc.Cgroup).Bool("dry_run", p.opts.DryRun).Logger()
	for _, rung := range p.opts.Ladder {
		var rs []Result
		var ended bool
		switch rung {
		case ResetAdj:
			rs, ended = p.resetAdj(ctx, log, inc)
		case Freeze:
			rs, ended = p.freeze(ctx, log, inc)
		}
		for _, r := range rs {
			e := log.Info()
			if r.Err != "" {
				e = log.Warn().Str("error", r.Err)
			}
			e.Str("event", "action").Str("action", r.Rung).Int("pid", r.PID).Str("comm", r.Comm).
				Bool("done", r.Done).Bool("verified", r.Verified).Str("detail", r.Detail).Dur("took", r.Took).Msg("action " + r.Rung)
		}
		results = append(results, rs...)
		if ended || ctx.Err() != nil {
			log.Info().Str("event", "ladder_done").Str("outcome", outcome(rs, p.opts.DryRun)).Msg("ladder finished")
			return results
		}
	}
	log.Error().Str("event", "ladder_done").Str("outcome", "exhausted").Msg("ladder exhausted: the loop goes on; an operator must act")
	return results
}

// outcome names how a ladder ended from the last rung's results.
func outcome(rs []Result, dryRun bool) string {
	switch {
	case dryRun:
		return "dry-run"
	case len(rs) > 0 && rs[len(rs)-1].Rung == Freeze && rs[len(rs)-1].Verified:
		return "contained"
	case len(rs) > 0 && rs[len(rs)-1].Verified:
		return "resolved"
	}
	return "aborted"
}

func (p *Policy) exempt(comm string) bool {
	for _, g := range p.opts.ExemptComm {
		if ok, _ := path.Match(g, comm); ok {
			return true
		}
	}
	return false
}

// resetAdj writes ResetTo to the oom_score_adj of the largest non-exempt
// unkillable task, then waits for a kill or for the OOMs to stop; if the loop
// goes on it tries the next task, up to MaxResets.
func (p *Policy) resetAdj(ctx context.Context, log zerolog.Logger, inc *watchdog.Incident) ([]Result, bool) {
	var results []Result
	tried := map[int]bool{}
	for len(tried) < p.opts.MaxResets {
		cands, err := p.insp.Candidates(inc.Cgroup)
		if err != nil {
			results = append(results, Result{Rung: ResetAdj, Err: err.Error()})
			return results, errors.Is(err, cgroupfs.ErrGone)
		}
		var target *watchdog.Candidate
		for i := range cands { // largest RSS first
			c := &cands[i]
			if c.Unkillable && !c.Exiting && !tried[c.PID] && !p.exempt(c.Comm) {
				target = c
				break
			}
		}
		if target == nil {
			log.Info().Msg("reset-adj: no resettable task left (all exempt or already tried)")
			return results, false
		}
		tried[target.PID] = true
		r := p.resetOne(ctx, log, inc, *target)
		results = append(results, r)
		if r.Verified {
			return results, true
		}
		if p.opts.DryRun {
			return results, true // nothing changed, nothing to verify: report once
		}
	}
	return results, false
}

func (p *Policy) resetOne(ctx context.Context, log zerolog.Logger, inc *watchdog.Incident, c watchdog.Candidate) Result {
	start := time.Now()
	r := Result{Rung: ResetAdj, PID: c.PID, Comm: procfs.Safe(c.Comm)}
	ev := log.With().Int("pid", c.PID).Str("comm", procfs.Safe(c.Comm)).Uint64("rss", c.RSS).Int("oom_score_adj", c.OOMScoreAdj).Logger()
	if p.opts.DryRun {
		r.Detail = fmt.Sprintf("dry-run: would write %d to oom_score_adj", p.opts.ResetTo)
		ev.Warn().Msg("dry-run: would reset oom_score_adj")
		return r
	}
	// Act only through a pidfd whose /proc dir is verified to still be this
	// process, and only if it is still in the incident's subtree: PID reuse
	// can never redirect the write.
	h, err := p.proc.Open(c.PID, func(lines []procfs.CgroupLine) bool {
		for _, l := range lines {
			if p.cg.InCgroup(inc.Cgroup, l.ID, l.Controllers, l.Path) {
				return true
			}
		}
		return false
	})
	if err != nil {
		r.Err = err.Error()
		ev.Info().Err(err).Msg("reset-adj: task not acted on")
		return r
	}
	defer h.Close()
	base, err := p.progress(inc.Cgroup)
	if err != nil {
		r.Err = err.Error()
		return r
	}
	if err := h.SetOOMScoreAdj(p.opts.ResetTo); err != nil {
		r.Err = err.Error()
		ev.Error().Err(err).Msg("reset-adj failed")
		return r
	}
	r.Done = true
	ev.Warn().Int("new_oom_score_adj", p.opts.ResetTo).Msg("reset oom_score_adj: the kernel may now kill this task")
	r.Verified, r.Detail = p.verifyStopped(ctx, inc.Cgroup, base)
	r.Took = time.Since(start)
	ev.Info().Bool("verified", r.Verified).Str("detail", r.Detail).Dur("took", r.Took).Msg("reset-adj verified")
	return r
}

// progress are the counters verification compares: kills (v2 oom_kill +
// oom_group_kill; v1 the subtree's oom_kill) and an OOM activity counter
// (v2 oom; v1 memory.failcnt of the limit holder, which rises on every
// failed charge retry).
type progress struct{ ooms, kills uint64 }

func (p *Policy) progress(cg string) (progress, error) {
	if p.cg.Version == 2 {
		ev, err := p.cg.MemoryEvents(cg)
		if err != nil {
			return progress{}, err
		}
		return progress{ooms: ev.OOM, kills: ev.OOMKill + ev.OOMGroupKill}, nil
	}
	fc, err := p.cg.Failcnt(cg)
	if err != nil {
		return progress{}, err
	}
	var kills uint64
	err = p.cg.Walk(cg, 1024, func(c string) error {
		oc, err := p.cg.OOMControl(c)
		if errors.Is(err, cgroupfs.ErrGone) && c != cg {
			return nil
		}
		kills += oc.OOMKill
		return err
	})
	if err != nil && !errors.Is(err, cgroupfs.ErrTooMany) {
		return progress{}, err
	}
	return progress{ooms: fc, kills: kills}, nil
}

// verifyStopped waits up to VerifyTimeout for a kill, or for the OOM counter
// to stay flat for QuietFor.
func (p *Policy) verifyStopped(ctx context.Context, cg string, base progress) (bool, string) {
	deadline := time.Now().Add(p.opts.VerifyTimeout)
	last, lastChange := base, time.Now()
	t := time.NewTicker(p.opts.Poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return false, "shutting down"
		case <-t.C:
		}
		now := time.Now()
		cur, err := p.progress(cg)
		if errors.Is(err, cgroupfs.ErrGone) {
			return true, "cgroup removed"
		}
		if err != nil {
			return false, err.Error()
		}
		if cur.kills > base.kills {
			return true, fmt.Sprintf("kernel killed %d task(s)", cur.kills-base.kills)
		}
		if cur.ooms != last.ooms {
			last, lastChange = cur, now
		} else if now.Sub(lastChange) >= p.opts.QuietFor {
			return true, fmt.Sprintf("no OOM for %v", p.opts.QuietFor)
		}
		if now.After(deadline) {
			return false, fmt.Sprintf("loop goes on after %v: %d more OOM events, no kill", p.opts.VerifyTimeout, cur.ooms-base.ooms)
		}
	}
}

// freeze stops the CPU burn and keeps the tasks for an operator. It is
// bounded: some tasks (v1 oom_kill_disable sleepers, kernel threads) never
// freeze.
func (p *Policy) freeze(ctx context.Context, log zerolog.Logger, inc *watchdog.Incident) ([]Result, bool) {
	start := time.Now()
	r := Result{Rung: Freeze}
	if err := p.cg.FreezeSupported(inc.Cgroup); err != nil {
		r.Err = err.Error()
		log.Error().Err(err).Msg("freeze not possible")
		return []Result{r}, false
	}
	if p.opts.DryRun {
		r.Detail = "dry-run: would freeze the cgroup"
		log.Warn().Msg("dry-run: would freeze the cgroup")
		return []Result{r}, true
	}
	err := p.cg.Freeze(inc.Cgroup, p.opts.FreezeTimeout, p.opts.Poll)
	r.Done, r.Took = true, time.Since(start)
	if err != nil {
		r.Err = err.Error()
		log.Error().Err(err).Msg("freeze did not complete")
		return []Result{r}, false
	}
	r.Verified = true
	r.Detail = "cgroup frozen; the loop is contained, not fixed: fix the cause, then thaw"
	log.Error().Dur("took", r.Took).Msg("froze the looping cgroup: an operator must fix it and thaw it")
	return []Result{r}, true
}
