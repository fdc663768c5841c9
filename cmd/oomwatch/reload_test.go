package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/oomwatch/oomwatch/alert"
	"github.com/oomwatch/oomwatch/internal/config"
	"github.com/oomwatch/oomwatch/report"
	"github.com/oomwatch/oomwatch/watchdog"
)

// TestReloadDuringDelivery: SIGHUP while a webhook delivery is in flight
// and another document waits in the spool, with an Alertmanager sink
// re-sending a firing alert. After the reload every document reaches the
// webhook exactly once, the one delivered after the reload with the new
// settings; no spool file is removed by the reload (a temp file being
// written stays); and the firing alert goes on being re-sent, so a long
// incident does not expire 4 × resend_interval after a reload.
func TestReloadDuringDelivery(t *testing.T) {
	release := make(chan struct{})
	var entered sync.Once
	inFlight := make(chan struct{})
	var mu sync.Mutex
	got := map[string][]string{} // event_id → X-Gen header of each delivery
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var d alert.Document
		if err := json.Unmarshal(b, &d); err != nil {
			t.Errorf("webhook body: %v", err)
		}
		if d.IncidentID == "first" {
			entered.Do(func() { close(inFlight) })
			<-release
		}
		mu.Lock()
		got[d.EventID] = append(got[d.EventID], r.Header.Get("X-Gen"))
		mu.Unlock()
	}))
	defer hook.Close()
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	var amPosts atomic.Int64 // firing posts for incident "first"
	am := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var as []struct {
			Annotations map[string]string `json:"annotations"`
			EndsAt      time.Time         `json:"endsAt"`
		}
		if err := json.Unmarshal(b, &as); err != nil || len(as) != 1 {
			t.Errorf("alertmanager body %s: %v", b, err)
			return
		}
		if as[0].Annotations["incident_id"] == "first" && as[0].EndsAt.After(time.Now()) {
			amPosts.Add(1)
		}
	}))
	defer am.Close()

	conf := func(gen string) string {
		return fmt.Sprintf(`alerts:
  webhook:
    - name: hook
      url: %s
      headers: {X-Gen: %s}
  alertmanager:
    - name: am
      url: %s
      resend_interval: 100ms
`, hook.URL, gen, am.URL)
	}
	p := writeConfig(t, conf("old"))
	state := t.TempDir()
	f := runFlags{configPath: p, Overrides: config.Overrides{Set: map[string]bool{"config": true}}}
	holder, acfg, w := reloadable(t, &f)
	log := zerolog.New(zerolog.NewTestWriter(t))
	disp := &report.Alerts{}
	d, err := newDispatcher(acfg, state, log)
	if err != nil {
		t.Fatal(err)
	}
	disp.Store(d)
	defer func() {
		closeDispatcher(t, disp.Load())
		if t.Failed() {
			return
		}
		left, _ := filepath.Glob(filepath.Join(state, "spool", "hook", "*.json"))
		hidden, _ := filepath.Glob(filepath.Join(state, "spool", "hook", ".*"))
		if len(left) != 0 || len(hidden) != 1 {
			t.Errorf("spool after delivery: %v %v, want only the temp file", left, hidden)
		}
	}()

	inc := func(id string) *watchdog.Incident {
		return &watchdog.Incident{ID: id, Verdict: watchdog.VerdictLoop, Cgroup: "/lxc/" + id, Version: 2, Started: time.Now()}
	}
	first := alert.NewDocument(alert.TypeDetected, inc("first"), alert.Names{}, nil, "host", time.Now())
	second := alert.NewDocument(alert.TypeDetected, inc("second"), alert.Names{}, nil, "host", time.Now())
	d.Send(first)
	d.Send(second)
	<-inFlight
	spoolDir := filepath.Join(state, "spool", "hook")
	deadline := time.Now().Add(10 * time.Second)
	for {
		files, _ := filepath.Glob(filepath.Join(spoolDir, "*.json"))
		if len(files) == 2 && amPosts.Load() >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("spool %v, %d alertmanager posts: want both documents spooled and the alert sent", files, amPosts.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	// What a spool write in progress leaves for a moment.
	tmp := filepath.Join(spoolDir, ".tmp-1234")
	if err := os.WriteFile(tmp, []byte(`{"partial`), 0o600); err != nil {
		t.Fatal(err)
	}

	if err := os.WriteFile(p, []byte(conf("new")), 0o600); err != nil {
		t.Fatal(err)
	}
	reload(log, &f, holder, w, disp, state)
	if files, _ := filepath.Glob(filepath.Join(spoolDir, "*.json")); len(files) != 2 {
		t.Errorf("spool after the reload: %v, want both documents still there", files)
	}
	if _, err := os.Stat(tmp); err != nil {
		t.Errorf("the reload removed a spool temp file being written: %v", err)
	}
	posts := amPosts.Load()
	close(release)

	deadline = time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(got[first.EventID]) + len(got[second.EventID])
		mu.Unlock()
		if n >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the reload: %d webhook deliveries, want 2", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(time.Second) // ten resend intervals; room for a second delivery
	if n := amPosts.Load() - posts; n < 5 {
		t.Errorf("%d alertmanager re-sends of the firing alert in the second after the reload, want about 10", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if g := got[first.EventID]; len(g) != 1 || g[0] != "old" {
		t.Errorf("in-flight document delivered %d times with X-Gen %v, want once (old settings)", len(g), g)
	}
	if g := got[second.EventID]; len(g) != 1 || g[0] != "new" {
		t.Errorf("spooled document delivered %d times with X-Gen %v, want once with the new settings", len(g), g)
	}
}

func closeDispatcher(t *testing.T, d *alert.Dispatcher) {
	t.Helper()
	if d == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := d.Close(ctx); err != nil {
		t.Errorf("Close: %v", err)
	}
}
