package report

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/oomwatch/oomwatch/alert"
	"github.com/oomwatch/oomwatch/internal/history"
	"github.com/oomwatch/oomwatch/internal/metrics"
	"github.com/oomwatch/oomwatch/internal/statusd"
	"github.com/oomwatch/oomwatch/policy"
	"github.com/oomwatch/oomwatch/watchdog"
)

type kernelLines []string

func (k kernelLines) Evidence(string, time.Time) []string { return k }

type noStats struct{}

func (noStats) Stats() watchdog.Stats { return watchdog.Stats{} }

// One incident's steps reach every receiver, each in its own words: the
// webhook gets detected → remediated → resolved with the actions, the
// journal the opened, announced, acted, ladder-end and resolved records
// (with the kernel's lines), status the open incident and then the action,
// and the metrics the incident and the action's result.
func TestFanoutReportsEveryStepToEveryReceiver(t *testing.T) {
	var mu sync.Mutex
	var docs []alert.Document
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var d alert.Document
		if err := json.Unmarshal(b, &d); err != nil {
			t.Errorf("webhook body: %v", err)
		}
		mu.Lock()
		docs = append(docs, d)
		mu.Unlock()
	}))
	defer srv.Close()
	cfg := alert.Config{Webhook: []alert.WebhookConfig{{Delivery: alert.Delivery{Name: "hook"}, HTTPConfig: alert.HTTPConfig{URL: srv.URL}}}}
	d, err := alert.New(cfg, alert.Options{StateDir: t.TempDir()}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	alerts := &Alerts{}
	alerts.Store(d)

	dir := t.TempDir()
	journal := history.NewAsync(history.Open(dir, history.Options{}), 16, func(error) {})
	tracker := statusd.NewTracker()
	m := metrics.New("test", noStats{}, alerts)
	f := &Fanout{Host: "h", Alerts: alerts, Status: tracker, Journal: journal, Metrics: m, Kernel: kernelLines{"Memory cgroup out of memory"}}

	inc := &watchdog.Incident{ID: "i1", Verdict: watchdog.VerdictLoop, Cgroup: "/lxc.payload.web1", Container: "web1", ContainerName: "runtime-name", Version: 2,
		Started: time.Now(), Evidence: watchdog.Evidence{Window: time.Second, OOMs: 40}}
	act := policy.Action{Name: policy.ResetAdj, PID: 42, Comm: "java", Detail: "writing 0 to oom_score_adj"}
	f.Opened(inc, "lxc")
	var st statusd.Status
	tracker.Fill(&st)
	if len(st.OpenIncidents) != 1 || st.OpenIncidents[0].Container != "web1" || st.OpenIncidents[0].ContainerName != "runtime-name" {
		t.Errorf("status while open: %+v", st.OpenIncidents)
	}
	pending := act
	pending.Pending = true
	f.Action(inc, pending)
	act.Done, act.Verified, act.Took = true, true, policy.Millis(12*time.Millisecond)
	f.Action(inc, act)
	f.LadderDone(inc, []policy.Action{act}, policy.OutcomeResolved)
	f.Resolved(inc, "no OOM for 2s")

	st = statusd.Status{}
	tracker.Fill(&st)
	if len(st.OpenIncidents) != 0 || len(st.RecentActions) != 1 || st.RecentActions[0].Name != policy.ResetAdj || !st.RecentActions[0].Verified ||
		st.RecentActions[0].Container != "web1" || st.RecentActions[0].ContainerName != "runtime-name" {
		t.Errorf("status after: open %+v, actions %+v", st.OpenIncidents, st.RecentActions)
	}
	if got := counter(t, m, "oomwatch_actions_total", map[string]string{"action": policy.ResetAdj, "result": "verified"}); got != 1 {
		t.Errorf("oomwatch_actions_total{reset-adj,verified} = %v, want 1", got)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.Close(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	var types []string
	for _, doc := range docs {
		types = append(types, doc.Type)
	}
	mu.Unlock()
	if want := []string{alert.TypeDetected, alert.TypeRemediated, alert.TypeResolved}; !slices.Equal(types, want) {
		t.Errorf("webhook got %q, want %q", types, want)
	} else if a := docs[1].Actions; len(a) != 1 || a[0].Name != policy.ResetAdj || a[0].PID != 42 || docs[1].Container != "web1" || docs[1].ContainerName != "runtime-name" {
		t.Errorf("remediated document: %+v", docs[1])
	}

	if err := journal.Close(); err != nil {
		t.Fatal(err)
	}
	incs, err := history.Read(dir)
	if err != nil || len(incs) != 1 {
		t.Fatalf("journal: %v, %+v", err, incs)
	}
	j := incs[0]
	if j.Rule != "lxc" || j.ContainerName != "runtime-name" || j.Outcome != policy.OutcomeResolved || j.State != history.StateResolved || len(j.KernelLog) != 1 ||
		len(j.Actions) != 2 || !j.Actions[0].Pending || j.Actions[1].Pending || j.Actions[1].Took != act.Took {
		t.Errorf("journal incident: %+v", j)
	}
}

// A ladder's outcome names the alert: remediated when it ended or contained
// the loop, detected for a dry run (nothing done), failed otherwise.
func TestLadderOutcomeNamesTheAlert(t *testing.T) {
	for out, want := range map[policy.Outcome]string{
		policy.OutcomeResolved: alert.TypeRemediated, policy.OutcomeContained: alert.TypeRemediated,
		policy.OutcomeDryRun: alert.TypeDetected, policy.OutcomeExhausted: alert.TypeRemediationFailed,
		policy.OutcomeAborted: alert.TypeRemediationFailed, policy.OutcomeRateLimited: alert.TypeRemediationFailed,
	} {
		if got := ladderType(out); got != want {
			t.Errorf("%s: %s, want %s", out, got, want)
		}
	}
}

// counter is the value of the series of name with labels in m's registry.
func counter(t *testing.T, m *metrics.Metrics, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, s := range mf.GetMetric() {
			for _, l := range s.GetLabel() {
				if v, ok := labels[l.GetName()]; ok && v != l.GetValue() {
					continue series
				}
			}
			return s.GetCounter().GetValue()
		}
	}
	t.Fatalf("no series %s%v", name, labels)
	return 0
}
