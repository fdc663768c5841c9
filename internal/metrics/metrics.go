// Package metrics exports what oomwatch sees and does as Prometheus metrics
// on a private registry, and serves them with a /healthz that tells whether
// the event loop is alive.
//
// Label values stay bounded: no per-PID labels; per-cgroup series only for
// cgroups with an open incident, capped at MaxCgroupSeries.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/oomwatch/oomwatch/alert"
	"github.com/oomwatch/oomwatch/internal/procfs"
	"github.com/oomwatch/oomwatch/policy"
	"github.com/oomwatch/oomwatch/watchdog"
)

// MaxCgroupSeries caps the per-cgroup series.
const MaxCgroupSeries = 100

// StuckAfter is how long the event loop may spend on one batch before
// /healthz calls it stuck.
const StuckAfter = 10 * time.Second

// WatchdogStats is what the metrics read from the watchdog.
type WatchdogStats interface{ Stats() watchdog.Stats }

// RiskStats is what the metrics read from the risk monitor.
type RiskStats interface{ AtRisk() []watchdog.Risk }

// AlertStats is what the metrics read from the alert dispatcher.
type AlertStats interface{ Stats() []alert.SinkStats }

// Metrics records incidents and ladder results (told by the report fan-out).
type Metrics struct {
	reg    *prometheus.Registry
	wd     WatchdogStats
	alerts AlertStats
	risk   RiskStats // nil: no risk monitor

	incidents   *prometheus.CounterVec
	actions     *prometheus.CounterVec
	detection   prometheus.Histogram
	remediation prometheus.Histogram

	mu   sync.Mutex
	open map[string]*watchdog.Incident // by incident id
}

var latencyBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

// New builds the registry. alerts may be nil.
func New(version string, wd WatchdogStats, alerts AlertStats) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(), wd: wd, alerts: alerts,
		open: map[string]*watchdog.Incident{},
		incidents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "oomwatch_incidents_total", Help: "Incidents opened, by verdict (loop, stalled, paused, forced-charge).",
		}, []string{"verdict"}),
		actions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "oomwatch_actions_total", Help: "Remediation actions, by action and result (verified, unverified, failed, dry_run).",
		}, []string{"action", "result"}),
		detection: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "oomwatch_detection_latency_seconds", Help: "Time from the first OOM event of an episode to the incident.", Buckets: latencyBuckets,
		}),
		remediation: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "oomwatch_remediation_latency_seconds", Help: "Time from the incident to the verified end of the loop.", Buckets: latencyBuckets,
		}),
	}
	for _, v := range []watchdog.Verdict{watchdog.VerdictLoop, watchdog.VerdictStalled, watchdog.VerdictPaused, watchdog.VerdictForced} {
		m.incidents.WithLabelValues(string(v)) // export zeros
	}
	// Every action × result from the first scrape, so rate() and
	// increase() rules work before the first incident.
	for _, rung := range policy.Rungs {
		for _, res := range actionResults {
			m.actions.WithLabelValues(rung, res)
		}
	}
	bi := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "oomwatch_build_info", Help: "Build information; always 1.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version()},
	})
	bi.Set(1)
	m.reg.MustRegister(m.incidents, m.actions, m.detection, m.remediation, bi, collector{m})
	return m
}

// SetRisk makes the metrics export the risk monitor's finding; call it
// before serving.
func (m *Metrics) SetRisk(r RiskStats) { m.risk = r }

// Registry is the private registry (tests, promlint).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// IncidentOpened records a new incident.
func (m *Metrics) IncidentOpened(inc *watchdog.Incident) {
	m.incidents.WithLabelValues(string(inc.Verdict)).Inc()
	// 0 is a real value: the first notification already carried enough
	// OOM events to decide.
	m.detection.Observe(inc.Evidence.Detection.Seconds())
	m.mu.Lock()
	m.open[inc.ID] = inc
	m.mu.Unlock()
}

// IncidentResolved forgets a resolved incident.
func (m *Metrics) IncidentResolved(inc *watchdog.Incident) {
	m.mu.Lock()
	delete(m.open, inc.ID)
	m.mu.Unlock()
}

// actionResults are the values of oomwatch_actions_total's result label.
var actionResults = []string{"verified", "unverified", "failed", "dry_run"}

// actionResult is r's result label.
func actionResult(r policy.Action) string {
	switch {
	case r.Error != "":
		return "failed"
	case !r.Done:
		return "dry_run"
	case r.Verified:
		return "verified"
	}
	return "unverified"
}

// LadderDone records a ladder's actions and, when it ended the loop, how
// long after the incident opened.
func (m *Metrics) LadderDone(inc *watchdog.Incident, acts []policy.Action, out policy.Outcome, end time.Time) {
	for _, a := range acts {
		m.actions.WithLabelValues(a.Name, actionResult(a)).Inc()
	}
	if out.Remediated() {
		m.remediation.Observe(end.Sub(inc.Started).Seconds())
	}
}

// Healthy says whether the event loop is alive: not stuck on one batch.
func (m *Metrics) Healthy(now time.Time) error {
	st := m.wd.Stats()
	if !st.BusySince.IsZero() && now.Sub(st.BusySince) > StuckAfter {
		return fmt.Errorf("event loop busy for %v", now.Sub(st.BusySince).Round(time.Millisecond))
	}
	return nil
}

