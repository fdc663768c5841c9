package policy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/oomwatch/oomwatch/internal/cgroupfs"
	"github.com/oomwatch/oomwatch/watchdog"
)

// UnitLimiter changes MemoryMax of a systemd unit at runtime (D-Bus), so
// that systemd does not put the old value back on its next reload. Declared
// here, implemented by package systemd. Every call must return once its
// context is done: the policy bounds each one with Config.UnitTimeout.
type UnitLimiter interface {
	// UnitForCgroup names the unit whose cgroup is exactly cg, "" when
	// systemd does not manage it.
	UnitForCgroup(ctx context.Context, cgroup string) (string, error)
	SetMemoryMax(ctx context.Context, unit string, bytes uint64) error
	// OOMPolicy is the unit's OOMPolicy= ("" when it has none).
	OOMPolicy(ctx context.Context, unit string) (string, error)
}

// systemdUnit returns the systemd unit that owns v2 cgroup cg, or "" when
// none does or systemd cannot be asked (then cgroupfs is written directly).
// Only cgroups named like a unit ("….service", "….scope") are asked.
func (p *Policy) systemdUnit(ctx context.Context, cg string) string {
	if p.cfg.Units == nil || p.cg.Version != 2 {
		return ""
	}
	base := path.Base(cgroupfs.Clean(cg))
	if !strings.HasSuffix(base, ".service") && !strings.HasSuffix(base, ".scope") {
		return ""
	}
	var unit string
	err := p.unitCall(ctx, func(ctx context.Context) (err error) {
		unit, err = p.cfg.Units.UnitForCgroup(ctx, cgroupfs.Clean(cg))
		return err
	})
	if err != nil {
		p.log.Warn().Err(err).Str("cgroup", cg).Msg("cannot ask systemd which unit owns the cgroup: writing its limit directly")
		return ""
	}
	if unit != base {
		return ""
	}
	return unit
}

// raiseLimit raises the limit holder's limit by Step up to Ceiling (of the
// original), verifying after each step, and remembers the original so the
// reverter can put it back once usage has been well below it for a while.
func (p *Policy) raiseLimit(ctx context.Context, log zerolog.Logger, inc *watchdog.Incident, opts Options) ([]Action, bool) {
	var results []Action
	for {
		r, again := p.raiseOnce(ctx, log, inc, opts)
		results = append(results, r)
		if r.Verified {
			return results, true
		}
		if !again || opts.DryRun {
			return results, opts.DryRun
		}
	}
}

// nextLimits is one raise step from cur: the limit up by step, page-aligned
// (the kernel keeps whole pages, so the value written is the value read
// back) and at most ceiling; v1 memsw up by the same amount, so the swap
// the cgroup may use stays what it was. An unlimited memsw stays unlimited.
func nextLimits(cur cgroupfs.Limits, step, ceiling uint64) cgroupfs.Limits {
	next := cur
	next.Mem = cgroupfs.PageAlign(min(cur.Mem+max(step, cgroupfs.PageSize()), ceiling))
	if next.Mem > cur.Mem && cur.HasMemsw && cur.Memsw != cgroupfs.Unlimited {
		next.Memsw = cur.Memsw + (next.Mem - cur.Mem)
	}
	return next
}

