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

// Options are the daemon-level settings of a Dispatcher.
type Options struct {
	// StateDir holds the spool (StateDir/spool/<sink>/). Empty: memory only.
	StateDir string
	// Version goes into User-Agent: oomwatch/<Version>.
	Version string
	// BackoffInitial and BackoffMax bound the exponential backoff between
	// attempts (defaults 1s and 1m); each wait is jittered to [d/2, d].
	BackoffInitial, BackoffMax time.Duration
}

// SinkStats are one sink's delivery counters, for the metrics endpoint.
type SinkStats struct {
	Name, Kind  string
	Sent        uint64 // documents delivered
	Failed      uint64 // documents given up (permanent error, attempts or age exhausted)
	Dropped     uint64 // documents never attempted: queue overflow, rate limit, too old, closed
	Retried     uint64 // attempts that failed and were retried
	Deduped     uint64 // documents skipped as duplicates (same incident and type within dedup_window)
	RateLimited uint64 // part of Dropped: over rate_per_minute
	Resent      uint64 // Alertmanager re-sends of firing and resolved alerts
	QueueDepth  int
}

// deliverer is one kind of sink: one attempt to hand a document over.
type deliverer interface {
	deliver(ctx context.Context, doc Document) error
	close()
}

// resender is a deliverer (Alertmanager) that wants documents re-sent on a
// timer after they were delivered.
type resender interface {
	deliverer
	interval() time.Duration
	delivered(doc Document, now time.Time)
	// due returns the documents to re-send now. over reports an incident
	// whose resolution the sink has accepted: its firing document is
	// forgotten, never re-sent, whatever became of the resolution.
	due(now time.Time, over func(incident string) bool) []Document
}

// deliveryError classifies a failed attempt.
type deliveryError struct {
	err        error
	retry      bool
	retryAfter time.Duration // from a Retry-After header
}

func (e *deliveryError) Error() string { return e.err.Error() }
func (e *deliveryError) Unwrap() error { return e.err }

func permanent(err error) error { return &deliveryError{err: err} }
func temporary(err error, after time.Duration) error {
	return &deliveryError{err: err, retry: true, retryAfter: after}
}

// retryable: errors not classified by a sink (connection refused, timeouts)
// are worth another attempt.
func retryable(err error) (bool, time.Duration) {
	var de *deliveryError
	if errors.As(err, &de) {
		return de.retry, de.retryAfter
	}
	return true, 0
}

// Dispatcher delivers documents to every configured sink. Send never blocks;
// each sink has its own queue, spool and goroutines, so a slow or dead
// endpoint delays nobody else.
type Dispatcher struct {
	log    zerolog.Logger
	sinks  []*sink
	closed atomic.Bool
	once   sync.Once
}

// New validates cfg, reads secret files, replays each sink's spool and
// starts delivering. A state directory that cannot be written is reported
// once and delivery goes on from memory.
func New(cfg Config, opts Options, log zerolog.Logger) (*Dispatcher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.BackoffInitial <= 0 {
		opts.BackoffInitial = time.Second
	}
	if opts.BackoffMax <= 0 {
		opts.BackoffMax = time.Minute
	}
	if opts.BackoffMax < opts.BackoffInitial {
		opts.BackoffMax = opts.BackoffInitial
	}
	if opts.Version == "" {
		opts.Version = "dev"
	}
	ua := "oomwatch/" + opts.Version
	d := &Dispatcher{log: log}
	fail := func(err error) (*Dispatcher, error) {
		for _, s := range d.sinks {
			s.impl.close()
		}
		return nil, err
	}
	en, wn, an, pn := cfg.sinkNames()
	for i, c := range cfg.Exec {
		dl := c.Delivery.withDefaults(KindExec)
		d.sinks = append(d.sinks, newSink(en[i], KindExec, dl, newExecSink(c, dl.Timeout, log.With().Str("sink", en[i]).Str("kind", KindExec).Logger()), opts, log))
	}
	for i, c := range cfg.Webhook {
		dl := c.Delivery.withDefaults(KindWebhook)
		impl, err := newWebhookSink(c, dl.Timeout, ua)
		if err != nil {
			return fail(fmt.Errorf("alert webhook[%d] (%s): %w", i, wn[i], err))
		}
		d.sinks = append(d.sinks, newSink(wn[i], KindWebhook, dl, impl, opts, log))
	}
	for i, c := range cfg.Alertmanager {
		dl := c.Delivery.withDefaults(KindAlertmanager)
		impl, err := newAlertmanagerSink(c, dl.Timeout, ua)
		if err != nil {
			return fail(fmt.Errorf("alert alertmanager[%d] (%s): %w", i, an[i], err))
		}
		d.sinks = append(d.sinks, newSink(an[i], KindAlertmanager, dl, impl, opts, log))
	}
	for i, c := range cfg.PagerDuty {
		dl := c.Delivery.withDefaults(KindPagerDuty)
		impl, err := newPagerDutySink(c, dl.Timeout, ua)
		if err != nil {
			return fail(fmt.Errorf("alert pagerduty[%d] (%s): %w", i, pn[i], err))
		}
		d.sinks = append(d.sinks, newSink(pn[i], KindPagerDuty, dl, impl, opts, log))
	}
	for _, s := range d.sinks {
		s.replay()
		s.start()
	}
	return d, nil
}

