package alert

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"
)

// The ladder's outcome is reported by the policy goroutine and can come
// after the watchdog resolved the incident (a ladder waiting for the rate
// limit ends on the resolution). Whatever the order of the Send calls, a
// sink never receives a firing document of an incident after its resolved
// one; the late outcome arrives in the resolved state with its actions.
func TestIncidentLifecycleOrder(t *testing.T) {
	rc := &receiver{t: t}
	srv := newServer(t, rc.ServeHTTP)
	cfg := webhookConfig(srv.URL)
	cfg.Webhook[0].RatePerMinute = -1
	cfg.Webhook[0].QueueSize = 1000
	cfg.Webhook[0].DedupWindow = -1
	d, err := New(cfg, fastOpts(t.TempDir()), testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	// In sequence: what handler.Resolved then ladderDone do.
	d.Send(testDoc(TypeDetected, "seq"))
	d.Send(testDoc(TypeResolved, "seq"))
	late := testDoc(TypeRemediationFailed, "seq")
	d.Send(late)
	d.Send(testDoc(TypeDetected, "seq")) // a dry-run ladder's outcome
	// Concurrently, as the watchdog and policy goroutines do.
	const n = 100
	for i := range n {
		d.Send(testDoc(TypeDetected, fmt.Sprintf("race-%d", i)))
	}
	var wg sync.WaitGroup
	for i := range n {
		id := fmt.Sprintf("race-%d", i)
		wg.Add(2)
		go func() { defer wg.Done(); d.Send(testDoc(TypeResolved, id)) }()
		go func() { defer wg.Done(); d.Send(testDoc(TypeRemediated, id)) }()
	}
	wg.Wait()
	want := 4 + 3*n
	waitFor(t, "deliveries", func() bool { return rc.delivered() == want })
	closeNow(t, d, time.Second)

	resolved := map[string]bool{}
	for _, doc := range rc.docs {
		if doc.Status == StatusFiring && resolved[doc.IncidentID] {
			t.Errorf("incident %s: %s document firing after its resolution", doc.IncidentID, doc.Type)
		}
		if doc.Status == StatusResolved {
			resolved[doc.IncidentID] = true
			if doc.Severity != SeverityInfo {
				t.Errorf("incident %s: resolved %s with severity %s", doc.IncidentID, doc.Type, doc.Severity)
			}
		}
	}
	got := rc.docs[2]
	if got.EventID != late.EventID || got.Type != TypeRemediationFailed || got.Status != StatusResolved || len(got.Actions) != 1 || got.Actions[0].Name != "reset-adj" {
		t.Errorf("late outcome delivered as %s/%s with %d actions, want remediation-failed/resolved with its action", got.Type, got.Status, len(got.Actions))
	}
	if s := stat(d, "hook"); s.Sent != uint64(want) || s.Dropped != 0 {
		t.Errorf("stats %+v, want all %d sent", s, want)
	}
}

// The same against the real Alertmanager: once resolved, the incident has
// no active alert after the resolve re-sends and the firing deadline
// (4 × resend_interval) have passed, although the ladder's outcome came
// after the resolution.
func TestAlertmanagerRealNoAlertAfterResolve(t *testing.T) {
	base := startAlertmanager(t)
	const every = 200 * time.Millisecond
	cfg := Config{Alertmanager: []AlertmanagerConfig{{
		Delivery: Delivery{Name: "am"}, HTTPConfig: HTTPConfig{URL: base},
		ResendInterval: every, ResolveResend: 600 * time.Millisecond,
	}}}
	d, err := New(cfg, fastOpts(t.TempDir()), testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	defer closeNow(t, d, time.Second)
	firing := testDoc(TypeDetected, "inc-late")
	d.Send(firing)
	waitFor(t, "alert active", func() bool {
		a := findAlert(listAlerts(t, base), firing.Cgroup)
		return a != nil && a.Status.State == "active" && a.EndsAt.After(time.Now())
	})
	d.Send(testDoc(TypeResolved, "inc-late"))
	d.Send(testDoc(TypeRemediationFailed, "inc-late"))
	waitFor(t, "both delivered", func() bool { return stat(d, "am").Sent == 3 })
	time.Sleep(600*time.Millisecond + 4*every + 500*time.Millisecond)
	now := time.Now()
	for _, a := range listAlerts(t, base) {
		if a.Labels["cgroup"] == firing.Cgroup && a.Status.State == "active" && a.EndsAt.After(now) {
			t.Fatalf("incident still has an active alert after resolve + 4 × resend_interval: type %s, endsAt %v (now %v)", a.Annotations["type"], a.EndsAt, now)
		}
	}
}

// A resolution that cannot be delivered (rejected here; dropped or given up
// after max_age alike) still ends the firing re-sends: the alert expires at
// its endsAt instead of being kept alive forever.
func TestAlertmanagerResolutionNotDeliveredStopsResend(t *testing.T) {
	var mu sync.Mutex
	firingPosts, resolvedPosts := 0, 0
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var as []amAlert
		if err := json.Unmarshal(b, &as); err != nil || len(as) != 1 {
			t.Errorf("body %s: %v", b, err)
			return
		}
		end, _ := time.Parse(time.RFC3339Nano, as[0].EndsAt)
		mu.Lock()
		defer mu.Unlock()
		if end.After(time.Now()) {
			firingPosts++
			w.WriteHeader(http.StatusOK)
			return
		}
		resolvedPosts++
		http.Error(w, "rejected", http.StatusBadRequest)
	})
	cfg := Config{Alertmanager: []AlertmanagerConfig{{
		Delivery: Delivery{Name: "am"}, HTTPConfig: HTTPConfig{URL: srv.URL}, ResendInterval: 50 * time.Millisecond,
	}}}
	d, err := New(cfg, fastOpts(""), testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	defer closeNow(t, d, time.Second)
	d.Send(testDoc(TypeDetected, "inc-x"))
	waitFor(t, "firing re-sent", func() bool { return stat(d, "am").Resent >= 2 })
	d.Send(testDoc(TypeResolved, "inc-x"))
	waitFor(t, "resolution given up", func() bool { return stat(d, "am").Failed == 1 })
	mu.Lock()
	before := firingPosts
	mu.Unlock()
	time.Sleep(500 * time.Millisecond) // ten resend intervals
	mu.Lock()
	defer mu.Unlock()
	if firingPosts > before+1 { // one re-send may have been under way
		t.Errorf("%d firing re-sends after the resolution, want none", firingPosts-before)
	}
}

// PagerDuty: a trigger after a resolve reopens the incident, and nothing
// closes it again. The ladder's late outcome arrives as a resolve.
func TestPagerDutyNoTriggerAfterResolve(t *testing.T) {
	pd := &pdReceiver{t: t}
	srv := newServer(t, pd.ServeHTTP)
	cfg := Config{PagerDuty: []PagerDutyConfig{{HTTPConfig: HTTPConfig{URL: srv.URL + "/v2/enqueue"}, RoutingKey: testRoutingKey}}}
	d, err := New(cfg, fastOpts(t.TempDir()), testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	d.Send(testDoc(TypeDetected, "inc-pd"))
	d.Send(testDoc(TypeResolved, "inc-pd"))
	d.Send(testDoc(TypeRemediationFailed, "inc-pd"))
	d.Send(testDoc(TypeRemediated, "inc-pd"))
	waitFor(t, "4 events", func() bool { return pd.count() == 4 })
	closeNow(t, d, time.Second)
	if got := pd.actions(); got != "trigger,resolve,resolve,resolve" {
		t.Errorf("event actions %s: nothing may trigger after the resolve", got)
	}
}
