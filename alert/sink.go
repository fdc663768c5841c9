package alert

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// One sink's queue: admission (dedup, rate limit, an incident's lifecycle
// order), the spool on disk, delivery with retries, re-sends, and stopping.

// item is one queued document.
type item struct {
	doc       Document
	spoolPath string // "" until spooled
	inflight  bool
	done      bool
	replayed  bool
}

// incState is what a sink remembers of an incident for the rate limit and
// its lifecycle.
type incState struct {
	admitted   bool // a document of it went through the rate limit
	suppressed bool // its first document was rate-limited
	resolved   bool // a resolved document of it was accepted
	seen       time.Time
}

// order keeps an incident's documents in its lifecycle: nothing firing
// follows its resolution. A firing document that comes after it (the
// ladder's outcome, reported by the policy goroutine once the watchdog has
// resolved the incident) is turned into a resolved-state one that keeps
// its type and actions, so receivers still learn what the ladder did and
// no page reopens: Alertmanager gets an endsAt in the past, PagerDuty
// another resolve, webhooks and hooks status "resolved".
func (st *incState) order(doc Document) Document {
	if !doc.firing() {
		st.resolved = true
		return doc
	}
	if st.resolved {
		return doc.asResolved()
	}
	return doc
}

type sink struct {
	name, kind string
	opts       Options
	log        zerolog.Logger
	spool      *spool

	// impl and resendTick belong to the deliver goroutine (and to stop once
	// it has ended): a new deliverer waits in pending until the attempt in
	// flight is over.
	impl       deliverer
	resendTick *time.Ticker

	mu        sync.Mutex
	dl        Delivery
	pending   deliverer // set by reconfigure, adopted by the deliver goroutine
	queue     []*item
	closing   bool
	dedup     map[string]time.Time
	incidents map[string]*incState
	tokens    float64
	refilled  time.Time
	limited   uint64 // rate-limited since the last summary log line
	lastLimit time.Time

	wake      chan struct{} // deliverer: something was queued
	reconf    chan struct{} // deliverer: new settings are pending
	spoolWake chan struct{} // spooler: something to write
	quit      chan struct{} // closed by stop: drain then exit
	hardCtx   context.Context
	hardStop  context.CancelFunc
	wg        sync.WaitGroup

	sent, failed, dropped, retried, deduped, rateLimited, resent atomic.Uint64
}

func newSink(name, kind string, dl Delivery, impl deliverer, opts Options, log zerolog.Logger) *sink {
	s := &sink{
		name: name, kind: kind, dl: dl, impl: impl, opts: opts,
		log:       log.With().Str("sink", name).Str("kind", kind).Logger(),
		dedup:     map[string]time.Time{},
		incidents: map[string]*incState{},
		tokens:    float64(dl.RatePerMinute),
		refilled:  time.Now(),
		wake:      make(chan struct{}, 1),
		reconf:    make(chan struct{}, 1),
		spoolWake: make(chan struct{}, 1),
		quit:      make(chan struct{}),
	}
	s.hardCtx, s.hardStop = context.WithCancel(context.Background())
	if opts.StateDir != "" {
		s.spool = newSpool(opts.StateDir, name, s.log)
	}
	return s
}

func (s *sink) start() {
	s.wg.Add(2)
	go s.runDeliver()
	go s.runSpool()
}

