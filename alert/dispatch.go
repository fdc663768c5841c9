package alert

import (
	"context"
	"errors"
	"fmt"
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
	// forgotten, never re-sent, whatever became of the resolution. Its
	// argument is the document's lifecycle key.
	due(now time.Time, over func(lifecycle string) bool) []Document
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
//
// A sink is the only owner of its spool directory for as long as the
// Dispatcher lives: Reconfigure swaps the settings of a sink that stays
// (same name and kind) in place, so its queue, spool, in-flight delivery,
// rate limit, incident memory and Alertmanager firing set carry over.
type Dispatcher struct {
	log    zerolog.Logger
	opts   Options
	reconf sync.Mutex   // serialises Reconfigure and Close
	mu     sync.RWMutex // guards sinks; never held while a sink drains
	sinks  []*sink
	closed atomic.Bool
	once   sync.Once
}

// New validates cfg, reads secret files, replays each sink's spool and
// starts delivering. A state directory that cannot be written is reported
// once and delivery goes on from memory.
func New(cfg Config, opts Options, log zerolog.Logger) (*Dispatcher, error) {
	opts = opts.withDefaults()
	built, err := build(cfg, opts, log)
	if err != nil {
		return nil, err
	}
	d := &Dispatcher{log: log, opts: opts}
	for _, b := range built {
		s := newSink(b.name, b.kind, b.dl, b.impl, opts, log)
		s.replay()
		s.start()
		d.sinks = append(d.sinks, s)
	}
	return d, nil
}

func (opts Options) withDefaults() Options {
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
	return opts
}

// built is one configured sink, its secrets read, not started.
type built struct {
	name, kind string
	dl         Delivery
	impl       deliverer
}

// build validates cfg and makes every sink's deliverer, in config order
// (exec, webhook, alertmanager, pagerduty). On error nothing is left open.
func build(cfg Config, opts Options, log zerolog.Logger) ([]built, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ua := "oomwatch/" + opts.Version
	var out []built
	fail := func(err error) ([]built, error) {
		for _, b := range out {
			b.impl.close()
		}
		return nil, err
	}
	en, wn, an, pn := cfg.sinkNames()
	for i, c := range cfg.Exec {
		dl := c.Delivery.withDefaults(KindExec)
		out = append(out, built{en[i], KindExec, dl, newExecSink(c, dl.Timeout, log.With().Str("sink", en[i]).Str("kind", KindExec).Logger())})
	}
	for i, c := range cfg.Webhook {
		dl := c.Delivery.withDefaults(KindWebhook)
		impl, err := newWebhookSink(c, dl.Timeout, ua)
		if err != nil {
			return fail(fmt.Errorf("alert webhook[%d] (%s): %w", i, wn[i], err))
		}
		out = append(out, built{wn[i], KindWebhook, dl, impl})
	}
	for i, c := range cfg.Alertmanager {
		dl := c.Delivery.withDefaults(KindAlertmanager)
		impl, err := newAlertmanagerSink(c, dl.Timeout, ua)
		if err != nil {
			return fail(fmt.Errorf("alert alertmanager[%d] (%s): %w", i, an[i], err))
		}
		out = append(out, built{an[i], KindAlertmanager, dl, impl})
	}
	for i, c := range cfg.PagerDuty {
		dl := c.Delivery.withDefaults(KindPagerDuty)
		impl, err := newPagerDutySink(c, dl.Timeout, ua)
		if err != nil {
			return fail(fmt.Errorf("alert pagerduty[%d] (%s): %w", i, pn[i], err))
		}
		out = append(out, built{pn[i], KindPagerDuty, dl, impl})
	}
	return out, nil
}

// errClosed: Reconfigure after Close.
var errClosed = errors.New("alert dispatcher closed")

// Reconfigure applies cfg (a SIGHUP reload). A sink whose name and kind
// stay keeps its queue, spool, in-flight delivery and incident memory; its
// new settings take over once the attempt in flight (if any) has ended, and
// a document waiting out a backoff is retried at once with them. A sink no
// longer configured drains until ctx ends and spools the rest, and only
// then does a new sink of that name (another kind) read the spool; what it
// could neither deliver nor spool is logged. On an error (invalid config,
// unreadable secret file) nothing changes.
func (d *Dispatcher) Reconfigure(ctx context.Context, cfg Config) error {
	d.reconf.Lock()
	defer d.reconf.Unlock()
	if d.closed.Load() {
		return errClosed
	}
	bs, err := build(cfg, d.opts, d.log)
	if err != nil {
		return err
	}
	d.mu.RLock()
	old := map[string]*sink{}
	for _, s := range d.sinks {
		old[s.name] = s
	}
	d.mu.RUnlock()
	next := make([]*sink, len(bs))
	kept := map[*sink]bool{}
	for i, b := range bs {
		if s := old[b.name]; s != nil && s.kind == b.kind {
			next[i], kept[s] = s, true
		}
	}
	var gone []*sink
	for _, s := range old {
		if !kept[s] {
			gone = append(gone, s)
		}
	}
	// Sinks that go leave Send's list first, then drain: a document sent
	// meanwhile does not reach them.
	d.mu.Lock()
	d.sinks = slices.DeleteFunc(slices.Clone(d.sinks), func(s *sink) bool { return !kept[s] })
	d.mu.Unlock()
	for _, s := range gone {
		_ = s.stop(ctx) // a loss is logged by the sink
	}
	for i, b := range bs {
		if s := next[i]; s != nil {
			s.reconfigure(b.dl, b.impl)
			continue
		}
		s := newSink(b.name, b.kind, b.dl, b.impl, d.opts, d.log)
		s.replay()
		s.start()
		next[i] = s
	}
	d.mu.Lock()
	d.sinks = next
	d.mu.Unlock()
	return nil
}

func (d *Dispatcher) current() []*sink {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.sinks
}

// Send queues doc for every sink and returns at once. A sink whose queue is
// full drops its oldest document (counted in Dropped).
func (d *Dispatcher) Send(doc Document) {
	closed := d.closed.Load()
	for _, s := range d.current() {
		s.send(doc, closed)
	}
}

// Close stops accepting documents, keeps delivering until ctx ends, then
// spools what is left for the next start. It returns an error only when
// documents could be neither delivered nor spooled.
func (d *Dispatcher) Close(ctx context.Context) error {
	var errs []error
	d.once.Do(func() {
		d.reconf.Lock()
		defer d.reconf.Unlock()
		d.closed.Store(true)
		var wg sync.WaitGroup
		var mu sync.Mutex
		for _, s := range d.current() {
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
	sinks := d.current()
	out := make([]SinkStats, 0, len(sinks))
	for _, s := range sinks {
		out = append(out, s.stats())
	}
	return out
}
