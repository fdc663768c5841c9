package alert

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"time"
)

// alertmanagerSink posts to {url}/api/v2/alerts. Labels identify the alert
// and never change within an incident (alertname, cgroup, container, host,
// severity of the verdict, plus configured static labels); the volatile
// numbers go into annotations.
//
// While an incident fires its alert is re-sent every resend_interval with
// endsAt = now + 4 × resend_interval, so Alertmanager keeps it active and
// lets it expire by itself if oomwatch dies. On resolve the alert is sent
// with a fixed endsAt (the resolve time) and re-sent for resolve_resend, as
// Alertmanager clients should (prometheus.io/docs/alerting/clients).
type alertmanagerSink struct {
	*httpSink
	resendEvery   time.Duration
	resolveResend time.Duration
	labels        map[string]string

	mu        sync.Mutex
	firing    map[string]Document  // incident → latest firing document
	resolving map[string]resolving // incident → resolved document and until when to re-send it
}

type resolving struct {
	doc   Document
	until time.Time
}

// maxFiring bounds the incidents re-sent: a storm must not grow memory.
const maxFiring = 4096

var amOwnLabels = map[string]bool{"alertname": true, "cgroup": true, "container": true, "host": true, "severity": true}

func newAlertmanagerSink(c AlertmanagerConfig, timeout time.Duration, ua string) (*alertmanagerSink, error) {
	h, err := newHTTPSink(c.HTTPConfig, strings.TrimRight(c.URL, "/")+"/api/v2/alerts", timeout, ua)
	if err != nil {
		return nil, err
	}
	a := &alertmanagerSink{
		httpSink: h, resendEvery: c.ResendInterval, resolveResend: c.ResolveResend, labels: c.Labels,
		firing: map[string]Document{}, resolving: map[string]resolving{},
	}
	if a.resendEvery == 0 {
		a.resendEvery = time.Minute
	}
	if a.resolveResend == 0 {
		a.resolveResend = 5 * time.Minute
	}
	return a, nil
}

// amAlert is Alertmanager's postableAlert.
type amAlert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	StartsAt    string            `json:"startsAt,omitempty"`
	EndsAt      string            `json:"endsAt,omitempty"`
}

func alertname(verdict string) string {
	switch verdict {
	case "loop":
		return "OOMLoop"
	case "paused":
		return "OOMPaused"
	default:
		return "OOMStalled"
	}
}

// amLabels are the identity of an incident's alert.
func (a *alertmanagerSink) amLabels(doc Document) map[string]string {
	l := map[string]string{}
	for k, v := range a.labels {
		l[k] = v
	}
	l["alertname"] = alertname(doc.Verdict)
	if doc.Type == TypeRisk {
		l["alertname"] = "OOMLoopRisk"
	}
	l["cgroup"] = doc.Cgroup
	l["container"] = doc.Container
	if doc.ContainerName != "" {
		l["container_name"] = doc.ContainerName
	}
	l["host"] = doc.Host
	l["severity"] = doc.alertSeverity() // not doc.Severity: "info" on resolve would be another alert
	return l
}

// alert renders doc; endsAt is the firing deadline or the resolve time.
func (a *alertmanagerSink) alert(doc Document, now time.Time) amAlert {
	ann := map[string]string{
		"summary":     doc.summary(),
		"description": doc.description(),
		"incident_id": doc.IncidentID,
		"event_id":    doc.EventID,
		"type":        doc.Type,
	}
	if doc.Verdict != "" {
		ann["verdict"] = doc.Verdict
	}
	if doc.Origin != nil {
		ann["origin"] = doc.originText()
	}
	if doc.Unit != "" {
		ann["unit"] = doc.Unit
	}
	started, err := time.Parse(time.RFC3339Nano, doc.StartedAt)
	if err != nil || started.After(now) {
		started = now
	}
	end := now.Add(4 * a.resendEvery)
	if !doc.firing() {
		end, err = time.Parse(time.RFC3339Nano, doc.SentAt)
		if err != nil || end.After(now) {
			end = now
		}
	}
	if end.Before(started) { // Alertmanager: "start time must be before end time"
		started = end
	}
	return amAlert{
		Labels: a.amLabels(doc), Annotations: ann,
		StartsAt: started.UTC().Format(time.RFC3339Nano), EndsAt: end.UTC().Format(time.RFC3339Nano),
	}
}

func (a *alertmanagerSink) deliver(ctx context.Context, doc Document) error {
	body, err := json.Marshal([]amAlert{a.alert(doc, time.Now())})
	if err != nil {
		return permanent(err)
	}
	return a.post(ctx, body, nil)
}

func (a *alertmanagerSink) interval() time.Duration { return a.resendEvery }

// takeOver carries the incidents old re-sends over to a after a reload:
// without them a long incident's alert would expire 4 × resend_interval
// after the reload although it still fires.
func (a *alertmanagerSink) takeOver(old *alertmanagerSink) {
	old.mu.Lock()
	defer old.mu.Unlock()
	a.mu.Lock()
	defer a.mu.Unlock()
	for id, d := range old.firing {
		a.firing[id] = d
	}
	for id, r := range old.resolving {
		a.resolving[id] = r
	}
}

func (a *alertmanagerSink) delivered(doc Document, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if doc.firing() {
		if _, ok := a.firing[doc.IncidentID]; ok || len(a.firing) < maxFiring {
			a.firing[doc.IncidentID] = doc
		}
		// A risk firing again after its resolution: the same alert, now
		// active, must not be resolved again by the old re-sends.
		delete(a.resolving, doc.IncidentID)
		return
	}
	delete(a.firing, doc.IncidentID)
	if len(a.resolving) < maxFiring {
		a.resolving[doc.IncidentID] = resolving{doc: doc, until: now.Add(a.resolveResend)}
	}
}

func (a *alertmanagerSink) due(now time.Time, over func(lifecycle string) bool) []Document {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []Document
	for id, d := range a.firing {
		if over(d.lifecycle()) {
			// Resolved, whether or not the resolution got through (given
			// up, dropped, still queued): the alert expires at its endsAt.
			delete(a.firing, id)
			continue
		}
		out = append(out, d)
	}
	for id, r := range a.resolving {
		if now.After(r.until) {
			delete(a.resolving, id)
			continue
		}
		out = append(out, r.doc)
	}
	return out
}