func kick(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// reconfigure hands new settings to a running sink. The deliverer is
// adopted by the deliver goroutine between attempts, never under one.
func (s *sink) reconfigure(dl Delivery, impl deliverer) {
	s.mu.Lock()
	if rate := float64(dl.RatePerMinute); s.dl.RatePerMinute > 0 {
		s.tokens = min(s.tokens, rate)
	} else {
		s.tokens, s.refilled = rate, time.Now() // newly limited: a full bucket, as at start
	}
	s.dl = dl
	if s.pending != nil {
		s.pending.close() // replaced before it was used
	}
	s.pending = impl
	s.mu.Unlock()
	kick(s.reconf)
}

// adopt switches to a pending deliverer; deliver goroutine only. The
// Alertmanager firing and resolving sets move to the new one, so long
// incidents stay active across a reload.
func (s *sink) adopt() {
	s.mu.Lock()
	nw := s.pending
	s.pending = nil
	s.mu.Unlock()
	if nw == nil {
		return
	}
	if a, ok := nw.(*alertmanagerSink); ok {
		if o, ok := s.impl.(*alertmanagerSink); ok {
			a.takeOver(o)
		}
	}
	s.impl.close()
	s.impl = nw
	if r, ok := nw.(resender); ok && s.resendTick != nil {
		s.resendTick.Reset(r.interval())
	}
	s.log.Info().Msg("alert sink reconfigured")
}

func (s *sink) delivery() Delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dl
}

// send applies the incident's lifecycle, dedup and the rate limit, then
// queues doc.
func (s *sink) send(doc Document, closed bool) {
	now := time.Now()
	s.mu.Lock()
	if closed || s.closing {
		s.mu.Unlock()
		s.dropped.Add(1)
		s.log.Warn().Str("event_id", doc.EventID).Msg("alert after close: dropped")
		return
	}
	if doc.Type == TypeRisk && !s.dl.Risk && !s.announced(doc) {
		s.mu.Unlock()
		return // not opted in
	}
	doc, ok := s.admit(doc, now)
	if !ok {
		s.mu.Unlock()
		return
	}
	s.pushLocked(&item{doc: doc})
	s.mu.Unlock()
	kick(s.spoolWake)
	kick(s.wake)
}

// incident returns, under s.mu, what the sink remembers of an incident.
func (s *sink) incident(id string, now time.Time) *incState {
	st := s.incidents[id]
	if st == nil {
		st = &incState{}
		s.incidents[id] = st
	}
	st.seen = now
	return st
}

// announced reports, under s.mu, whether doc resolves a risk this sink
// announced: its resolution is sent although risk was turned off since, so
// no page stays open.
func (s *sink) announced(doc Document) bool {
	st := s.incidents[doc.lifecycle()]
	return !doc.firing() && st != nil && st.admitted && !st.resolved
}

// admit decides, under s.mu, whether doc goes into the queue, and in which
// state (see incState.order).
func (s *sink) admit(doc Document, now time.Time) (Document, bool) {
	s.prune(now)
	st := s.incident(doc.lifecycle(), now)
	if doc.Type == TypeRisk && doc.firing() && (st.admitted || st.resolved) {
		// Each risk episode fires once per sink: the daemon announces the
		// risks again after a reload, for sinks that just opted in.
		s.deduped.Add(1)
		return doc, false
	}
	if st.resolved && doc.firing() {
		s.log.Info().Str("event_id", doc.EventID).Str("incident", doc.IncidentID).Str("type", doc.Type).
			Msg("alert after the incident's resolution: sent as resolved")
	}
	doc = st.order(doc)
	key := doc.IncidentID + "\x00" + doc.Type
	if doc.Type == TypeRisk {
		// A risk's firing and resolved documents share a type: the
		// episode and status tell them apart.
		key = doc.lifecycle() + "\x00" + doc.Status
	}
	if s.dl.DedupWindow > 0 {
		if t, ok := s.dedup[key]; ok && now.Sub(t) < s.dl.DedupWindow {
			s.deduped.Add(1)
			return doc, false
		}
	}
	limited := false
	if doc.Status == StatusResolved {
		// Never leave a page open: a resolution goes through unless the
		// incident was never announced on this sink.
		limited = st.suppressed && !st.admitted
	} else if s.dl.RatePerMinute > 0 {
		rate := float64(s.dl.RatePerMinute)
		s.tokens = min(rate, s.tokens+now.Sub(s.refilled).Minutes()*rate)
		s.refilled = now
		if s.tokens >= 1 {
			s.tokens--
		} else {
			limited = true
			if !st.admitted {
				st.suppressed = true
			}
		}
	}
	if limited {
		s.rateLimited.Add(1)
		s.dropped.Add(1)
		s.limited++
		// One summary line per minute, however big the storm.
		if now.Sub(s.lastLimit) >= time.Minute {
			s.log.Warn().Uint64("suppressed", s.limited).Int("rate_per_minute", s.dl.RatePerMinute).Msg("alert rate limit: documents dropped")
			s.limited, s.lastLimit = 0, now
		}
		return doc, false
	}
	st.admitted = true
	s.dedup[key] = now
	return doc, true
}

