package alert

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestValidateMessages(t *testing.T) {
	cfg := Config{
		Exec:    []ExecConfig{{Command: nil}},
		Webhook: []WebhookConfig{{Delivery: Delivery{Name: "dup"}, HTTPConfig: HTTPConfig{URL: "ftp://x/secret-token"}, Secret: "not base64!"}},
		Alertmanager: []AlertmanagerConfig{{Delivery: Delivery{Name: "dup", QueueSize: -1}, HTTPConfig: HTTPConfig{URL: "http://am:9093"},
			Labels: map[string]string{"alert-name": "x", "severity": "y"}}},
		PagerDuty: []PagerDutyConfig{{}, {RoutingKey: "k", RoutingKeyFile: "/f"}},
	}
	err := cfg.Validate()
	if err == nil {
		t.Fatal("Validate accepted a broken config")
	}
	for _, want := range []string{
		"alert exec[0] (exec-0): command: empty",
		"alert webhook[0] (dup): url ftp://x/…: want http:// or https://",
		"alert webhook[0] (dup): secret: want whsec_",
		`alert alertmanager[0] (dup): name "dup" already used by alert webhook[0] (dup)`,
		"alert alertmanager[0] (dup): queue_size -1: negative",
		`alert alertmanager[0] (dup): labels: "alert-name" is not a valid label name`,
		`alert alertmanager[0] (dup): labels: "severity" is set by oomwatch`,
		"alert pagerduty[0] (pagerduty-0): routing_key or routing_key_file: required",
		"alert pagerduty[1] (pagerduty-1): routing_key and routing_key_file: give one",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "secret-token") || strings.Contains(err.Error(), "not base64") {
		t.Errorf("error leaks a secret:\n%v", err)
	}
	if err := (Config{}).Validate(); err != nil {
		t.Errorf("empty config: %v", err)
	}
}

func TestSecretsNeverPrinted(t *testing.T) {
	const (
		hmacSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
		token      = "Bearer tok-9f8e7d"
		pdKey      = "PDKEY0123456789abcdefABCDEF01234"
		urlToken   = "T000/B000/XXXXSLACK"
	)
	cfg := Config{
		Webhook:      []WebhookConfig{{HTTPConfig: HTTPConfig{URL: "https://hooks.example/services/" + urlToken, Headers: map[string]Secret{"Authorization": token}}, Secret: hmacSecret}},
		Alertmanager: []AlertmanagerConfig{{HTTPConfig: HTTPConfig{URL: "http://am:9093", Headers: map[string]Secret{"Authorization": token}}}},
		PagerDuty:    []PagerDutyConfig{{RoutingKey: pdKey}},
	}
	j, _ := json.Marshal(cfg)
	for _, s := range []string{
		fmt.Sprint(cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg), string(j),
		cfg.Webhook[0].String(), cfg.Alertmanager[0].String(), cfg.PagerDuty[0].String(),
	} {
		for _, secret := range []string{hmacSecret, token, pdKey} {
			if strings.Contains(s, secret) {
				t.Errorf("secret %q printed in %s", secret, s)
			}
		}
	}
	if s := cfg.Webhook[0].String(); strings.Contains(s, urlToken) || !strings.Contains(s, "https://hooks.example/…") {
		t.Errorf("webhook URL path not redacted: %s", s)
	}
}

func TestSecretFiles(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte("\n"), 0o600)
	for _, cfg := range []Config{
		{Webhook: []WebhookConfig{{HTTPConfig: HTTPConfig{URL: "http://x"}, SecretFile: filepath.Join(dir, "missing")}}},
		{PagerDuty: []PagerDutyConfig{{RoutingKeyFile: empty}}},
		{Webhook: []WebhookConfig{{HTTPConfig: HTTPConfig{URL: "http://x", HeaderFiles: map[string]string{"Authorization": filepath.Join(dir, "missing")}}}}},
	} {
		if d, err := New(cfg, Options{}, testLog(t)); err == nil {
			closeNow(t, d, 0)
			t.Errorf("New accepted %v", cfg)
		} else if !strings.Contains(err.Error(), "alert ") {
			t.Errorf("error does not name the sink: %v", err)
		}
	}
}
