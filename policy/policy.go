// Package policy breaks OOM loops: it runs a ladder of named actions for
// each incident the watchdog opens, verifying each rung before escalating.
// Every change to the host happens here, behind the safety rails: dry-run,
// one ladder per cgroup, never outside the incident's subtree, never on
// oomwatch itself, PID 1 or a container's monitor, and every wait bounded.
package policy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/oomwatch/oomwatch/internal/cgnames"
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

	// StopUnitLadder replaces Ladder for a cgroup whose systemd unit has
	// OOMPolicy=stop: there the kill that reset-adj lets the kernel make
	// stops the whole unit. Empty: Ladder, with a warning.
	StopUnitLadder []string

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
		return errors.New("ladder is empty: name at least one of " + strings.Join(Rungs, ", "))
	}
	if err := validLadder(o.Ladder); err != nil {
		return err
	}
	if err := validLadder(o.StopUnitLadder); err != nil {
		return fmt.Errorf("OOMPolicy=stop ladder: %w", err)
	}
	if o.ResetTo < -999 || o.ResetTo > 1000 {
		return fmt.Errorf("reset value %d: want -999..1000 (-1000 would keep the task unkillable)", o.ResetTo)
	}
	for _, gs := range [][]string{o.ExemptComm, o.ExemptCmdline, o.ExemptCgroup} {
		for _, g := range gs {
			if _, err := path.Match(g, ""); err != nil {
				return fmt.Errorf("exempt pattern %q: %w", g, err)
			}
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
	if o.RaiseStep.Of(100) == 0 && o.RaiseStep.Bytes == 0 {
		return errors.New("raise-limit step must be more than 0")
	}
	if o.RaiseCeiling.Percent > 0 && o.RaiseCeiling.Percent <= 100 {
		return fmt.Errorf("raise-limit ceiling %v%% must be above 100%% of the original limit", o.RaiseCeiling.Percent)
	}
	if o.RaiseCeiling.Percent == 0 && o.RaiseCeiling.Bytes == 0 {
		return errors.New("raise-limit ceiling must be set")
	}
	if o.RevertHold <= 0 {
		return errors.New("raise-limit revert hold must be positive")
	}
	if o.KillMode != KillLargest && o.KillMode != KillCgroup {
		return fmt.Errorf("kill mode %q: want %s or %s", o.KillMode, KillLargest, KillCgroup)
	}
	if o.Cooldown < 0 {
		return errors.New("cooldown must not be negative")
	}
	if o.PausedAction != "" && o.PausedAction != RaiseLimit && o.PausedAction != Kill {
		return fmt.Errorf("paused action %q: want \"\" (report only), %s or %s", o.PausedAction, RaiseLimit, Kill)
	}
	return nil
}

// validLadder checks that every rung is known and named once.
func validLadder(l []string) error {
	seen := map[string]bool{}
	for _, r := range l {
		if !slices.Contains(Rungs, r) {
			return fmt.Errorf("unknown ladder rung %q: known rungs are %s", r, strings.Join(Rungs, ", "))
		}
		if seen[r] {
			return fmt.Errorf("ladder rung %q appears twice", r)
		}
		seen[r] = true
	}
	return nil
}

// Config configures a Policy.
type Config struct {
	CG   cgroupfs.Hierarchy
	Proc procfs.FS
	// Options apply to every incident unless Settings is set.
	Options Options
	// Settings, if set, resolves the options for one cgroup (config rules):
	// the matching rule's name and its options.
	Settings func(cgroup string) (rule string, opts Options)
	// StateDir keeps raised limits so a restarted oomwatch still reverts
	// them. "" keeps them in memory only.
	StateDir string
	// MaxActionsPerMinute bounds host changes across all cgroups (default
	// 30); one container subtree takes at most a third of them at once (see
	// budget).
	MaxActionsPerMinute int
	// Units, if set, changes limits of systemd-owned cgroups through systemd.
	Units UnitLimiter
	// UnitTimeout bounds each call to Units (default 5s): a service manager
	// that does not answer must not hold a ladder or the reverter.
	UnitTimeout time.Duration
	// Report receives every step of every incident (nil: none).
	Report Reporter
}

// Policy is a watchdog.Handler that runs the ladder.
type Policy struct {
	cfg  Config
	cg   cgroupfs.Hierarchy
	proc procfs.FS
	insp watchdog.Inspector
	log  zerolog.Logger
	self int

	ctx       context.Context
	mu        sync.Mutex
	inflight  map[string]bool
	ladders   map[string]*ladder   // incident id → its running ladder
	lastDone  map[string]time.Time // cgroup → when its last ladder ended; see ended
	doneSweep int                  // len(lastDone) at which ended next prunes it
	wg        sync.WaitGroup
	budget    *budget
	frozenMu  sync.Mutex
	raised    *raiseStore
	reverting bool
	unitBusy  chan struct{} // held while a call to cfg.Units runs (unitCall)
	report    Reporter
	// now is the clock of the rate limit and the cooldown (a fake one in
	// tests).
	now func() time.Time
}

// New validates cfg and returns a policy whose ladders stop when ctx ends.
// It loads the raised-limit state and resumes reverting.
func New(ctx context.Context, cfg Config, log zerolog.Logger) (*Policy, error) {
	if err := cfg.Options.Validate(); err != nil {
		return nil, err
	}
	if cfg.MaxActionsPerMinute <= 0 {
		cfg.MaxActionsPerMinute = 30
	}
	if cfg.UnitTimeout <= 0 {
		cfg.UnitTimeout = 5 * time.Second
	}
	if cfg.Report == nil {
		cfg.Report = noReport{}
	}
	p := &Policy{
		cfg: cfg, cg: cfg.CG, proc: cfg.Proc, log: log, ctx: ctx, self: os.Getpid(),
		insp:     watchdog.Inspector{CG: cfg.CG, Proc: cfg.Proc},
		inflight: make(map[string]bool),
		ladders:  make(map[string]*ladder),
		lastDone: make(map[string]time.Time),
		budget:   newBudget(cfg.MaxActionsPerMinute, time.Minute),
		now:      time.Now,
		unitBusy: make(chan struct{}, 1),
		report:   cfg.Report,
	}
	rs, err := openRaiseStore(cfg.StateDir)
	var corrupt *corruptStateError
	switch {
	case errors.As(err, &corrupt):
		logCorrupt(log, corrupt, "the recovered raises are still reverted; put back by hand any other limit it names")
	case err != nil:
		// Keep detecting and acting; only the restart-safety of raises is lost.
		log.Error().Err(err).Str("state_dir", cfg.StateDir).Msg("raised limits cannot be persisted: a restart will not revert them")
	}
	p.raised = rs
	p.reportFrozen()
	if n := rs.len(); n > 0 {
		log.Warn().Int("raised", n).Msg("resuming the revert of limits raised before a restart")
		p.startReverter()
	}
	return p, nil
}

func (p *Policy) options(cg string) (string, Options) {
	if p.cfg.Settings != nil {
		return p.cfg.Settings(cg)
	}
	return "", p.cfg.Options
}

// Open reports a new incident and starts the ladder for a loop, or the
// paused handler for a v1 oom_kill_disable cgroup when a rule asks for it;
// other verdicts are reported only.
func (p *Policy) Open(inc *watchdog.Incident) {
	rule, opts := p.options(inc.Cgroup)
	p.report.Opened(inc, rule)
	switch {
	case inc.Verdict == watchdog.VerdictLoop:
	case inc.Verdict == watchdog.VerdictPaused && opts.PausedAction != "":
		opts.Ladder = []string{opts.PausedAction}
	default:
		return
	}
	log := p.log.With().Str("incident", inc.ID).Str("cgroup", inc.Cgroup).Str("rule", rule).Bool("dry_run", opts.DryRun).Logger()
	if cgnames.Parse(inc.Cgroup).Monitor {
		log.Warn().Str("event", "monitor_not_acted_on").
			Msg("no ladder: the cgroup is a container's monitor (lxc.monitor.*, conmon), never a target; the incident is reported only")
		return
	}
	p.mu.Lock()
	if p.inflight[inc.Cgroup] {
		p.mu.Unlock()
		return // at most one ladder per cgroup
	}
	// A cgroup acted on within its cooldown gets its ladder when the
	// cooldown ends, if the loop still goes on then: the incident stays
	// open, so nothing else would ever start one.
	var wait time.Duration
	if last, ok := p.lastDone[inc.Cgroup]; ok {
		if since := p.now().Sub(last); since < opts.Cooldown {
			wait = opts.Cooldown - since
		}
	}
	p.inflight[inc.Cgroup] = true
	l := &ladder{resolved: make(chan struct{})}
	p.ladders[inc.ID] = l
	p.mu.Unlock()
	if wait > 0 {
		log.Warn().Str("event", "cooldown").Dur("cooldown", opts.Cooldown).Dur("wait", wait).
			Msg("cgroup acted on recently: the ladder starts when its cooldown ends, if the loop goes on")
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		if wait > 0 && !p.sleep(wait, l.resolved) {
			// Resolved, or oomwatch stopping, within the cooldown: no
			// ladder ran, so there is none to report.
			p.mu.Lock()
			delete(p.inflight, inc.Cgroup)
			delete(p.ladders, inc.ID)
			why, resolved := l.why, l.isResolved
			p.mu.Unlock()
			if resolved {
				p.report.Resolved(inc, why)
			}
			return
		}
		res, out := p.run(p.ctx, log, inc, opts, l.resolved)
		p.mu.Lock()
		delete(p.inflight, inc.Cgroup)
		if !limited(res) || slices.ContainsFunc(res, func(r Action) bool { return r.Done }) {
			// A ladder that only waited for the rate limit until the loop
			// ended changed nothing: no cooldown for the cgroup's next loop.
			p.ended(inc.Cgroup)
		}
		p.mu.Unlock()
		p.report.LadderDone(inc, res, out)
		// Only now is the incident's resolution reported: after its
		// ladder's end, never before.
		p.mu.Lock()
		delete(p.ladders, inc.ID)
		why, resolved := l.why, l.isResolved
		p.mu.Unlock()
		if resolved {
			p.report.Resolved(inc, why)
		}
	}()
}

// sleep waits for d; false when resolved is closed or the policy stops
// first.
func (p *Policy) sleep(d time.Duration, resolved <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-resolved:
		return false
	case <-p.ctx.Done():
		return false
	}
}

