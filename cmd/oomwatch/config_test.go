package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/oomwatch/oomwatch/internal/config"
)

func runCfg(cmd string, args ...string) (int, string, string) {
	return call(append([]string{cmd}, args...)...)
}

func TestConfigDefaults(t *testing.T) {
	code, out, _ := runCfg("config", "--defaults")
	if code != 0 || out != string(config.DefaultsYAML()) {
		t.Errorf("exit %d, output %d bytes: want the defaults file verbatim", code, len(out))
	}
	if code, _, errs := runCfg("config"); code != exitUsage || !strings.Contains(errs, "use --defaults") {
		t.Errorf("no flag: exit %d %q", code, errs)
	}
	if code, out, errs := runCfg("config", "--help"); code != 0 || !strings.Contains(out, "Usage:\n  oomwatch config --defaults") || !strings.Contains(out, "--defaults") || errs != "" {
		t.Errorf("--help: exit %d %q", code, errs)
	}
	if code, _, _ := runCfg("config", "--defaults", "x"); code != exitUsage {
		t.Errorf("extra argument: exit %d", code)
	}
}

func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.yaml", "rules:\n  - name: a\n    match: {unit: a.service}\n    dry_run: true\n  - name: b\n    dry_run: true\n")
	if code, out, errs := runCfg("check-config", good); code != 0 || out != good+": OK (2 rules)\n" {
		t.Errorf("good file: exit %d %q %q", code, out, errs)
	}
	one := write("one.yaml", "rules:\n  - name: a\n    ladder: [kill]\n")
	if code, out, _ := runCfg("check-config", one); code != 0 || out != one+": OK (1 rule)\n" {
		t.Errorf("one rule: exit %d %q", code, out)
	}
	defaults := write("defaults.yaml", string(config.DefaultsYAML()))
	if code, out, _ := runCfg("check-config", defaults); code != 0 || out != defaults+": OK (0 rules)\n" {
		t.Errorf("defaults file: exit %d %q", code, out)
	}

	bad := write("bad.yaml", "detector:\n  min_ooms: three\nrules:\n  - name: a\n")
	code, out, errs := runCfg("check-config", bad)
	want := bad + `:2:13: detector.min_ooms: want a whole number, found "three" — write a whole number, such as 3
  2 |   min_ooms: three
    |             ^
` + bad + ": 1 problem: oomwatch would refuse this file as a whole\n"
	if code != exitConfig || out != "" || errs != want {
		t.Errorf("bad file: exit %d, stdout %q, stderr:\n%s\nwant:\n%s", code, out, errs, want)
	}

	two := write("two.yaml", "ladder: [reboot]\nkill: {mode: gentle}\n")
	if code, _, errs := runCfg("check-config", two); code != exitConfig || !strings.Contains(errs, two+":1:10: ladder[0]: unknown ladder rung") ||
		!strings.Contains(errs, two+":2:14: kill.mode: unknown kill mode") || !strings.HasSuffix(errs, "2 problems: oomwatch would refuse this file as a whole\n") {
		t.Errorf("two problems: exit %d %q", code, errs)
	}

	caps := write("caps.yaml", "max_cgroups: 1000\nmax_per_subtree: 1000\n")
	if code, out, errs := runCfg("check-config", caps); code != 0 || out != caps+": OK (0 rules)\n" {
		t.Errorf("max_per_subtree equal to max_cgroups: exit %d %q %q", code, out, errs)
	}
	overCap := write("overcap.yaml", "max_cgroups: 1000\nmax_per_subtree: 2000\n")
	code, out, errs = runCfg("check-config", overCap)
	want = overCap + `:2:18: max_per_subtree: max_per_subtree 2000 is more than max_cgroups 1000 — lower max_per_subtree to at most 1000, or raise max_cgroups to 2000 or more
  2 | max_per_subtree: 2000
    |                  ^
` + overCap + ": 1 problem: oomwatch would refuse this file as a whole\n"
	if code != exitConfig || out != "" || errs != want {
		t.Errorf("max_per_subtree above max_cgroups: exit %d, stdout %q, stderr:\n%s\nwant:\n%s", code, out, errs, want)
	}
	zeroCap := write("zerocap.yaml", "max_per_subtree: 0\n")
	if code, _, errs := runCfg("check-config", zeroCap); code != exitConfig || !strings.HasPrefix(errs, zeroCap+":1:18: max_per_subtree: max_per_subtree 0 is out of range — use 1 to 1048576\n") {
		t.Errorf("max_per_subtree 0: exit %d %q", code, errs)
	}

	missing := filepath.Join(dir, "missing.yaml")
	if code, _, errs := runCfg("check-config", missing); code != exitConfig || !strings.Contains(errs, missing+": no such file") {
		t.Errorf("missing file: exit %d %q", code, errs)
	}

	open := write("open.yaml", "dry_run: true\n")
	os.Chmod(open, 0o666)
	code, _, errs = runCfg("check-config", open)
	if os.Geteuid() == 0 {
		if code != exitConfig || !strings.Contains(errs, "writable by group or other") || !strings.Contains(errs, "chmod go-w "+open) {
			t.Errorf("world-writable file as root: exit %d %q", code, errs)
		}
	} else if code != 0 {
		t.Errorf("world-writable file, not root: exit %d %q", code, errs)
	}

	if code, out, errs := runCfg("check-config", "--help"); code != 0 || !strings.Contains(out, "Usage:\n  oomwatch check-config [FILE]") || strings.Contains(out, "Flags:\n\n") {
		t.Errorf("--help: exit %d %q", code, errs)
	}
	if code, _, errs := runCfg("check-config", good, bad); code != exitUsage || !strings.Contains(errs, "one file at a time") {
		t.Errorf("two files: exit %d %q", code, errs)
	}
	if code, _, _ := runCfg("check-config", "--bogus"); code != exitUsage {
		t.Errorf("bad flag: exit %d", code)
	}
}

// check-config and run refuse a max_per_subtree above max_cgroups alike,
// with the same FILE:LINE:COLUMN message.
func TestCheckConfigMatchesRunOnCaps(t *testing.T) {
	p := filepath.Join(t.TempDir(), "oomwatch.yaml")
	if err := os.WriteFile(p, []byte("max_cgroups: 1000\nmax_per_subtree: 2000\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	want := p + ":2:18: max_per_subtree: max_per_subtree 2000 is more than max_cgroups 1000"
	code, _, runErrs := call("run", "--config", p, "--cgroup-root", fakeTree(t), "--proc-root", fakeProcs(t), "--status-socket", "", "--metrics-listen", "")
	if code == 0 || !strings.Contains(runErrs, want) {
		t.Errorf("run: exit %d %q: want %q", code, runErrs, want)
	}
	if code, _, errs := runCfg("check-config", p); code != exitConfig || !strings.Contains(errs, want) {
		t.Errorf("check-config: exit %d %q: want %q", code, errs, want)
	}
}
