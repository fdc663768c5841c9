package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/oomwatch/oomwatch/alert"
	"github.com/oomwatch/oomwatch/internal/cgroupfs"
	"github.com/oomwatch/oomwatch/internal/config"
	"github.com/oomwatch/oomwatch/internal/procfs"
	"github.com/oomwatch/oomwatch/policy"
	"github.com/oomwatch/oomwatch/report"
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
	f := runFlags{Overrides: config.Overrides{Set: map[string]bool{}}}
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
	f := runFlags{Overrides: config.Overrides{Policy: policy.DefaultOptions(), Detector: watchdog.DefaultParams, Set: map[string]bool{"dry-run": true}}}
	f.Policy.DryRun = true
	r := cfg.For("/web/a")
	_, o := f.Apply(r.Detector, r.Policy)
	if !o.DryRun || len(o.Ladder) != 1 || o.Ladder[0] != policy.Freeze {
		t.Fatalf("--dry-run must override every rule and leave the rule's ladder: %+v", o)
	}
	f.Set["ladder"], f.Ladder = true, []string{"kill"}
	if _, _, err := f.loadConfig(func() (*config.Config, error) { return cfg, nil }); err != nil {
		t.Fatal(err)
	}
	f.Ladder = []string{"reboot"}
	if _, _, err := f.loadConfig(func() (*config.Config, error) { return cfg, nil }); err == nil || !strings.Contains(err.Error(), "reboot") {
		t.Fatalf("bad --ladder over a good config: %v", err)
	}
}

// --max-cgroups and --max-per-subtree given on the command line override
// max_cgroups and max_per_subtree of the file, each on its own; the others
// leave the file alone.
func TestCapFlagsOverrideConfig(t *testing.T) {
	p := writeConfig(t, "max_cgroups: 1000\nmax_per_subtree: 100\n")
	cfg, err := config.LoadWith(p, config.LoadOptions{Explicit: true})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name               string
		set                map[string]bool
		maxCgroups, perSub int // flag values
		wantMax, wantSub   int
	}{
		{"no flags: the file", map[string]bool{}, 5, 5, 1000, 100},
		{"--max-per-subtree", map[string]bool{"max-per-subtree": true}, 5, 50, 1000, 50},
		{"--max-cgroups alone", map[string]bool{"max-cgroups": true}, 2000, 5, 2000, 100},
		{"both", map[string]bool{"max-cgroups": true, "max-per-subtree": true}, 3000, 3000, 3000, 3000},
		{"other flags", map[string]bool{"dry-run": true, "state-dir": true}, 5, 5, 1000, 100},
	}
	for _, tt := range tests {
		f := runFlags{Overrides: config.Overrides{Policy: policy.DefaultOptions(), Detector: watchdog.DefaultParams, Set: tt.set, MaxCgroups: tt.maxCgroups, MaxPerSubtree: tt.perSub}}
		if _, _, err := f.loadConfig(func() (*config.Config, error) { return cfg, nil }); err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if g := f.Global(cfg.Global()); g.MaxCgroups != tt.wantMax || g.MaxPerSubtree != tt.wantSub {
			t.Errorf("%s: max cgroups %d, per subtree %d: want %d and %d", tt.name, g.MaxCgroups, g.MaxPerSubtree, tt.wantMax, tt.wantSub)
		}
	}
	if g := (&runFlags{Overrides: config.Overrides{Set: map[string]bool{}}}).Global(config.Defaults().Global()); g.MaxPerSubtree != watchdog.DefaultMaxPerSubtree {
		t.Errorf("no file, no flag: per subtree %d, want watchdog.DefaultMaxPerSubtree", g.MaxPerSubtree)
	}
}

// A --max-per-subtree that the file would refuse as max_per_subtree is a
// usage error, checked against the global cap in force (flag or file).
func TestMaxPerSubtreeFlagIsChecked(t *testing.T) {
	p := writeConfig(t, "max_cgroups: 1000\n")
	tests := []struct {
		args []string
		want string // "" = accepted
	}{
		{[]string{"--max-per-subtree", "0"}, "--max-per-subtree 0: want at least 1"},
		{[]string{"--max-per-subtree", "-3"}, "--max-per-subtree -3: want at least 1"},
		{[]string{"--max-per-subtree", "2000"}, "--max-per-subtree 2000 is more than the 1000 cgroups watched in all: lower it, or raise --max-cgroups (or max_cgroups in the config file)"},
		{[]string{"--max-per-subtree", "900", "--max-cgroups", "800"}, "--max-per-subtree 900 is more than the 800 cgroups watched in all: lower it, or raise --max-cgroups (or max_cgroups in the config file)"},
		{[]string{"--max-per-subtree", "2000", "--max-cgroups", "2000"}, ""},
		{[]string{"--max-per-subtree", "1000"}, ""},
	}
	for _, tt := range tests {
		f := runFlags{Overrides: config.Overrides{Policy: policy.DefaultOptions(), Detector: watchdog.DefaultParams}}
		c := &cobra.Command{Use: "run"}
		f.register(c)
		fs := c.Flags()
		if err := fs.Parse(tt.args); err != nil {
			t.Fatal(err)
		}
		f.Set = map[string]bool{}
		fs.Visit(func(fl *pflag.Flag) { f.Set[fl.Name] = true })
		_, _, err := f.loadConfig(func() (*config.Config, error) { return config.LoadWith(p, config.LoadOptions{Explicit: true}) })
		var ee *exitError
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%v: %v", tt.args, err)
		case tt.want != "" && (!errors.As(err, &ee) || ee.code != exitUsage || err.Error() != tt.want):
			t.Errorf("%v: %v (%T)\nwant exit 64 with %q", tt.args, err, err, tt.want)
		}
	}
	// Through the command line: a usage error before anything is opened.
	code, _, errs := call("run", "--config", p, "--max-per-subtree", "2000", "--cgroup-root", t.TempDir(), "--proc-root", t.TempDir())
	if code != exitUsage || !strings.Contains(errs, "--max-per-subtree 2000 is more than the 1000 cgroups watched in all") {
		t.Errorf("run --max-per-subtree 2000: exit %d, %q", code, errs)
	}
}