// prune bounds the dedup and incident memories.
func (s *sink) prune(now time.Time) {
	const maxEntries = 10000
	keep := max(s.dl.DedupWindow, time.Hour)
	if len(s.dedup) > maxEntries/2 {
		for k, t := range s.dedup {
			if now.Sub(t) > keep || len(s.dedup) > maxEntries {
				delete(s.dedup, k)
			}
		}
	}
	if len(s.incidents) > maxEntries/2 {
		for k, st := range s.incidents {
			if now.Sub(st.seen) > 24*time.Hour {
				delete(s.incidents, k)
			}
		}
	}
	if len(s.incidents) > maxEntries {
		// The least recently seen go first: a late document of an incident
		// resolved moments ago must still find it resolved.
		ids := make([]string, 0, len(s.incidents))
		for k := range s.incidents {
			ids = append(ids, k)
		}
		slices.SortFunc(ids, func(a, b string) int { return s.incidents[a].seen.Compare(s.incidents[b].seen) })
		for _, k := range ids[:len(ids)-maxEntries/2] {
			delete(s.incidents, k)
		}
	}
}

// pushLocked appends it, dropping the oldest waiting item when full: the
// oldest firing one while there is one, so that a storm does not cost a
// page its resolution.
func (s *sink) pushLocked(it *item) {
	for len(s.queue) >= s.dl.QueueSize {
		i := s.victimLocked()
		if i < 0 {
			break
		}
		old := s.queue[i]
		s.queue = append(s.queue[:i], s.queue[i+1:]...)
		old.done = true
		s.dropped.Add(1)
		s.log.Warn().Str("event_id", old.doc.EventID).Str("incident", old.doc.IncidentID).Int("queue_size", s.dl.QueueSize).Msg("alert queue full: oldest dropped")
		if old.spoolPath != "" {
			s.spool.remove(old.spoolPath)
		}
	}
	s.queue = append(s.queue, it)
}

// victimLocked is the index of the item a full queue drops, -1 if all are
// in flight.
func (s *sink) victimLocked() int {
	oldest := -1
	for i, q := range s.queue {
		if q.inflight {
			continue
		}
		if q.doc.firing() {
			return i
		}
		if oldest < 0 {
			oldest = i
		}
	}
	return oldest
}

// replay queues what a previous run left in the spool.
func (s *sink) replay() {
	if s.spool == nil {
		return
	}
	dl := s.delivery()
	maxAge := dl.MaxAge
	// The queue holds QueueSize: more spooled documents than that would be
	// dropped as they are pushed; they are not even read.
	loaded, dropped := s.spool.load(dl.QueueSize)
	if dropped > 0 {
		s.dropped.Add(uint64(dropped))
		s.log.Warn().Int("dropped", dropped).Int("queue_size", dl.QueueSize).Msg("alert spool holds more documents than the queue: the oldest dropped")
	}
	for _, e := range loaded {
		if age := time.Since(e.queued); age > maxAge {
			s.dropped.Add(1)
			s.log.Warn().Str("event_id", e.doc.EventID).Dur("age", age).Msg("spooled alert too old: dropped")
			s.spool.remove(e.path)
			continue
		}
		s.mu.Lock()
		// The spool is in queue order: a firing document spooled after its
		// incident's resolution is replayed as resolved too.
		doc := s.incident(e.doc.lifecycle(), time.Now()).order(e.doc)
		s.pushLocked(&item{doc: doc, spoolPath: e.path, replayed: true})
		s.mu.Unlock()
	}
	if n := len(s.queue); n > 0 {
		s.log.Info().Int("documents", n).Msg("alert spool replayed")
	}
}

