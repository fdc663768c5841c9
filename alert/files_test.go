package alert

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Every file a sink runs or reads is checked like the config file: a hook
// others can rewrite runs their code as root, a CA bundle or key others can
// replace redirects or forges alerts.
func TestCheckFiles(t *testing.T) {
	me := uint32(os.Getuid())
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	file := func(name string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("x\n"), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // whatever the umask
			t.Fatal(err)
		}
		return p
	}
	hook, ca, secret, token, key := file("hook", 0o755), file("ca.pem", 0o644), file("secret", 0o600), file("token", 0o600), file("key", 0o600)
	c := Config{
		Exec:         []ExecConfig{{Delivery: Delivery{Name: "page"}, Command: []string{hook, "--team", "ops"}}},
		Webhook:      []WebhookConfig{{HTTPConfig: HTTPConfig{URL: "https://h", CAFile: ca, HeaderFiles: map[string]string{"Authorization": token}}, SecretFile: secret}},
		Alertmanager: []AlertmanagerConfig{{HTTPConfig: HTTPConfig{URL: "https://am", CAFile: ca}}},
		PagerDuty:    []PagerDutyConfig{{Delivery: Delivery{Name: "pd"}, RoutingKeyFile: key}},
	}
	if err := c.CheckFiles(me); err != nil {
		t.Fatalf("safe files refused: %v", err)
	}

	for _, p := range []string{hook, token, key} {
		if err := os.Chmod(p, 0o666); err != nil {
			t.Fatal(err)
		}
	}
	err := c.CheckFiles(me)
	for _, want := range []string{
		"alert exec[0] (page): command[0]: " + hook + ": the file is writable by group or other (mode 0666): oomwatch runs as root and must not take orders from other users — run chmod go-w " + hook,
		"alert webhook[0] (webhook-0): header_files[Authorization]: " + token + ": the file is writable by group or other",
		"alert pagerduty[0] (pd): routing_key_file: " + key + ": the file is writable by group or other",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("CheckFiles: %v\nwant it to say %s", err, want)
		}
	}
	if err != nil && strings.Count(err.Error(), "\n") != 2 {
		t.Errorf("want three problems, one a line:\n%v", err)
	}

	err = c.CheckFiles(me + 1)
	for _, want := range []string{
		"alert exec[0] (page): command[0]: " + hook + ": the file is owned by uid",
		"alert webhook[0] (webhook-0): ca_file: " + ca + ": the file is owned by uid",
		"alert webhook[0] (webhook-0): secret_file: " + secret + ": the file is owned by uid",
		"alert alertmanager[0] (alertmanager-0): ca_file: " + ca + ": the file is owned by uid",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("CheckFiles as another owner: %v\nwant it to say %s", err, want)
		}
	}

	c.Exec[0].Command[0] = filepath.Join(dir, "gone")
	if err := c.CheckFiles(me); err == nil || !strings.Contains(err.Error(), "alert exec[0] (page): command[0]: "+filepath.Join(dir, "gone")+": cannot check the file: no such file or directory") {
		t.Errorf("missing hook: %v", err)
	}
}