// The per-subtree cap reaches the watchdog, from the file and from the
// flag over it: the container /lxc/web1 holds two cgroups, fakeTree's
// /lxc/web1 and /lxc/web1/sub added here.
func TestMaxPerSubtreeReachesTheWatchdog(t *testing.T) {
	capLine := `"event":"cgroup_cap","subtree":"/lxc/web1","max_per_subtree":1,`
	tests := []struct {
		name, file string
		set        map[string]bool
		flag       int
		capped     bool
	}{
		{"file", "max_per_subtree: 1\n", nil, 0, true},
		{"flag over the file", "max_per_subtree: 5\n", map[string]bool{"max-per-subtree": true}, 1, true},
		{"file over the built-in cap", "max_per_subtree: 5\n", nil, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			set := map[string]bool{"config": true, "state-dir": true, "metrics-listen": true, "status-socket": true}
			for k, v := range tt.set {
				set[k] = v
			}
			cg := fakeTree(t)
			if err := os.Mkdir(filepath.Join(cg, "lxc", "web1", "sub"), 0o755); err != nil {
				t.Fatal(err)
			}
			for name, c := range map[string]string{"cgroup.procs": "", "memory.max": "max\n"} {
				if err := os.WriteFile(filepath.Join(cg, "lxc", "web1", "sub", name), []byte(c), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			var logs bytes.Buffer
			f := runFlags{roots: rootFlags{cgroupRoot: cg, procRoot: fakeProcs(t)}, configPath: writeConfig(t, tt.file), Overrides: config.Overrides{Policy: policy.DefaultOptions(), Detector: watchdog.DefaultParams, Set: set, MaxPerSubtree: tt.flag}}
			if err := run(ctx, zerolog.New(&logs), f); err != nil {
				t.Fatalf("run: %v\n%s", err, logs.String())
			}
			if got := strings.Contains(logs.String(), capLine); got != tt.capped {
				t.Fatalf("cap at 1 logged: %v, want %v; logs:\n%s", got, tt.capped, logs.String())
			}
			if !tt.capped && strings.Contains(logs.String(), `"cgroup_cap"`) {
				t.Fatalf("a cap was logged:\n%s", logs.String())
			}
		})
	}
}

// A reload with a bad file keeps the config in force (what SIGHUP does).
func TestReloadKeepsOldConfigOnError(t *testing.T) {
	p := writeConfig(t, "rules:\n  - name: first\n    dry_run: true\n")
	f := runFlags{configPath: p, Overrides: config.Overrides{Set: map[string]bool{"config": true}}}
	holder, _, w := reloadable(t, &f)
	disp := &report.Alerts{}
	if err := os.WriteFile(p, []byte("rules:\n  - name: second\n    ladder: [reboot]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	reload(zerolog.Nop(), &f, holder, w, disp, "")
	if got := holder.Current().RuleNames(); len(got) != 1 || got[0] != "first" {
		t.Fatalf("bad reload replaced the config: rules %v", got)
	}
	if err := os.WriteFile(p, []byte("rules:\n  - name: second\n    ladder: [kill]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	reload(zerolog.Nop(), &f, holder, w, disp, "")
	if got := holder.Current().RuleNames(); len(got) != 1 || got[0] != "second" {
		t.Fatalf("good reload not applied: rules %v", got)
	}
}

// reloadable loads f's config file as run does and gives what reload
// needs: the config holder, the alert settings and a watchdog on an empty
// tree.
func reloadable(t *testing.T, f *runFlags) (*config.Holder, alert.Config, *watchdog.Watchdog) {
	t.Helper()
	cfg, acfg, err := f.loadConfig(func() (*config.Config, error) {
		return config.LoadWith(f.configPath, config.LoadOptions{Explicit: true})
	})
	if err != nil {
		t.Fatal(err)
	}
	w, err := watchdog.New(watchdog.Config{CG: cgroupfs.Hierarchy{Version: 2, Root: t.TempDir()}, Proc: procfs.New("/proc"), Detector: watchdog.DefaultParams}, nopHandler{}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	return config.NewHolder(cfg, config.LoadOptions{Explicit: true}), acfg, w
}

type nopHandler struct{}

func (nopHandler) Open(*watchdog.Incident)             {}
func (nopHandler) Resolved(*watchdog.Incident, string) {}