// Send queues doc for every sink and returns at once. A sink whose queue is
// full drops its oldest document (counted in Dropped).
func (d *Dispatcher) Send(doc Document) {
	for _, s := range d.sinks {
		s.send(doc, d.closed.Load())
	}
}

// Close stops accepting documents, keeps delivering until ctx ends, then
// spools what is left for the next start. It returns an error only when
// documents could be neither delivered nor spooled.
func (d *Dispatcher) Close(ctx context.Context) error {
	var errs []error
	d.once.Do(func() {
		d.closed.Store(true)
		var wg sync.WaitGroup
		var mu sync.Mutex
		for _, s := range d.sinks {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := s.stop(ctx); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
	})
	return errors.Join(errs...)
}

// Stats returns every sink's counters, in config order (exec, webhook,
// alertmanager, pagerduty).
func (d *Dispatcher) Stats() []SinkStats {
	out := make([]SinkStats, 0, len(d.sinks))
	for _, s := range d.sinks {
		out = append(out, s.stats())
	}
	return out
}

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
	dl         Delivery
	impl       deliverer
	opts       Options
	log        zerolog.Logger
	spool      *spool

	mu        sync.Mutex
	queue     []*item
	closing   bool
	dedup     map[string]time.Time
	incidents map[string]*incState
	tokens    float64
	refilled  time.Time
	limited   uint64 // rate-limited since the last summary log line
	lastLimit time.Time

	wake      chan struct{} // deliverer: something was queued
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

// admit decides, under s.mu, whether doc goes into the queue, and in which
// state (see incState.order).
func (s *sink) admit(doc Document, now time.Time) (Document, bool) {
	s.prune(now)
	st := s.incident(doc.IncidentID, now)
	if st.resolved && doc.firing() {
		s.log.Info().Str("event_id", doc.EventID).Str("incident", doc.IncidentID).Str("type", doc.Type).
			Msg("alert after the incident's resolution: sent as resolved")
	}
	doc = st.order(doc)
	key := doc.IncidentID + "\x00" + doc.Type
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
	for _, e := range s.spool.load() {
		if age := time.Since(e.queued); age > s.dl.MaxAge {
			s.dropped.Add(1)
			s.log.Warn().Str("event_id", e.doc.EventID).Dur("age", age).Msg("spooled alert too old: dropped")
			s.spool.remove(e.path)
			continue
		}
		s.mu.Lock()
		// The spool is in queue order: a firing document spooled after its
		// incident's resolution is replayed as resolved too.
		doc := s.incident(e.doc.IncidentID, time.Now()).order(e.doc)
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
		t := time.NewTicker(r.interval())
		defer t.Stop()
		resend = t.C
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
		ctx, cancel := context.WithTimeout(s.hardCtx, s.dl.Timeout)
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
		tooOld := !queued.IsZero() && time.Since(queued) > s.dl.MaxAge
		if !retry || (s.dl.MaxAttempts > 0 && attempt >= s.dl.MaxAttempts) || tooOld {
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
	r := s.impl.(resender)
	s.mu.Lock()
	closing := s.closing
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
		ctx, cancel := context.WithTimeout(s.hardCtx, s.dl.Timeout)
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
	s.mu.Unlock()
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
