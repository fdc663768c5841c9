package alert

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/oomwatch/oomwatch/test/testtier"
)

const alertmanagerBin = "/usr/bin/prometheus-alertmanager"

// startAlertmanager runs Debian's Alertmanager on a free loopback port,
// clustering off, storage in a temp dir; it is killed at cleanup.
func startAlertmanager(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(alertmanagerBin); err != nil {
		testtier.Require(t, testtier.Host, "prometheus-alertmanager not installed: apt-get install prometheus-alertmanager (alert/testdata/install-alertmanager.sh)")
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "am.yml")
	os.WriteFile(cfg, []byte("route: {receiver: 'null', group_wait: 1s, group_interval: 2s, repeat_interval: 1h}\nreceivers: [{name: 'null'}]\n"), 0o600)
	logf, err := os.Create(filepath.Join(dir, "alertmanager.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	addr := freePort(t)
	cmd := exec.Command(alertmanagerBin, "--config.file="+cfg, "--storage.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--cluster.listen-address=")
	cmd.Stdout, cmd.Stderr = logf, logf // files: no copying goroutines
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("alertmanager log:\n%s", b)
		}
	})
	base := "http://" + addr
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	waitFor(t, "alertmanager /-/ready", func() bool {
		resp, err := client.Get(base + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return base
}

type amListed struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	StartsAt    time.Time         `json:"startsAt"`
	EndsAt      time.Time         `json:"endsAt"`
	Status      struct {
		State string `json:"state"`
	} `json:"status"`
}

func listAlerts(t *testing.T, base string) []amListed {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get(base + "/api/v2/alerts?active=true&silenced=true&inhibited=true&unprocessed=true")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out []amListed
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

func findAlert(list []amListed, cgroup string) *amListed {
	for i := range list {
		if list[i].Labels["cgroup"] == cgroup {
			return &list[i]
		}
	}
	return nil
}

func TestAlertmanagerReal(t *testing.T) {
	base := startAlertmanager(t)
	cfg := Config{Alertmanager: []AlertmanagerConfig{{
		Delivery:       Delivery{Name: "am"},
		HTTPConfig:     HTTPConfig{URL: base + "/"},
		ResendInterval: 300 * time.Millisecond,
		ResolveResend:  time.Second,
		Labels:         map[string]string{"team": "ops"},
	}}}
	d, err := New(cfg, fastOpts(t.TempDir()), testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	defer closeNow(t, d, time.Second)

	firing := testDoc(TypeDetected, "inc-am") // hostile cgroup and comm names included
	d.Send(firing)
	var a *amListed
	waitFor(t, "alert listed", func() bool { a = findAlert(listAlerts(t, base), firing.Cgroup); return a != nil })
	for k, v := range map[string]string{"alertname": "OOMLoop", "cgroup": firing.Cgroup, "container": "web1`x`", "host": "host-1", "severity": "critical", "team": "ops"} {
		if a.Labels[k] != v {
			t.Errorf("label %s=%q, want %q", k, a.Labels[k], v)
		}
	}
	if len(a.Labels) != 6 {
		t.Errorf("labels %v: volatile data must stay out of labels", a.Labels)
	}
	if a.Annotations["incident_id"] != "inc-am" || !strings.Contains(a.Annotations["origin"], "sshd") || a.Annotations["summary"] == "" {
		t.Errorf("annotations %v", a.Annotations)
	}
	if a.Status.State != "active" || !a.EndsAt.After(time.Now()) || a.StartsAt.Sub(testIncident("").Started).Abs() > time.Millisecond {
		t.Errorf("state %s startsAt %v endsAt %v", a.Status.State, a.StartsAt, a.EndsAt)
	}
	// Re-sent while firing: endsAt moves forward.
	first := a.EndsAt
	waitFor(t, "re-send", func() bool {
		a := findAlert(listAlerts(t, base), firing.Cgroup)
		return stat(d, "am").Resent >= 2 && a != nil && a.EndsAt.After(first)
	})
	// A later event of the same incident updates the same alert.
	d.Send(testDoc(TypeRemediated, "inc-am"))
	waitFor(t, "remediated annotation", func() bool {
		a := findAlert(listAlerts(t, base), firing.Cgroup)
		return a != nil && a.Annotations["type"] == "remediated"
	})
	if n := len(listAlerts(t, base)); n != 1 {
		t.Errorf("%d alerts listed, want one per incident", n)
	}

	d.Send(testDoc(TypeResolved, "inc-am"))
	waitFor(t, "alert resolved", func() bool {
		a := findAlert(listAlerts(t, base), firing.Cgroup)
		return a == nil || !a.EndsAt.After(time.Now())
	})
	resent := stat(d, "am").Resent
	time.Sleep(1500 * time.Millisecond) // resolve_resend is 1s: re-sends stop
	if n := stat(d, "am").Resent - resent; n < 1 || n > 6 {
		t.Errorf("%d re-sends after resolve over 1.5s, want a few, then none", n)
	}
	after := stat(d, "am").Resent
	time.Sleep(700 * time.Millisecond)
	if stat(d, "am").Resent != after {
		t.Errorf("still re-sending %v after resolve_resend", cfg.Alertmanager[0].ResolveResend)
	}
	if a := findAlert(listAlerts(t, base), firing.Cgroup); a != nil {
		t.Errorf("resolved alert still listed: %+v", a)
	}
	if s := stat(d, "am"); s.Sent != 3 || s.Failed != 0 {
		t.Errorf("stats %+v", s)
	}
}

// Alertmanager rejects what it cannot parse; check the alert we build
// against its validation rules without a server too.
func TestAlertmanagerAlertShape(t *testing.T) {
	a := &alertmanagerSink{resendEvery: time.Minute}
	now := time.Now()
	doc := testDoc(TypeResolved, "x")
	doc.StartedAt = now.Add(time.Hour).Format(time.RFC3339Nano) // clock skew: startsAt after the resolve
	al := a.alert(doc, now)
	s, _ := time.Parse(time.RFC3339Nano, al.StartsAt)
	e, _ := time.Parse(time.RFC3339Nano, al.EndsAt)
	if s.After(e) || e.After(now) {
		t.Errorf("startsAt %v endsAt %v now %v", s, e, now)
	}
	for k := range al.Labels {
		if !labelRE.MatchString(k) {
			t.Errorf("label name %q", k)
		}
	}
	if alertname("loop") != "OOMLoop" || alertname("stalled") != "OOMStalled" || alertname("paused") != "OOMPaused" {
		t.Error("alertnames")
	}
}
