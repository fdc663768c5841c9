package main

import (
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/rs/zerolog"

	"github.com/oomwatch/oomwatch/internal/cgroupfs"
	"github.com/oomwatch/oomwatch/internal/config"
	"github.com/oomwatch/oomwatch/internal/procfs"
	"github.com/oomwatch/oomwatch/policy"
	"github.com/oomwatch/oomwatch/policy/alert"
	"github.com/oomwatch/oomwatch/watchdog"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "oomwatch.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAlertsSectionDecodesStrictly(t *testing.T) {
	good := writeConfig(t, `alerts:
  alertmanager:
    - name: am
      url: http://127.0.0.1:9093
  exec:
    - name: page
      command: ["/bin/true"]
      timeout: 30s
`)
	f := runFlags{set: map[string]bool{}}
	_, ac, err := f.loadConfig(func() (*config.Config, error) { return config.LoadWith(good, config.LoadOptions{Explicit: true}) })
	if err != nil || len(ac.Alertmanager) != 1 || len(ac.Exec) != 1 {
		t.Fatalf("good alerts: %+v, %v", ac, err)
	}
	bad := writeConfig(t, "alerts:\n  webhook:\n    - name: w\n      urll: http://x\n")
	_, _, err = f.loadConfig(func() (*config.Config, error) { return config.LoadWith(bad, config.LoadOptions{Explicit: true}) })
	if err == nil || !strings.Contains(err.Error(), "urll") || !strings.Contains(err.Error(), bad) {
		t.Fatalf("unknown sink key: %v", err)
	}
}

func TestFlagsOverrideConfig(t *testing.T) {
	p := writeConfig(t, "dry_run: false\nladder: [reset-adj]\nrules:\n  - name: web\n    match: {cgroup: \"/web/**\"}\n    ladder: [freeze]\n")
	cfg, err := config.LoadWith(p, config.LoadOptions{Explicit: true})
	if err != nil {
		t.Fatal(err)
	}
	f := runFlags{opts: policy.DefaultOptions(), params: watchdog.DefaultParams, set: map[string]bool{"dry-run": true}}
	f.opts.DryRun = true
	r := cfg.For("/web/a")
	_, o := f.apply(r.Detector, r.Policy)
	if !o.DryRun || len(o.Ladder) != 1 || o.Ladder[0] != policy.Freeze {
		t.Fatalf("--dry-run must override every rule and leave the rule's ladder: %+v", o)
	}
	f.set["ladder"], f.ladder = true, listFlag{"kill"}
	if _, _, err := f.loadConfig(func() (*config.Config, error) { return cfg, nil }); err != nil {
		t.Fatal(err)
	}
	f.ladder = listFlag{"reboot"}
	if _, _, err := f.loadConfig(func() (*config.Config, error) { return cfg, nil }); err == nil || !strings.Contains(err.Error(), "reboot") {
		t.Fatalf("bad --ladder over a good config: %v", err)
	}
}

// A reload with a bad file keeps the config in force (what SIGHUP does).
func TestReloadKeepsOldConfigOnError(t *testing.T) {
	p := writeConfig(t, "rules:\n  - name: first\n    dry_run: true\n")
	cfg, err := config.LoadWith(p, config.LoadOptions{Explicit: true})
	if err != nil {
		t.Fatal(err)
	}
	holder := config.NewHolder(cfg, config.LoadOptions{Explicit: true})
	w, err := watchdog.New(watchdog.Config{CG: cgroupfs.Hierarchy{Version: 2, Root: t.TempDir()}, Proc: procfs.New("/proc"), Detector: watchdog.DefaultParams}, nopHandler{}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	f := runFlags{configPath: p, set: map[string]bool{"config": true}}
	var disp atomic.Pointer[alert.Dispatcher]
	if err := os.WriteFile(p, []byte("rules:\n  - name: second\n    ladder: [reboot]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	reload(zerolog.Nop(), &f, holder, w, &disp, "")
	if got := holder.Current().RuleNames(); len(got) != 1 || got[0] != "first" {
		t.Fatalf("bad reload replaced the config: rules %v", got)
	}
	if err := os.WriteFile(p, []byte("rules:\n  - name: second\n    ladder: [kill]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	reload(zerolog.Nop(), &f, holder, w, &disp, "")
	if got := holder.Current().RuleNames(); len(got) != 1 || got[0] != "second" {
		t.Fatalf("good reload not applied: rules %v", got)
	}
}

type nopHandler struct{}

func (nopHandler) Open(*watchdog.Incident)             {}
func (nopHandler) Resolved(*watchdog.Incident, string) {}