// ladder is the state of one incident's running ladder.
type ladder struct {
	resolved   chan struct{} // closed once the incident is resolved
	isResolved bool
	why        string
}

// ended starts cg's cooldown. Called with mu held. lastDone keeps only
// cgroups still in their cooldown: every time it doubles (from 64) the
// others are dropped, so cgroups that loop once and are never seen again do
// not accumulate.
func (p *Policy) ended(cg string) {
	now := p.now()
	p.lastDone[cg] = now
	if len(p.lastDone) < p.doneSweep {
		return
	}
	for c, at := range p.lastDone {
		if _, opts := p.options(c); now.Sub(at) >= opts.Cooldown {
			delete(p.lastDone, c)
		}
	}
	p.doneSweep = max(64, 2*len(p.lastDone))
}

// Resolved ends any wait of the incident's ladder for the rate limit and
// reports the resolution: at once, or, while the ladder runs, after its
// end.
func (p *Policy) Resolved(inc *watchdog.Incident, why string) {
	p.mu.Lock()
	if l, ok := p.ladders[inc.ID]; ok {
		if !l.isResolved {
			l.isResolved, l.why = true, why
			close(l.resolved)
		}
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	p.report.Resolved(inc, why)
}

// Wait blocks until every running ladder and the reverter have returned
// (they return once the context given to New is done).
func (p *Policy) Wait() { p.wg.Wait() }

// Raised says whether raise-limit holds cg above its original limit (a
// revert is pending). Safe from any goroutine.
func (p *Policy) Raised(cg string) bool { return p.raised.get(cg) != nil }

// run climbs the ladder. A rung the rate limit refuses waits for a token in
// line (see budget) and then runs again from its start (its targets
// re-read): the rate limit delays a rung, it never skips one, so a throttled
// loop is not escalated to a harsher rung than its own ladder would reach.
// The wait ends the ladder if the incident is resolved (closed) or ctx ends
// first.
func (p *Policy) run(ctx context.Context, log zerolog.Logger, inc *watchdog.Incident, opts Options, resolved <-chan struct{}) ([]Action, Outcome) {
	var results []Action
	note := ""
	if unit, stop := p.stopsOnOOM(ctx, inc.Cgroup); stop {
		note = unit + " has OOMPolicy=stop: a kill in it stops the whole unit"
		e := log.Warn().Str("event", "oom_policy_stop").Str("unit", unit)
		if len(opts.StopUnitLadder) > 0 {
			opts.Ladder = opts.StopUnitLadder
			e = e.Strs("ladder", opts.Ladder)
			note += "; the rule's ladder for such units runs"
		}
		e.Msg(note)
	}
	report := func(rs []Action) {
		for i := range rs {
			if note != "" {
				rs[i].Detail = strings.TrimPrefix(rs[i].Detail+"; "+note, "; ")
			}
		}
		for _, r := range rs {
			e := log.Info()
			if r.Error != "" {
				e = log.Warn().Str("error", r.Error)
			}
			e.Str("event", "action").Str("action", r.Name).Int("pid", r.PID).Str("comm", r.Comm).
				Bool("done", r.Done).Bool("verified", r.Verified).Str("detail", r.Detail).Dur("took", time.Duration(r.Took)).Msg("action " + r.Name)
			p.report.Action(inc, r)
		}
		results = append(results, rs...)
	}
	for _, rung := range opts.Ladder {
		rs, ended := p.rung(ctx, log, inc, opts, rung)
		for waited := false; limited(rs); waited = true {
			report(rs[:len(rs)-1]) // what the rung did before the refusal
			if !waited {
				log.Warn().Str("event", "rate_limited").Str("action", rung).Int("max_actions_per_minute", p.cfg.MaxActionsPerMinute).
					Str("subtree", watchdog.Subtree(inc.Cgroup)).Str("reason", rs[len(rs)-1].Error).
					Msg("rate limit reached: the action waits for its turn")
			}
			if !p.awaitToken(ctx, inc.Cgroup, resolved) {
				results = append(results, rs[len(rs)-1])
				log.Warn().Str("event", "ladder_done").Str("outcome", string(OutcomeRateLimited)).
					Msg("ladder stopped while its next action waited for the rate limit: the incident ended or oomwatch is stopping")
				return results, OutcomeRateLimited
			}
			rs, ended = p.rung(ctx, log, inc, opts, rung)
			p.budget.release(inc.Cgroup, p.now()) // the token, if the rung did not need it
		}
		report(rs)
		if ended || ctx.Err() != nil {
			out := outcome(results, opts.DryRun)
			log.Info().Str("event", "ladder_done").Str("outcome", string(out)).Msg("ladder finished")
			return results, out
		}
	}
	log.Error().Str("event", "ladder_done").Str("outcome", string(OutcomeExhausted)).Msg("ladder exhausted: the loop goes on; an operator must act")
	return results, OutcomeExhausted
}

// stopsOnOOM says whether cg is a systemd unit whose OOMPolicy is stop, and
// which. A service manager that cannot be asked counts as no.
func (p *Policy) stopsOnOOM(ctx context.Context, cg string) (string, bool) {
	unit := p.systemdUnit(ctx, cg)
	if unit == "" {
		return "", false
	}
	var pol string
	err := p.unitCall(ctx, func(ctx context.Context) (err error) {
		pol, err = p.cfg.Units.OOMPolicy(ctx, unit)
		return err
	})
	if err != nil {
		p.log.Warn().Err(err).Str("unit", unit).Msg("cannot ask systemd for the unit's OOMPolicy")
		return unit, false
	}
	return unit, pol == "stop"
}

func (p *Policy) rung(ctx context.Context, log zerolog.Logger, inc *watchdog.Incident, opts Options, rung string) ([]Action, bool) {
	switch rung {
	case ResetAdj:
		return p.resetAdj(ctx, log, inc, opts)
	case RaiseLimit:
		return p.raiseLimit(ctx, log, inc, opts)
	case Freeze:
		return p.freeze(ctx, log, inc, opts)
	case Kill:
		return p.kill(ctx, log, inc, opts)
	}
	return nil, false
}

// limited reports whether a rung stopped because the rate limit refused its
// action.
func limited(rs []Action) bool { return len(rs) > 0 && rs[len(rs)-1].limited }

// awaitToken queues cg's ladder for a token and waits until it is granted
// (held for cg's next action), and reports whether the ladder should try
// again: false once the incident is resolved or ctx ends. Whichever waiter
// wakes first hands out the tokens, in the budget's order: waking is no race.
func (p *Policy) awaitToken(ctx context.Context, cg string, resolved <-chan struct{}) bool {
	w := p.budget.enqueue(cg, p.now())
	for {
		d, ok := p.budget.poll(w, p.now())
		if ok {
			return true
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
		case <-resolved:
		case <-w.ready:
			t.Stop()
			return true
		case <-t.C:
			continue
		}
		t.Stop()
		p.budget.cancel(w, p.now())
		return false
	}
}

// noReport is the Reporter of a policy nobody listens to.
type noReport struct{}

func (noReport) Opened(*watchdog.Incident, string)                {}
func (noReport) Action(*watchdog.Incident, Action)                {}
func (noReport) LadderDone(*watchdog.Incident, []Action, Outcome) {}
func (noReport) Resolved(*watchdog.Incident, string)              {}

// intend announces a host change (write-ahead): a SIGKILL of oomwatch
// right after the change still leaves it in the journal.
func (p *Policy) intend(inc *watchdog.Incident, a Action) {
	a.Pending = true
	p.report.Action(inc, a)
}

// allow is the rate limit on the host changes of cg's ladder (see budget):
// it spends the token granted to the ladder's wait, or one of the budget's.
func (p *Policy) allow(cg string, r *Action) bool {
	return p.spend(cg, true, r)
}

// allowRevert is the rate limit on putting a raised limit of cg back: the
// same budget, never a token granted to a ladder.
func (p *Policy) allowRevert(cg string, r *Action) bool {
	return p.spend(cg, false, r)
}

func (p *Policy) spend(cg string, grant bool, r *Action) bool {
	ok, why := p.budget.take(cg, grant, p.now())
	if p.budget.capReached() {
		p.log.Warn().Str("event", "budget_cap").Int("subtrees", maxTracked).
			Msg("rate limit tracks too many subtrees at once: further subtrees share one budget")
	}
	if ok {
		return true
	}
	r.Error, r.limited = why, true
	return false
}

// inSubtree builds the membership check a pidfd handle is verified with. A
// path outside oomwatch's cgroup namespace ("/../x") places a task nowhere:
// cleaned, it would name another cgroup.
func (p *Policy) inSubtree(cg string) func([]procfs.CgroupLine) bool {
	return func(lines []procfs.CgroupLine) bool {
		for _, l := range lines {
			if !procfs.OutsideNamespace(l.Path) && p.cg.InCgroup(cg, l.ID, l.Controllers, l.Path) {
				return true
			}
		}
		return false
	}
}

// protectedInside refuses whole-cgroup actions (freeze, cgroup kill) on a
// subtree holding oomwatch itself, PID 1 or a container's monitor, and on
// any subtree when oomwatch's or PID 1's cgroup reads as outside oomwatch's
// cgroup namespace: then where they are cannot be told.
func (p *Policy) protectedInside(cg string) error {
	if m := p.monitorInside(cg); m != "" {
		return fmt.Errorf("refusing to act on %s: it holds the container monitor %s", cg, m)
	}
	for _, pid := range []int{p.self, 1} {
		lines, err := p.proc.Cgroups(pid)
		if err != nil {
			continue
		}
		who := "oomwatch itself"
		if pid == 1 {
			who = "PID 1"
		}
		for _, l := range lines {
			if p.cg.InCgroup("/", l.ID, l.Controllers, l.Path) && procfs.OutsideNamespace(l.Path) {
				return fmt.Errorf("refusing to act on %s: %s's cgroup reads %q, outside oomwatch's cgroup namespace, so whether %s holds it cannot be told", cg, who, l.Path, cg)
			}
		}
		if p.inSubtree(cg)(lines) {
			return fmt.Errorf("refusing to act on %s: it holds %s", cg, who)
		}
	}
	return nil
}

// maxMonitorWalk bounds the cgroups monitorInside looks at. Monitors sit
// next to their container's payload, near the top of the tree, and the walk
// does not enter containers: the host-made cgroups of a subtree are few.
const maxMonitorWalk = 4096

// monitorInside returns the first container monitor cgroup (lxc.monitor.*,
// conmon) at or below cg, or "". Containers are not entered: what is
// below a container's cgroup is named by its tenant (cgnames). Past
// maxMonitorWalk cgroups, what was seen decides.
func (p *Policy) monitorInside(cg string) string {
	found := ""
	_ = p.cg.Walk(cg, maxMonitorWalk, func(c string) error {
		n := cgnames.Parse(c)
		switch {
		case n.Monitor:
			found = c
			return errStopWalk
		case n.Container != "":
			return filepath.SkipDir
		}
		return nil
	})
	return found
}

var errStopWalk = errors.New("stop")

// monitorTask reports whether c runs in a container's monitor cgroup: never
// a target of a per-task action.
func monitorTask(c watchdog.Candidate) bool { return cgnames.Parse(c.Cgroup).Monitor }

func (p *Policy) exempt(c watchdog.Candidate, opts Options) bool {
	match := func(globs []string, s string) bool {
		for _, g := range globs {
			if ok, _ := path.Match(g, s); ok {
				return true
			}
		}
		return false
	}
	return match(opts.ExemptComm, c.Comm) || match(opts.ExemptCmdline, strings.Join(c.Cmdline, " ")) || match(opts.ExemptCgroup, c.Cgroup)
}

// progress reads the counters verification compares: kills and an OOM
// activity counter. On v2 they are the watchdog's own (memory.events); on
// v1, where the watchdog counts eventfd wake-ups, the activity counter is
// memory.failcnt + memsw.failcnt of the limit holder, which rise on every
// failed charge retry, and kills are the subtree's oom_kill.
func (p *Policy) progress(cg string) (watchdog.Counters, error) {
	if p.cg.Version == 2 {
		return watchdog.V2Counters(p.cg, cg)
	}
	fc, err := p.cg.Failcnt(cg)
	if err != nil {
		return watchdog.Counters{}, err
	}
	kills, err := p.cg.SubtreeOOMKills(cg, 1024)
	if err != nil {
		return watchdog.Counters{}, err
	}
	return watchdog.Counters{OOM: fc, Kills: kills}, nil
}

// verifyStopped waits up to VerifyTimeout for a kill, or for the OOM counter
// to stay flat for QuietFor.
func (p *Policy) verifyStopped(ctx context.Context, cg string, base watchdog.Counters, opts Options) (bool, string) {
	deadline := time.Now().Add(opts.VerifyTimeout)
	last, lastChange := base, time.Now()
	t := time.NewTicker(opts.Poll)
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
		if cur.Kills > base.Kills {
			return true, fmt.Sprintf("kernel killed %d task(s)", cur.Kills-base.Kills)
		}
		if cur.OOM != last.OOM {
			last, lastChange = cur, now
		} else if now.Sub(lastChange) >= opts.QuietFor && !p.underOOM(cg) {
			// v1 oom_kill_disable sleepers make no new OOM attempts while
			// they wait: quiet counters alone do not mean released.
			return true, fmt.Sprintf("no OOM for %v", opts.QuietFor)
		}
		if now.After(deadline) {
			return false, fmt.Sprintf("loop goes on after %v: %d more OOM events, no kill", opts.VerifyTimeout, cur.OOM-base.OOM)
		}
	}
}

// underOOM reports v1 under_oom (tasks asleep in the oom_kill_disable wait).
func (p *Policy) underOOM(cg string) bool {
	if p.cg.Version != 1 {
		return false
	}
	oc, err := p.cg.OOMControl(cg)
	return err == nil && oc.UnderOOM
}
