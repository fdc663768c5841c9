package alert

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// pagerDutySink sends Events API v2 events: trigger for every firing
// document (a re-trigger with the same dedup_key updates the open alert),
// resolve for resolved ones. dedup_key = "oomwatch-" + incident_id, so
// trigger and resolve always meet (a risk's incident_id is the same for
// every episode of it: PagerDuty opens a new incident for a trigger after a
// resolve).
type pagerDutySink struct {
	*httpSink
	routingKey string
}

func newPagerDutySink(c PagerDutyConfig, timeout time.Duration, ua string) (*pagerDutySink, error) {
	url := c.URL
	if url == "" {
		url = DefaultPagerDutyURL
	}
	h, err := newHTTPSink(c.HTTPConfig, url, timeout, ua)
	if err != nil {
		return nil, err
	}
	key := string(c.RoutingKey)
	if c.RoutingKeyFile != "" {
		if key, err = readSecretFile(c.RoutingKeyFile); err != nil {
			return nil, fmt.Errorf("routing_key_file: %w", err)
		}
	}
	return &pagerDutySink{httpSink: h, routingKey: key}, nil
}

type pdEvent struct {
	RoutingKey  string     `json:"routing_key"`
	EventAction string     `json:"event_action"`
	DedupKey    string     `json:"dedup_key"`
	Client      string     `json:"client,omitempty"`
	Payload     *pdPayload `json:"payload,omitempty"`
}

type pdPayload struct {
	Summary       string   `json:"summary"`
	Source        string   `json:"source"`
	Severity      string   `json:"severity"`
	Timestamp     string   `json:"timestamp,omitempty"`
	Component     string   `json:"component,omitempty"`
	Group         string   `json:"group,omitempty"`
	Class         string   `json:"class,omitempty"`
	CustomDetails Document `json:"custom_details"`
}

// pdDedupKey is stable per incident and within PagerDuty's 255 characters.
func pdDedupKey(incident string) string { return truncRunes("oomwatch-"+incident, 255) }

func (p *pagerDutySink) event(doc Document) pdEvent {
	ev := pdEvent{RoutingKey: p.routingKey, EventAction: "trigger", DedupKey: pdDedupKey(doc.IncidentID), Client: "oomwatch"}
	source := doc.Host
	if source == "" {
		source = "unknown" // required by PagerDuty
	}
	sev := doc.Severity
	if doc.Status == StatusResolved {
		ev.EventAction = "resolve"
		sev = SeverityInfo
	}
	ev.Payload = &pdPayload{
		Summary:       truncRunes(doc.summary(), 1024),
		Source:        source,
		Severity:      sev,
		Timestamp:     doc.SentAt,
		Component:     doc.Cgroup,
		Group:         doc.Container,
		Class:         doc.Verdict,
		CustomDetails: doc,
	}
	if doc.Type == TypeRisk {
		ev.Payload.Class = TypeRisk
	}
	return ev
}

func (p *pagerDutySink) deliver(ctx context.Context, doc Document) error {
	body, err := json.Marshal(p.event(doc))
	if err != nil {
		return permanent(err)
	}
	return p.post(ctx, body, nil)
}