func (p *Policy) raiseOnce(ctx context.Context, log zerolog.Logger, inc *watchdog.Incident, opts Options) (Action, bool) {
	start := time.Now()
	r := Action{Name: RaiseLimit}
	curL, err := p.cg.Limits(inc.Cgroup)
	if err != nil {
		r.Error = err.Error()
		return r, false
	}
	cur := curL.Mem
	if cur == cgroupfs.Unlimited {
		r.Error = "no limit to raise"
		return r, false
	}
	rec := p.raised.get(inc.Cgroup)
	orig := cur
	if rec != nil {
		orig = rec.Original
	}
	ceiling := opts.RaiseCeiling.Of(orig)
	if opts.RaiseCeiling.Percent == 0 {
		ceiling = max(opts.RaiseCeiling.Bytes, orig)
	}
	// The kernel keeps whole pages: a ceiling between two pages is reached
	// at the page below it.
	ceiling = cgroupfs.PageAlign(ceiling)
	nextL := nextLimits(curL, opts.RaiseStep.Of(orig), ceiling)
	next := nextL.Mem
	if next <= cur {
		r.Error = fmt.Sprintf("limit %d already at the ceiling %d", cur, ceiling)
		return r, false
	}
	r.Detail = fmt.Sprintf("limit %d -> %d (original %d, ceiling %d)", cur, next, orig, ceiling)
	if opts.DryRun {
		r.Detail = "dry-run: would raise " + r.Detail
		return r, false
	}
	if !p.allow(inc.Cgroup, &r) {
		return r, false
	}
	if rec == nil {
		rec = &raiseRecord{Cgroup: inc.Cgroup, Version: p.cg.Version, Original: orig, Incident: inc.ID,
			At: time.Now(), Margin: opts.RevertMargin.Of(orig), Hold: opts.RevertHold,
			OriginalMemsw: curL.Memsw, HasMemsw: curL.HasMemsw}
		rec.Unit = p.systemdUnit(ctx, inc.Cgroup)
	}
	base, err := p.progress(inc.Cgroup)
	if err != nil {
		r.Error = err.Error()
		return r, false
	}
	// Remember before writing: a crash between the two must still revert.
	// Prev is the limit before this step, so a restart recognises both
	// "written" (Raised) and "crashed before the write" (Prev) as ours.
	rec.setStep(curL, nextL)
	rec.BelowSince = time.Time{}
	if err := p.raised.put(rec); err != nil {
		log.Error().Err(err).Msg("cannot persist the raised limit: a restart will not revert it")
	}
	p.intend(inc, Action{Name: RaiseLimit, Detail: fmt.Sprintf("raising the limit %d -> %d (original %d)", cur, next, orig)})
	if err := p.setLimits(ctx, rec, nextL); err != nil {
		r.Error = err.Error()
		// A cgroupfs write is done when it returns and SetLimits leaves the
		// limits as they were when it fails: if they read so, this step
		// changed nothing and is forgotten (the whole record on a first
		// step). A systemd call that failed or went unanswered may still be
		// applied later, so its record stays, naming both values as ours.
		if now, err2 := p.cg.Limits(inc.Cgroup); rec.Unit == "" && err2 == nil && now == curL {
			if cur == orig {
				_ = p.raised.del(inc.Cgroup)
			} else {
				rec.setStep(curL, curL)
				_ = p.raised.put(rec)
			}
		}
		p.startReverter()
		return r, false
	}
	// Keep what the kernel holds, which is what the reverter compares with;
	// limits still unchanged (systemd slower than UnitTimeout) keep the
	// step as written, so that either value is recognised as ours.
	if got, err := p.readBack(ctx, rec, curL, nextL); err == nil && got != nextL && got != curL {
		log.Warn().Uint64("wrote", next).Uint64("reads", got.Mem).Msg("the raised limit reads back other than written")
		rec.setStep(curL, got)
		if err := p.raised.put(rec); err != nil {
			log.Error().Err(err).Msg("cannot persist the raised limit: a restart will not revert it")
		}
		next = got.Mem
	}
	r.Done = true
	p.startReverter()
	log.Warn().Uint64("original_limit", orig).Uint64("new_limit", next).Str("unit", rec.Unit).Msg("raised the memory limit")
	r.Verified, r.Detail = p.verifyStopped(ctx, inc.Cgroup, base, opts)
	r.Detail = fmt.Sprintf("limit %d -> %d (original %d, ceiling %d); %s", cur, next, orig, ceiling, r.Detail)
	r.Took = Millis(time.Since(start))
	return r, next < ceiling
}

// setLimits writes through systemd when it owns the cgroup (v2: MemoryMax
// only), else cgroupfs.
func (p *Policy) setLimits(ctx context.Context, rec *raiseRecord, l cgroupfs.Limits) error {
	if rec.Unit != "" && p.cfg.Units != nil {
		err := p.unitCall(ctx, func(ctx context.Context) error {
			return p.cfg.Units.SetMemoryMax(ctx, rec.Unit, cgroupfs.PageAlign(l.Mem))
		})
		if err != nil {
			return fmt.Errorf("set MemoryMax of %s via systemd: %w", rec.Unit, err)
		}
		return nil
	}
	return p.cg.SetLimits(rec.Cgroup, l)
}

// unitCall runs f, a call to Units, for at most UnitTimeout whether or not
// f honours its context: a D-Bus peer that never answers must not hold a
// ladder or the reverter. A call left running holds unitBusy until it
// returns, so a hung service manager costs one goroutine, not one per
// attempt; later calls wait for it only until their own timeout.
func (p *Policy) unitCall(ctx context.Context, f func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.UnitTimeout)
	select {
	case p.unitBusy <- struct{}{}:
	case <-ctx.Done():
		cancel()
		return fmt.Errorf("an earlier call to systemd is still unanswered after %v: %w", p.cfg.UnitTimeout, ctx.Err())
	}
	done := make(chan error, 1)
	go func() {
		defer func() { <-p.unitBusy }()
		defer cancel()
		done <- f(ctx)
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("no answer from systemd within %v: %w", p.cfg.UnitTimeout, ctx.Err())
	}
}

