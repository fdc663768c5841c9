package metrics

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"go.uber.org/goleak"

	"github.com/oomwatch/oomwatch/alert"
	"github.com/oomwatch/oomwatch/policy"
	"github.com/oomwatch/oomwatch/watchdog"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type fakeWD struct{ st watchdog.Stats }

func (f *fakeWD) Stats() watchdog.Stats { return f.st }

type fakeAlerts struct{}

func (fakeAlerts) Stats() []alert.SinkStats {
	return []alert.SinkStats{{Name: "am", Kind: "alertmanager", Sent: 3, Failed: 1, QueueDepth: 2}}
}

func TestMetricsValuesAndLint(t *testing.T) {
	wd := &fakeWD{st: watchdog.Stats{Watched: 12, OpenIncidents: 1, OOMs: 450, Kills: 1, Events: 77, LastEvent: time.Unix(1700000000, 0)}}
	m := New("v1.2.3", wd, fakeAlerts{})
	inc := &watchdog.Incident{ID: "a", Verdict: watchdog.VerdictLoop, Cgroup: "/lxc/web1", Started: time.Now().Add(-200 * time.Millisecond),
		Evidence: watchdog.Evidence{OOMs: 40}}
	inc.Evidence.Detection = 15 * time.Millisecond
	m.IncidentOpened(inc)
	m.LadderDone(inc, []policy.Action{{Name: policy.ResetAdj, Done: true, Verified: true}}, policy.OutcomeResolved, time.Now())

	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	want := `
# HELP oomwatch_watched_cgroups Memory cgroups watched.
# TYPE oomwatch_watched_cgroups gauge
oomwatch_watched_cgroups 12
# HELP oomwatch_oom_events_total OOM events counted in watched cgroups.
# TYPE oomwatch_oom_events_total counter
oomwatch_oom_events_total 450
# HELP oomwatch_incidents_total Incidents opened, by verdict (loop, stalled, paused, forced-charge).
# TYPE oomwatch_incidents_total counter
oomwatch_incidents_total{verdict="forced-charge"} 0
oomwatch_incidents_total{verdict="loop"} 1
oomwatch_incidents_total{verdict="paused"} 0
oomwatch_incidents_total{verdict="stalled"} 0
# HELP oomwatch_actions_total Remediation actions, by action and result (verified, unverified, failed, dry_run).
# TYPE oomwatch_actions_total counter
oomwatch_actions_total{action="freeze",result="dry_run"} 0
oomwatch_actions_total{action="freeze",result="failed"} 0
oomwatch_actions_total{action="freeze",result="unverified"} 0
oomwatch_actions_total{action="freeze",result="verified"} 0
oomwatch_actions_total{action="kill",result="dry_run"} 0
oomwatch_actions_total{action="kill",result="failed"} 0
oomwatch_actions_total{action="kill",result="unverified"} 0
oomwatch_actions_total{action="kill",result="verified"} 0
oomwatch_actions_total{action="raise-limit",result="dry_run"} 0
oomwatch_actions_total{action="raise-limit",result="failed"} 0
oomwatch_actions_total{action="raise-limit",result="unverified"} 0
oomwatch_actions_total{action="raise-limit",result="verified"} 0
oomwatch_actions_total{action="reset-adj",result="dry_run"} 0
oomwatch_actions_total{action="reset-adj",result="failed"} 0
oomwatch_actions_total{action="reset-adj",result="unverified"} 0
oomwatch_actions_total{action="reset-adj",result="verified"} 1
# HELP oomwatch_cgroup_incident_open 1 for each cgroup with an open incident (at most 100 series).
# TYPE oomwatch_cgroup_incident_open gauge
oomwatch_cgroup_incident_open{cgroup="/lxc/web1",verdict="loop"} 1
# HELP oomwatch_alert_queue_depth Alerts waiting in a sink's queue.
# TYPE oomwatch_alert_queue_depth gauge
oomwatch_alert_queue_depth{kind="alertmanager",sink="am"} 2
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "oomwatch_watched_cgroups", "oomwatch_oom_events_total",
		"oomwatch_incidents_total", "oomwatch_actions_total", "oomwatch_cgroup_incident_open", "oomwatch_alert_queue_depth"); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(m.remediation); n != 1 {
		t.Fatalf("remediation histogram series %d", n)
	}
	m.IncidentResolved(inc)
	if n, _ := testutil.GatherAndCount(m.Registry(), "oomwatch_cgroup_incident_open"); n != 0 {
		t.Fatalf("resolved incident still exported: %d series", n)
	}
}

// A rule such as rate(oomwatch_actions_total{result="failed"}[5m]) needs
// the series before the first action: every action × result is exported
// at zero from the start.
func TestActionSeriesExportedBeforeFirstAction(t *testing.T) {
	m := New("dev", &fakeWD{}, nil)
	n, err := testutil.GatherAndCount(m.Registry(), "oomwatch_actions_total")
	if err != nil {
		t.Fatal(err)
	}
	if want := len(policy.Rungs) * len(actionResults); n != want {
		t.Fatalf("%d oomwatch_actions_total series before any action, want %d (every action × result)", n, want)
	}
}

func TestCardinalityBounded(t *testing.T) {
	m := New("dev", &fakeWD{}, nil)
	for i := 0; i < 5*MaxCgroupSeries; i++ {
		m.IncidentOpened(&watchdog.Incident{ID: fmt.Sprint(i), Verdict: watchdog.VerdictLoop, Cgroup: fmt.Sprintf("/c%d", i), Started: time.Now()})
	}
	if n, _ := testutil.GatherAndCount(m.Registry(), "oomwatch_cgroup_incident_open"); n != MaxCgroupSeries {
		t.Fatalf("%d per-cgroup series, want the cap %d", n, MaxCgroupSeries)
	}
}

func TestServeAndHealthz(t *testing.T) {
	wd := &fakeWD{}
	m := New("dev", wd, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr, err := m.Serve(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	get := func(p string) (int, string) {
		resp, err := http.Get("http://" + addr.String() + p)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/healthz"); code != 200 || body != "ok\n" {
		t.Fatalf("healthz %d %q", code, body)
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, "oomwatch_build_info") {
		t.Fatalf("metrics %d", code)
	}
	wd.st.BusySince = time.Now().Add(-time.Minute)
	if code, body := get("/healthz"); code != 503 || !strings.Contains(body, "event loop busy") {
		t.Fatalf("stuck loop: healthz %d %q", code, body)
	}
	cancel()
	// Let the server goroutines finish before goleak looks.
	time.Sleep(100 * time.Millisecond)
	http.DefaultClient.CloseIdleConnections()
}

// TestHostileCgroupLabels: a container names its cgroups; the per-cgroup
// series carry that name. Bytes that are not UTF-8 must not make the
// exposition fail (client_golang refuses such label values: a scrape would
// panic in the collector), and control characters must stay escaped.
func TestHostileCgroupLabels(t *testing.T) {
	m := New("dev", &fakeWD{}, nil)
	for i, cg := range []string{"/lxc.payload.web1/bad\xff\xfeutf8", "/nl\nforged_metric 1", `/q"uo'te\`, "/esc\x1b[31m"} {
		m.IncidentOpened(&watchdog.Incident{ID: fmt.Sprint(i), Verdict: watchdog.VerdictLoop, Cgroup: cg, Started: time.Now().Add(time.Duration(i))})
	}
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %s\n%s", resp.Status, body)
	}
	var got []string
	for _, l := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(l, "oomwatch_cgroup_incident_open{") {
			got = append(got, l)
		}
		if strings.HasPrefix(l, "forged_metric") {
			t.Errorf("a cgroup name forged a metric line: %q", l)
		}
	}
	want := []string{ // the exposition sorts series by label value
		`oomwatch_cgroup_incident_open{cgroup="/esc\\u001b[31m",verdict="loop"} 1`,
		`oomwatch_cgroup_incident_open{cgroup="/lxc.payload.web1/bad\\xff\\xfeutf8",verdict="loop"} 1`,
		`oomwatch_cgroup_incident_open{cgroup="/nl\\nforged_metric 1",verdict="loop"} 1`,
		`oomwatch_cgroup_incident_open{cgroup="/q\"uo'te\\\\",verdict="loop"} 1`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("per-cgroup series:\n%s\nwant (names escaped as in scan and logs):\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

type fakeRisk []watchdog.Risk

func (f fakeRisk) AtRisk() []watchdog.Risk { return f }

// The would-loop finding: a count, and one series per cgroup up to the cap.
func TestRiskMetricsBounded(t *testing.T) {
	m := New("dev", &fakeWD{}, nil)
	var rs fakeRisk
	for i := 0; i < 3*MaxCgroupSeries; i++ {
		rs = append(rs, watchdog.Risk{Cgroup: fmt.Sprintf("/c%03d", i)})
	}
	m.SetRisk(rs)
	want := fmt.Sprintf(`
# HELP oomwatch_cgroups_would_loop Watched cgroups where the next OOM would loop: a limit and every task unkillable (at the last risk check).
# TYPE oomwatch_cgroups_would_loop gauge
oomwatch_cgroups_would_loop %d
`, len(rs))
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "oomwatch_cgroups_would_loop"); err != nil {
		t.Fatal(err)
	}
	if n, _ := testutil.GatherAndCount(m.Registry(), "oomwatch_cgroup_would_loop"); n != MaxCgroupSeries {
		t.Fatalf("%d per-cgroup risk series, want the cap %d", n, MaxCgroupSeries)
	}
}
