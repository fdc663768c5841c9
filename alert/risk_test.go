package alert

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/oomwatch/oomwatch/watchdog"
)

// testRisk is a cgroup where the next OOM would loop, its name hostile.
func testRisk(cgroup string, since time.Time) watchdog.Risk {
	return watchdog.Risk{Cgroup: cgroup, Container: "web1", Since: since, Limit: 512 << 20, Usage: 400 << 20, Tasks: 3,
		Origin: &watchdog.Origin{PID: 900, Comm: "sshd", ParentPID: 1, ParentComm: hostileComm}}
}

func TestRiskDocument(t *testing.T) {
	since := time.Date(2026, 11, 27, 9, 0, 0, 7, time.UTC)
	r := testRisk("/lxc.payload.web1/evil\n\"$(reboot)\"\xc3", since)
	now := since.Add(time.Hour)
	for _, resolved := range []bool{false, true} {
		doc := NewRiskDocument(r, resolved, "host-1", now)
		raw, err := json.Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		d := checkDocument(t, raw)
		wantStatus, wantSev := StatusFiring, SeverityWarning
		if resolved {
			wantStatus, wantSev = StatusResolved, SeverityInfo
		}
		if d.Type != TypeRisk || d.Status != wantStatus || d.Severity != wantSev || d.Verdict != "" {
			t.Errorf("resolved=%t: type %s status %s severity %s verdict %q", resolved, d.Type, d.Status, d.Severity, d.Verdict)
		}
		if d.StartedAt != "2026-11-27T09:00:00.000000007Z" || d.LimitBytes != 512<<20 || d.UsageBytes != 400<<20 ||
			d.CandidatesTotal != 3 || len(d.Candidates) != 0 || d.OOMEvents != 0 || d.Origin == nil || d.Origin.PID != 900 {
			t.Errorf("resolved=%t: fields %+v", resolved, d)
		}
		if d.Cgroup != "/lxc.payload.web1/evil\n\"$(reboot)\"\\xc3" || d.Origin.ParentComm != "a\"\n$(rm -rf /)`id`\\xff\\xfe" {
			t.Errorf("untrusted names not cleaned: %q %q", d.Cgroup, d.Origin.ParentComm)
		}
		for _, s := range []string{doc.summary(), doc.description()} {
			if strings.ContainsAny(s, "\n\r") || !strings.Contains(doc.summary(), "OOM loop risk") {
				t.Errorf("human text %q", s)
			}
		}
	}
	// The incident_id is the host's and cgroup's, whatever the episode, so
	// receivers fold repeats (a restart) into one alert.
	a := NewRiskDocument(r, false, "host-1", now).IncidentID
	if b := NewRiskDocument(testRisk(r.Cgroup, now), true, "host-1", now).IncidentID; a != b || !strings.HasPrefix(a, "risk-") || len(a) != 37 {
		t.Errorf("incident ids %q %q: want one stable risk-<32 hex>", a, b)
	}
	if b := NewRiskDocument(r, false, "host-2", now).IncidentID; a == b {
		t.Error("another host, the same incident_id")
	}
	if b := NewRiskDocument(testRisk("/other", since), false, "host-1", now).IncidentID; a == b {
		t.Error("another cgroup, the same incident_id")
	}
}

