package packaging

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/oomwatch/oomwatch/alert"
	"github.com/oomwatch/oomwatch/internal/metrics"
	"github.com/oomwatch/oomwatch/test/testtier"
	"github.com/oomwatch/oomwatch/watchdog"
)

func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		testtier.Require(t, testtier.VM, "promtool not found (apt-get install prometheus, or make sdvm-deps)")
	}
	return p
}

// TestRulesPromtool checks the alerting rules with promtool and runs their
// tests on synthetic series (monitoring/oomwatch.rules_test.yml).
func TestRulesPromtool(t *testing.T) {
	pt := promtool(t)
	for _, args := range [][]string{{"check", "rules", "oomwatch.rules.yml"}, {"test", "rules", "oomwatch.rules_test.yml"}} {
		cmd := exec.Command(pt, args...)
		cmd.Dir = "monitoring"
		out, err := cmd.CombinedOutput()
		t.Logf("promtool %s:\n%s", strings.Join(args, " "), out)
		if err != nil {
			t.Fatalf("promtool %s: %v", strings.Join(args, " "), err)
		}
	}
}

// TestDashboardQueriesParse hands every dashboard query, with Grafana's
// variables filled in, to promtool as a recording rule: a query that does
// not parse fails here rather than as an empty panel.
func TestDashboardQueriesParse(t *testing.T) {
	pt := promtool(t)
	qs, err := DashboardQueries()
	if err != nil {
		t.Fatal(err)
	}
	titles := make([]string, 0, len(qs))
	for k := range qs {
		titles = append(titles, k)
	}
	sort.Strings(titles)
	fill := strings.NewReplacer("$__rate_interval", "5m", "$job", "oomwatch", "$instance", ".+")
	var b strings.Builder
	b.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	n := 0
	for _, title := range titles {
		for _, e := range qs[title] {
			n++
			fmt.Fprintf(&b, "      - record: dashboard:query_%d\n        expr: %q\n", n, fill.Replace(e))
		}
	}
	if n < 10 {
		t.Fatalf("only %d dashboard queries found", n)
	}
	p := filepath.Join(t.TempDir(), "dashboard.rules.yml")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(pt, "check", "rules", p).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules (the dashboard's %d queries): %v\n%s\n%s", n, err, out, b.String())
	}
}

// TestQueriedMetrics checks the name extraction the systemd VM test uses to
// compare the rules and the dashboard with a real scrape.
func TestQueriedMetrics(t *testing.T) {
	used, err := QueriedMetrics()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"oomwatch_cgroup_incident_open", "oomwatch_actions_total", "oomwatch_alert_deliveries_total",
		"oomwatch_event_loop_busy_seconds", "oomwatch_detection_latency_seconds", "oomwatch_build_info"} {
		if len(used[want]) == 0 {
			t.Errorf("%s not found among the queried metrics %v", want, used)
		}
	}
	if _, ok := used["oomwatch_detection_latency_seconds_bucket"]; ok {
		t.Error("histogram series not mapped to their family")
	}
	scrape := "# HELP oomwatch_detection_latency_seconds x\n# TYPE oomwatch_detection_latency_seconds histogram\n" +
		"oomwatch_detection_latency_seconds_bucket{le=\"0.005\"} 0\noomwatch_open_incidents 0\n# TYPE oomwatch_actions_total counter\n"
	got := ExposedFamilies(scrape)
	if !got["oomwatch_detection_latency_seconds"] || !got["oomwatch_open_incidents"] || got["oomwatch_actions_total"] || len(got) != 2 {
		t.Errorf("ExposedFamilies = %v", got)
	}
}

type scrapeWD struct{}

func (scrapeWD) Stats() watchdog.Stats { return watchdog.Stats{} }

type scrapeAlerts struct{}

func (scrapeAlerts) Stats() []alert.SinkStats {
	return []alert.SinkStats{{Name: "am", Kind: "alertmanager"}}
}

type scrapeRisk struct{}

func (scrapeRisk) AtRisk() []watchdog.Risk { return []watchdog.Risk{{Cgroup: "/lxc/db"}} }

// Every metric the rules and the dashboard query is one the daemon's
// registry exports (scraped over HTTP from the handler the daemon serves),
// with an alert sink, a cgroup at risk and an open incident.
func TestRulesAndDashboardQueryExportedMetrics(t *testing.T) {
	m := metrics.New("dev", scrapeWD{}, scrapeAlerts{})
	m.SetRisk(scrapeRisk{})
	m.IncidentOpened(&watchdog.Incident{ID: "a", Verdict: watchdog.VerdictLoop, Cgroup: "/lxc/web", Started: time.Now()})
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	exposed := ExposedFamilies(string(body))
	used, err := QueriedMetrics()
	if err != nil {
		t.Fatal(err)
	}
	for name, where := range used {
		if !exposed[name] {
			t.Errorf("%s (queried by %v) is not in a scrape of the daemon's registry", name, where)
		}
	}
}