var (
	descWatched    = prometheus.NewDesc("oomwatch_watched_cgroups", "Memory cgroups watched.", nil, nil)
	descOpen       = prometheus.NewDesc("oomwatch_open_incidents", "Incidents open now.", nil, nil)
	descOOMs       = prometheus.NewDesc("oomwatch_oom_events_total", "OOM events counted in watched cgroups.", nil, nil)
	descKills      = prometheus.NewDesc("oomwatch_oom_kills_total", "OOM kills counted in watched cgroups.", nil, nil)
	descNotes      = prometheus.NewDesc("oomwatch_notifications_total", "Kernel notifications handled by the event loop.", nil, nil)
	descLast       = prometheus.NewDesc("oomwatch_last_event_timestamp_seconds", "Unix time of the last kernel notification (0: none yet).", nil, nil)
	descBusy       = prometheus.NewDesc("oomwatch_event_loop_busy_seconds", "How long the event loop has been handling the current batch (0: waiting for the kernel).", nil, nil)
	descUnsupp     = prometheus.NewDesc("oomwatch_v1_notifications_unsupported", "1 when the kernel cannot notify v1 memory OOMs.", nil, nil)
	descCgroupOpen = prometheus.NewDesc("oomwatch_cgroup_incident_open", "1 for each cgroup with an open incident (at most 100 series).", []string{"cgroup", "verdict"}, nil)
	descCgroupOOMs = prometheus.NewDesc("oomwatch_cgroup_incident_oom_events", "OOM events in the window that opened the cgroup's incident.", []string{"cgroup"}, nil)
	descAtRisk     = prometheus.NewDesc("oomwatch_cgroups_would_loop", "Watched cgroups where the next OOM would loop: a limit and every task unkillable (at the last risk check).", nil, nil)
	descCgroupRisk = prometheus.NewDesc("oomwatch_cgroup_would_loop", "1 for each cgroup where the next OOM would loop (at most 100 series).", []string{"cgroup"}, nil)
	descSent       = prometheus.NewDesc("oomwatch_alert_deliveries_total", "Alert deliveries, by sink and result (sent, failed, dropped, retried).", []string{"sink", "kind", "result"}, nil)
	descQueue      = prometheus.NewDesc("oomwatch_alert_queue_depth", "Alerts waiting in a sink's queue.", []string{"sink", "kind"}, nil)
)

type collector struct{ m *Metrics }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descWatched, descOpen, descOOMs, descKills, descNotes, descLast, descBusy, descUnsupp, descCgroupOpen, descCgroupOOMs, descAtRisk, descCgroupRisk, descSent, descQueue} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	st := c.m.wd.Stats()
	gauge := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
	}
	counter := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, l...)
	}
	gauge(descWatched, float64(st.Watched))
	gauge(descOpen, float64(st.OpenIncidents))
	counter(descOOMs, float64(st.OOMs))
	counter(descKills, float64(st.Kills))
	counter(descNotes, float64(st.Events))
	last := 0.0
	if !st.LastEvent.IsZero() {
		last = float64(st.LastEvent.UnixNano()) / 1e9
	}
	gauge(descLast, last)
	busy := 0.0
	if !st.BusySince.IsZero() {
		busy = time.Since(st.BusySince).Seconds()
	}
	gauge(descBusy, busy)
	unsupp := 0.0
	if st.Unsupported {
		unsupp = 1
	}
	gauge(descUnsupp, unsupp)

	c.m.mu.Lock()
	incs := make([]*watchdog.Incident, 0, len(c.m.open))
	for _, inc := range c.m.open {
		incs = append(incs, inc)
	}
	c.m.mu.Unlock()
	sort.Slice(incs, func(i, j int) bool { return incs[i].Started.Before(incs[j].Started) })
	seen := map[string]bool{}
	for _, inc := range incs {
		if len(seen) >= MaxCgroupSeries || seen[inc.Cgroup] {
			continue
		}
		seen[inc.Cgroup] = true
		// A container names its cgroups: escaped as in logs and scan.
		// client_golang refuses label values that are not UTF-8, and
		// one such name would fail the whole scrape.
		cg := procfs.Safe(inc.Cgroup)
		gauge(descCgroupOpen, 1, cg, string(inc.Verdict))
		gauge(descCgroupOOMs, float64(inc.Evidence.OOMs), cg)
	}
	if c.m.risk != nil {
		rs := c.m.risk.AtRisk() // sorted by path
		gauge(descAtRisk, float64(len(rs)))
		for i, r := range rs {
			if i >= MaxCgroupSeries {
				break
			}
			gauge(descCgroupRisk, 1, procfs.Safe(r.Cgroup))
		}
	}
	if c.m.alerts == nil {
		return
	}
	for _, s := range c.m.alerts.Stats() {
		counter(descSent, float64(s.Sent), s.Name, s.Kind, "sent")
		counter(descSent, float64(s.Failed), s.Name, s.Kind, "failed")
		counter(descSent, float64(s.Dropped), s.Name, s.Kind, "dropped")
		counter(descSent, float64(s.Retried), s.Name, s.Kind, "retried")
		gauge(descQueue, float64(s.QueueDepth), s.Name, s.Kind)
	}
}

// Handler serves /metrics and /healthz.
func (m *Metrics) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if err := m.Healthy(time.Now()); err != nil {
			http.Error(w, "unhealthy: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	return mux
}

// Serve listens on addr until ctx is done. It returns once listening, with
// an error if it cannot.
func (m *Metrics) Serve(ctx context.Context, addr string) (net.Addr, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: listen on %s: %w", addr, err)
	}
	srv := &http.Server{Handler: m.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			_ = err // the listener failed after start; /healthz will be unreachable
		}
	}()
	return ln.Addr(), nil
}