// runSpool writes queued items to disk so a crash or restart loses none.
func (s *sink) runSpool() {
	defer s.wg.Done()
	for {
		select {
		case <-s.spoolWake:
			s.spoolPending()
		case <-s.quit:
			return
		}
	}
}

// spoolPending writes every queued item not on disk yet.
func (s *sink) spoolPending() error {
	if s.spool == nil {
		return nil
	}
	var errs []error
	for {
		s.mu.Lock()
		var it *item
		for _, q := range s.queue {
			if q.spoolPath == "" && !q.done {
				it = q
				break
			}
		}
		s.mu.Unlock()
		if it == nil {
			return errors.Join(errs...)
		}
		// Marshalled here, off the senders' path; doc does not change once
		// queued.
		body, err := json.Marshal(it.doc)
		path := ""
		if err == nil {
			path, err = s.spool.write(body)
		}
		s.mu.Lock()
		delivered := it.done
		switch {
		case err != nil:
			it.spoolPath = "-" // memory only; the error was reported once
			errs = append(errs, err)
		case !delivered:
			it.spoolPath = path
		}
		s.mu.Unlock()
		if err == nil && delivered {
			s.spool.remove(path) // delivered while being written
		}
	}
}

// next returns the oldest item, marked in flight; nil when stopping.
func (s *sink) next(resend <-chan time.Time) *item {
	for {
		s.adopt()
		s.mu.Lock()
		if len(s.queue) > 0 && s.hardCtx.Err() == nil {
			it := s.queue[0]
			it.inflight = true
			s.mu.Unlock()
			return it
		}
		closing := s.closing
		s.mu.Unlock()
		if closing || s.hardCtx.Err() != nil {
			return nil
		}
		select {
		case <-s.wake:
		case <-s.reconf:
		case <-s.quit:
		case <-s.hardCtx.Done():
		case <-resend:
			s.resend()
		}
	}
}

func (s *sink) runDeliver() {
	defer s.wg.Done()
	var resend <-chan time.Time
	if r, ok := s.impl.(resender); ok {
		s.resendTick = time.NewTicker(r.interval())
		defer s.resendTick.Stop()
		resend = s.resendTick.C
	}
	for {
		it := s.next(resend)
		if it == nil {
			return
		}
		s.deliverItem(it, resend)
	}
}

// finish removes it from the queue (and the spool).
func (s *sink) finish(it *item) {
	s.mu.Lock()
	for i, q := range s.queue {
		if q == it {
			s.queue = append(s.queue[:i], s.queue[i+1:]...)
			break
		}
	}
	it.done = true
	path := it.spoolPath
	s.mu.Unlock()
	if path != "" && path != "-" {
		s.spool.remove(path)
	}
}

