//go:build vmguest

package guest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// metricValue returns the value of the first series matching re (a
// regexp on the whole exposition line before the value).
func metricValue(t *testing.T, body, series string) float64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + series + ` ([0-9.e+-]+)$`).FindStringSubmatch(body)
	if m == nil {
		return -1
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

// After a real loop, /metrics shows it, `oomwatch status` asks the running
// daemon over its socket, and `oomwatch incidents` reads the journal; after
// a restart, status answers from the new daemon and the journal still holds
// the incident.
func TestLoopShowsInMetricsStatusAndIncidentsAcrossRestart(t *testing.T) {
	e := Setup(t)
	RequireDaemon(t, e)
	LoopbackUp(t)
	state := t.TempDir()
	sock := state + "/oomwatch.sock"
	cg := NewCgroup(t, e, 20)
	d := StartDaemon(t, e, "run", "--state-dir", state, "--status-socket", sock, "--metrics-listen", "127.0.0.1:9731")
	StartHog(t, e, cg, 64, -1000)
	inc := d.WaitEvent(t, detectTimeout, "incident verdict=loop", isIncident(cg, "loop"))
	d.WaitEvent(t, actionTimeout, "ladder_done", Ev("event", "ladder_done", "incident", inc["incident"]))

	var body string
	Eventually(t, 10*time.Second, "GET /metrics", func() (bool, string) {
		resp, err := http.Get("http://127.0.0.1:9731/metrics")
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		return resp.StatusCode == 200, resp.Status
	})
	for series, min := range map[string]float64{
		`oomwatch_incidents_total\{verdict="loop"\}`:                     1,
		`oomwatch_actions_total\{action="reset-adj",result="verified"\}`: 1,
		`oomwatch_watched_cgroups`:                                       2,
		`oomwatch_oom_events_total`:                                      3,
		`oomwatch_detection_latency_seconds_count`:                       1,
		`oomwatch_remediation_latency_seconds_count`:                     1,
		`oomwatch_build_info\{goversion="[^"]+",version="[^"]+"\}`:       1,
	} {
		if v := metricValue(t, body, series); v < min {
			t.Errorf("metric %s = %v, want at least %v", series, v, min)
		}
	}
	if resp, err := http.Get("http://127.0.0.1:9731/healthz"); err != nil || resp.StatusCode != 200 {
		t.Errorf("/healthz: %v %v", resp, err)
	}

	out, errs, code := oomwatch(t, e, "status", "--socket", sock, "--json")
	var st struct {
		Watched       int `json:"watched_cgroups"`
		RecentActions []struct {
			Action   string `json:"action"`
			Verified bool   `json:"verified"`
		} `json:"recent_actions"`
	}
	if err := json.Unmarshal([]byte(out), &st); code != 0 || err != nil {
		t.Fatalf("oomwatch status: exit %d, %v: %s %s", code, err, out, errs)
	}
	verified := false
	for _, a := range st.RecentActions {
		verified = verified || (a.Action == "reset-adj" && a.Verified)
	}
	if st.Watched < 2 || !verified {
		t.Errorf("status: %s", out)
	}
	human, _, code := oomwatch(t, e, "status", "--socket", sock)
	t.Logf("oomwatch status:\n%s", human)
	if code != 0 {
		t.Errorf("oomwatch status (human): exit %d", code)
	}
	out, errs, code = oomwatch(t, e, "incidents", "--state-dir", state, "--json")
	if code != 0 || !regexp.MustCompile(regexp.QuoteMeta(cg.Rel())).MatchString(out) {
		t.Errorf("oomwatch incidents: exit %d: %s %s", code, out, errs)
	}

	// After a restart: status answers from the new daemon, the history
	// still holds the incident.
	d.Stop(t)
	d2 := StartDaemon(t, e, "run", "--state-dir", state, "--status-socket", sock, "--metrics-listen", "")
	out, errs, code = oomwatch(t, e, "status", "--socket", sock, "--json")
	var st2 struct {
		PID     int `json:"pid"`
		Watched int `json:"watched_cgroups"`
	}
	if err := json.Unmarshal([]byte(out), &st2); code != 0 || err != nil || st2.Watched < 2 || st2.PID != d2.Pid {
		t.Errorf("oomwatch status after a restart: exit %d, %v: %s %s (daemon pid %d)", code, err, out, errs, d2.Pid)
	}
	out, errs, code = oomwatch(t, e, "incidents", "--state-dir", state, "--json")
	if code != 0 || !regexp.MustCompile(regexp.QuoteMeta(fmt.Sprint(inc["incident"]))).MatchString(out) {
		t.Errorf("oomwatch incidents after a restart lost incident %v: exit %d: %s %s", inc["incident"], code, out, errs)
	}
}