// readBack reads cg's limits after setLimits moved them from before to
// want. systemd answers SetMemoryMax before it writes memory.max (the write
// waits for its cgroup realize step), so through systemd a read that still
// finds before is retried for up to UnitTimeout; the last read is returned.
func (p *Policy) readBack(ctx context.Context, rec *raiseRecord, before, want cgroupfs.Limits) (cgroupfs.Limits, error) {
	deadline := time.Now().Add(p.cfg.UnitTimeout)
	for {
		got, err := p.cg.Limits(rec.Cgroup)
		if err != nil || got == want || got != before || rec.Unit == "" || time.Now().After(deadline) {
			return got, err
		}
		select {
		case <-ctx.Done():
			return got, nil
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// restoreLimits puts the original limits back exactly and checks that they
// read back so; until they do, the record stays and the reverter retries.
func (p *Policy) restoreLimits(ctx context.Context, rec *raiseRecord, cur cgroupfs.Limits) error {
	want := rec.original()
	if err := p.setLimits(ctx, rec, want); err != nil {
		return err
	}
	got, err := p.readBack(ctx, rec, cur, want)
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("limits read %+v after writing the original %+v", got, want)
	}
	return nil
}

// startReverter runs the revert loop while raised limits exist.
func (p *Policy) startReverter() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.reverting || p.raised.len() == 0 {
		return
	}
	p.reverting = true
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.revertLoop()
	}()
}

func (p *Policy) revertLoop() {
	for {
		tick := p.raised.tick()
		select {
		case <-p.ctx.Done():
			p.mu.Lock()
			p.reverting = false
			p.mu.Unlock()
			return
		case <-time.After(tick):
		}
		p.revertDue(time.Now())
		p.mu.Lock()
		if p.raised.len() == 0 {
			p.reverting = false
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
	}
}

// revertDue puts back each original limit once usage has stayed below
// original - margin for the hold time. Lowering v2 memory.max below usage
// would OOM-kill and v1 would fail with EBUSY, hence the margin and hold.
func (p *Policy) revertDue(now time.Time) {
	for _, rec := range p.raised.all() {
		log := p.log.With().Str("cgroup", rec.Cgroup).Uint64("original_limit", rec.Original).Logger()
		if !p.cg.Exists(rec.Cgroup) {
			log.Info().Msg("raised cgroup is gone: nothing to revert")
			_ = p.raised.del(rec.Cgroup)
			continue
		}
		cur, err := p.cg.Limits(rec.Cgroup)
		if err != nil {
			continue
		}
		if !rec.ours(cur) {
			log.Warn().Uint64("limit", cur.Mem).Uint64("raised_to", rec.Raised).Msg("limit changed by someone else since the raise: leaving it alone")
			_ = p.raised.del(rec.Cgroup)
			continue
		}
		usage, err := p.cg.Usage(rec.Cgroup)
		if err != nil {
			continue
		}
		if usage+rec.Margin >= rec.Original {
			if !rec.BelowSince.IsZero() {
				rec.BelowSince = time.Time{}
				_ = p.raised.put(&rec)
			}
			continue
		}
		if rec.BelowSince.IsZero() {
			rec.BelowSince = now
			_ = p.raised.put(&rec)
			continue
		}
		if now.Sub(rec.BelowSince) < rec.Hold {
			continue
		}
		r := Action{Name: RaiseLimit}
		if !p.allowRevert(rec.Cgroup, &r) {
			continue
		}
		if err := p.restoreLimits(p.ctx, &rec, cur); err != nil {
			if errors.Is(err, syscall.EBUSY) {
				continue // v1: usage rose above the original again; try later
			}
			log.Error().Err(err).Msg("cannot revert the raised limit")
			continue
		}
		_ = p.raised.del(rec.Cgroup)
		log.Warn().Str("event", "reverted").Uint64("usage", usage).Dur("below_for", now.Sub(rec.BelowSince)).Msg("reverted the raised memory limit")
	}
}

// raiseRecord is one raised limit, persisted so a restart still reverts it.
// Raised and RaisedMemsw are what the kernel reported after the write.
type raiseRecord struct {
	Cgroup        string        `json:"cgroup"`
	Version       int           `json:"cgroup_version"`
	Original      uint64        `json:"original_limit"`
	OriginalMemsw uint64        `json:"original_memsw_limit,omitempty"`
	HasMemsw      bool          `json:"has_memsw,omitempty"`
	Raised        uint64        `json:"raised_to"`
	Prev          uint64        `json:"raised_from"` // the limit before the last step
	RaisedMemsw   uint64        `json:"raised_memsw_to,omitempty"`
	PrevMemsw     uint64        `json:"raised_memsw_from,omitempty"`
	Unit          string        `json:"systemd_unit,omitempty"`
	Margin        uint64        `json:"revert_margin"`
	Hold          time.Duration `json:"revert_hold_ns"`
	Incident      string        `json:"incident"`
	At            time.Time     `json:"raised_at"`
	BelowSince    time.Time     `json:"below_since"`
}

// setStep records a step from prev to raised.
func (r *raiseRecord) setStep(prev, raised cgroupfs.Limits) {
	r.Prev, r.Raised = prev.Mem, raised.Mem
	if r.HasMemsw {
		r.PrevMemsw, r.RaisedMemsw = prev.Memsw, raised.Memsw
	}
}

func (r *raiseRecord) original() cgroupfs.Limits {
	return cgroupfs.Limits{Mem: r.Original, Memsw: r.OriginalMemsw, HasMemsw: r.HasMemsw}
}

// ours reports whether limits l are this record's doing: the last step
// written (Raised) or not yet written (Prev). A record without the memsw
// step (RaisedMemsw 0) checks the memory limit only.
func (r *raiseRecord) ours(l cgroupfs.Limits) bool {
	if l.Mem != r.Raised && l.Mem != r.Prev {
		return false
	}
	if !r.HasMemsw || r.RaisedMemsw == 0 || !l.HasMemsw {
		return true
	}
	return l.Memsw == r.RaisedMemsw || l.Memsw == r.PrevMemsw
}

// check refuses a record that cannot have been written by raiseOnce, so a
// damaged file never makes the reverter write a made-up limit.
func (r raiseRecord) check() error {
	switch {
	case r.Cgroup == "" || r.Cgroup != cgroupfs.Clean(r.Cgroup) || r.Cgroup == "/":
		return fmt.Errorf("cgroup %q is not a cgroup path", r.Cgroup)
	case r.Version != 1 && r.Version != 2:
		return fmt.Errorf("%s: cgroup version %d", r.Cgroup, r.Version)
	case r.Original == 0 || r.Original == cgroupfs.Unlimited || r.Raised <= r.Original:
		return fmt.Errorf("%s: original limit %d, raised to %d", r.Cgroup, r.Original, r.Raised)
	case r.HasMemsw && (r.OriginalMemsw < r.Original):
		return fmt.Errorf("%s: original memsw limit %d below the original limit %d", r.Cgroup, r.OriginalMemsw, r.Original)
	case r.Hold <= 0:
		return fmt.Errorf("%s: revert hold %v", r.Cgroup, r.Hold)
	}
	return nil
}

// raiseStore keeps raise records in memory and, with a state dir, in
// raised.json written atomically (temp file, fsync, rename, fsync dir).
type raiseStore struct {
	mu   sync.Mutex
	file string
	recs map[string]raiseRecord
}

const raisedFile = "raised.json"

// openRaiseStore loads dir/raised.json. A damaged file is kept aside with
// the records read before the damage (see loadRecords); a file that cannot
// be read, or kept aside, is never written over: raises then live in
// memory only, and the error says so.
func openRaiseStore(dir string) (*raiseStore, error) {
	s := &raiseStore{recs: map[string]raiseRecord{}}
	if dir == "" {
		return s, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return s, fmt.Errorf("create state dir: %w", err)
	}
	file := filepath.Join(dir, raisedFile)
	recs, err := loadRecords(file, raiseRecord.check)
	for _, r := range recs {
		s.recs[r.Cgroup] = r
	}
	if c := (*corruptStateError)(nil); err == nil || errors.As(err, &c) && c.Writable() {
		s.file = file
	}
	return s, err
}

func (s *raiseStore) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.recs)
}