// Risk documents reach only the sinks that opted in, firing then resolved,
// each episode once however often it is announced; a cgroup at risk again
// after its resolution fires again, and a sink that opts out by reload
// still gets the resolution of a risk it announced.
func TestRiskOptInLifecycle(t *testing.T) {
	in, out := &receiver{t: t}, &receiver{t: t}
	srvIn, srvOut := newServer(t, in.ServeHTTP), newServer(t, out.ServeHTTP)
	cfg := Config{Webhook: []WebhookConfig{
		{Delivery: Delivery{Name: "risky", Risk: true}, HTTPConfig: HTTPConfig{URL: srvIn.URL}},
		{Delivery: Delivery{Name: "plain"}, HTTPConfig: HTTPConfig{URL: srvOut.URL}},
	}}
	d, err := New(cfg, fastOpts(t.TempDir()), testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	r := testRisk("/lxc.payload.web1", t0)
	d.Send(NewRiskDocument(r, false, "host-1", time.Now()))
	d.Send(NewRiskDocument(r, false, "host-1", time.Now())) // announced again (a reload)
	d.Send(testDoc(TypeDetected, "inc-1"))
	d.Send(NewRiskDocument(r, true, "host-1", time.Now()))
	d.Send(NewRiskDocument(r, false, "host-1", time.Now())) // a late announcement of the episode that ended
	again := testRisk(r.Cgroup, t0.Add(time.Minute))        // the next sweep finds it again
	d.Send(NewRiskDocument(again, false, "host-1", time.Now()))
	waitFor(t, "deliveries", func() bool { return in.delivered() == 4 && out.delivered() == 1 })

	// Opting out by reload: the open risk is still resolved.
	cfg.Webhook[0].Risk = false
	if err := d.Reconfigure(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	d.Send(NewRiskDocument(again, true, "host-1", time.Now()))
	other := testRisk("/lxc.payload.web2", t0)
	d.Send(NewRiskDocument(other, false, "host-1", time.Now())) // no longer opted in
	waitFor(t, "resolution after opt-out", func() bool { return in.delivered() == 5 })
	closeNow(t, d, time.Second)

	type got struct{ typ, status, started string }
	want := []got{
		{TypeRisk, StatusFiring, t0.UTC().Format(time.RFC3339Nano)},
		{TypeDetected, StatusFiring, ""},
		{TypeRisk, StatusResolved, t0.UTC().Format(time.RFC3339Nano)},
		{TypeRisk, StatusFiring, again.Since.UTC().Format(time.RFC3339Nano)},
		{TypeRisk, StatusResolved, again.Since.UTC().Format(time.RFC3339Nano)},
	}
	if len(in.docs) != len(want) {
		t.Fatalf("opted-in sink got %d documents, want %d", len(in.docs), len(want))
	}
	for i, w := range want {
		doc := in.docs[i]
		if doc.Type != w.typ || doc.Status != w.status || (w.started != "" && doc.StartedAt != w.started) {
			t.Errorf("document %d: %s/%s started %s, want %s/%s started %s", i, doc.Type, doc.Status, doc.StartedAt, w.typ, w.status, w.started)
		}
	}
	if len(out.docs) != 1 || out.docs[0].Type != TypeDetected {
		t.Errorf("sink without risk: true got %d documents (%+v), want the incident only", len(out.docs), out.docs)
	}
	if s := stat(d, "risky"); s.Deduped != 2 || s.Dropped != 0 {
		t.Errorf("stats %+v: want the two repeated announcements deduplicated", s)
	}
}

// A tenant who makes a thousand cgroups risky at once costs each sink its
// rate limit and queue bound, no more: the rest is counted as rate-limited,
// and their resolutions are not sent either (they were never announced).
func TestRiskStormBounded(t *testing.T) {
	rc := &receiver{t: t}
	srv := newServer(t, rc.ServeHTTP)
	cfg := webhookConfig(srv.URL)
	cfg.Webhook[0].Risk = true
	cfg.Webhook[0].RatePerMinute = 10
	d, err := New(cfg, fastOpts(t.TempDir()), testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	since := time.Now()
	const n = 1000
	risks := make([]watchdog.Risk, n)
	for i := range risks {
		risks[i] = testRisk(fmt.Sprintf("/tenant/c%d", i), since)
		d.Send(NewRiskDocument(risks[i], false, "h", time.Now()))
	}
	for _, r := range risks {
		d.Send(NewRiskDocument(r, true, "h", time.Now()))
	}
	waitFor(t, "deliveries", func() bool { return rc.delivered() == 20 })
	closeNow(t, d, time.Second)
	if s := stat(d, "hook"); s.Sent != 20 || s.RateLimited != 2*(n-10) {
		t.Errorf("stats %+v: want 10 firing and their 10 resolutions sent, %d rate-limited", s, 2*(n-10))
	}
}

// Against the real Alertmanager: the risk is one warning alert while it
// lasts, resolved when it goes; at risk again, the same alert is active
// again and stays so, although the first resolution's re-sends were still
// due.
func TestAlertmanagerRealRisk(t *testing.T) {
	base := startAlertmanager(t)
	const every = 200 * time.Millisecond
	cfg := Config{Alertmanager: []AlertmanagerConfig{{
		Delivery: Delivery{Name: "am", Risk: true}, HTTPConfig: HTTPConfig{URL: base},
		ResendInterval: every, ResolveResend: 2 * time.Second,
	}}}
	d, err := New(cfg, fastOpts(t.TempDir()), testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	defer closeNow(t, d, time.Second)
	since := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	r := testRisk("/lxc.payload.web1", since)
	d.Send(NewRiskDocument(r, false, "host-1", time.Now()))
	var a *amListed
	active := func() bool {
		a = findAlert(listAlerts(t, base), r.Cgroup)
		return a != nil && a.Status.State == "active" && a.EndsAt.After(time.Now())
	}
	waitFor(t, "risk alert active", active)
	for k, v := range map[string]string{"alertname": "OOMLoopRisk", "cgroup": r.Cgroup, "container": "web1", "host": "host-1", "severity": "warning"} {
		if a.Labels[k] != v {
			t.Errorf("label %s=%q, want %q", k, a.Labels[k], v)
		}
	}
	if len(a.Labels) != 5 || a.Annotations["type"] != TypeRisk || a.Annotations["incident_id"] != riskID("host-1", r.Cgroup) ||
		!strings.Contains(a.Annotations["origin"], "sshd") || !a.StartsAt.Equal(since) {
		t.Errorf("labels %v annotations %v startsAt %v", a.Labels, a.Annotations, a.StartsAt)
	}

	d.Send(NewRiskDocument(r, true, "host-1", time.Now()))
	waitFor(t, "risk alert resolved", func() bool {
		a := findAlert(listAlerts(t, base), r.Cgroup)
		return a == nil || !a.EndsAt.After(time.Now())
	})

	again := testRisk(r.Cgroup, time.Now())
	d.Send(NewRiskDocument(again, false, "host-1", time.Now()))
	waitFor(t, "risk alert active again", active)
	// Until past resolve_resend it must stay active: a re-sent old
	// resolution would replace it (its activity range does not overlap).
	for end := time.Now().Add(cfg.Alertmanager[0].ResolveResend + 2*every); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if !active() {
			t.Fatalf("risk found again, but its alert is %+v", a)
		}
	}
	if n := len(listAlerts(t, base)); n != 1 {
		t.Errorf("%d alerts listed, want the one risk alert", n)
	}
	d.Send(NewRiskDocument(again, true, "host-1", time.Now()))
	waitFor(t, "risk alert resolved again", func() bool {
		a := findAlert(listAlerts(t, base), r.Cgroup)
		return a == nil || !a.EndsAt.After(time.Now())
	})
}