// deliverItem tries until delivered, given up, or the sink is stopped hard
// (then the item stays queued and is spooled).
func (s *sink) deliverItem(it *item, resend <-chan time.Time) {
	backoff := s.opts.BackoffInitial
	queued, _ := time.Parse(time.RFC3339Nano, it.doc.SentAt)
	for attempt := 1; ; attempt++ {
		s.adopt()
		dl := s.delivery()
		ctx, cancel := context.WithTimeout(s.hardCtx, dl.Timeout)
		err := s.impl.deliver(ctx, it.doc)
		cancel()
		ev := func(e *zerolog.Event) *zerolog.Event {
			return e.Str("event_id", it.doc.EventID).Str("incident", it.doc.IncidentID).Str("type", it.doc.Type).Int("attempt", attempt)
		}
		if err == nil {
			s.sent.Add(1)
			ev(s.log.Debug()).Msg("alert delivered")
			if r, ok := s.impl.(resender); ok && !it.replayed {
				r.delivered(it.doc, time.Now())
			}
			s.finish(it)
			return
		}
		if s.hardCtx.Err() != nil {
			s.mu.Lock()
			it.inflight = false
			s.mu.Unlock()
			return
		}
		retry, after := retryable(err)
		tooOld := !queued.IsZero() && time.Since(queued) > dl.MaxAge
		if !retry || (dl.MaxAttempts > 0 && attempt >= dl.MaxAttempts) || tooOld {
			s.failed.Add(1)
			ev(s.log.Error()).Err(err).Bool("retryable", retry).Msg("alert not delivered: given up")
			s.finish(it)
			return
		}
		s.retried.Add(1)
		wait := backoff/2 + rand.N(backoff/2+1)
		if after > wait {
			wait = min(after, 15*time.Minute)
		}
		backoff = min(backoff*2, s.opts.BackoffMax)
		ev(s.log.Warn()).Err(err).Dur("retry_in", wait).Msg("alert delivery failed: will retry")
		t := time.NewTimer(wait)
	wait:
		for {
			select {
			case <-t.C:
				break wait
			case <-s.reconf: // new settings (a fixed URL): try now
				t.Stop()
				backoff = s.opts.BackoffInitial
				break wait
			case <-resend:
				s.resend()
			case <-s.hardCtx.Done():
				t.Stop()
				s.mu.Lock()
				it.inflight = false
				s.mu.Unlock()
				return
			}
		}
	}
}

// resend re-sends what a resender asks for: one attempt each; the next
// tick is the retry.
func (s *sink) resend() {
	s.adopt()
	r := s.impl.(resender)
	s.mu.Lock()
	closing, timeout := s.closing, s.dl.Timeout
	s.mu.Unlock()
	if closing {
		return
	}
	// Called under the resender's lock; s.mu is never held while taking it.
	over := func(id string) bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		st := s.incidents[id]
		return st != nil && st.resolved
	}
	for _, doc := range r.due(time.Now(), over) {
		ctx, cancel := context.WithTimeout(s.hardCtx, timeout)
		err := r.deliver(ctx, doc)
		cancel()
		if err != nil {
			s.log.Warn().Err(err).Str("incident", doc.IncidentID).Msg("alert re-send failed")
			continue
		}
		s.resent.Add(1)
	}
}

// stop drains until ctx ends, then spools the rest.
func (s *sink) stop(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	close(s.quit)
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		s.hardStop()
		<-done
	}
	s.hardStop()
	s.mu.Lock()
	for _, it := range s.queue {
		if it.spoolPath == "-" {
			it.spoolPath = "" // one more try: the disk may be back
		}
	}
	s.mu.Unlock()
	err := s.spoolPending()
	s.mu.Lock()
	left, unspooled := len(s.queue), 0
	for _, it := range s.queue {
		if it.spoolPath == "" || it.spoolPath == "-" {
			unspooled++
		}
	}
	pending := s.pending
	s.pending = nil
	s.mu.Unlock()
	if pending != nil {
		pending.close()
	}
	s.impl.close()
	if left > 0 {
		if unspooled > 0 {
			s.log.Error().Int("documents", unspooled).Err(err).Msg("alerts lost at close: not delivered, not spooled")
			return fmt.Errorf("alert sink %s: %d documents neither delivered nor spooled: %w", s.name, unspooled, errors.Join(err, errNoSpool(s.spool == nil)))
		}
		s.log.Warn().Int("documents", left).Msg("alerts spooled at close: delivered at next start")
	}
	return nil
}

func errNoSpool(none bool) error {
	if none {
		return errors.New("no state directory")
	}
	return nil
}

func (s *sink) stats() SinkStats {
	s.mu.Lock()
	depth := len(s.queue)
	s.mu.Unlock()
	return SinkStats{
		Name: s.name, Kind: s.kind,
		Sent: s.sent.Load(), Failed: s.failed.Load(), Dropped: s.dropped.Load(), Retried: s.retried.Load(),
		Deduped: s.deduped.Load(), RateLimited: s.rateLimited.Load(), Resent: s.resent.Load(),
		QueueDepth: depth,
	}
}