func (s *raiseStore) get(cg string) *raiseRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.recs[cg]; ok {
		return &r
	}
	return nil
}

func (s *raiseStore) all() []raiseRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]raiseRecord, 0, len(s.recs))
	for _, r := range s.recs {
		out = append(out, r)
	}
	return out
}

// tick is how often the reverter looks: a tenth of the shortest hold,
// between 100 ms and 5 s.
func (s *raiseStore) tick() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := 5 * time.Second
	for _, r := range s.recs {
		t = min(t, r.Hold/10)
	}
	return max(t, 100*time.Millisecond)
}

func (s *raiseStore) put(r *raiseRecord) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recs[r.Cgroup] = *r
	return s.saveLocked()
}

func (s *raiseStore) del(cg string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.recs, cg)
	return s.saveLocked()
}

func (s *raiseStore) saveLocked() error {
	if s.file == "" {
		return nil
	}
	recs := make([]raiseRecord, 0, len(s.recs))
	for _, r := range s.recs {
		recs = append(recs, r)
	}
	b, err := json.MarshalIndent(recs, "", "  ")
	if err != nil {
		return err
	}
	return writeAtomic(s.file, b)
}

// writeAtomic replaces file with data so that a crash leaves the old or the
// new content, never a mix.
func writeAtomic(file string, data []byte) error {
	dir := filepath.Dir(file)
	f, err := os.CreateTemp(dir, "."+filepath.Base(file)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", file, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", file, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", file, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, file); err != nil {
		return fmt.Errorf("replace %s: %w", file, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
