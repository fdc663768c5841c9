package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/oomwatch/oomwatch/internal/config"
	"github.com/oomwatch/oomwatch/policy"
	"github.com/oomwatch/oomwatch/test/fixture"
	"github.com/oomwatch/oomwatch/watchdog"
)

func call(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := dispatch(args, &out, &errb)
	return code, out.String(), errb.String()
}

// execute runs a command line and returns its error, before dispatch turns
// it into an exit code.
func execute(args []string, stdout, stderr io.Writer) error {
	root := newRootCmd(stdout, stderr)
	root.SetArgs(args)
	return root.Execute()
}

func TestHelpEverywhere(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"help"}, {"run", "--help"}, {"scan", "--help"}, {"help", "scan"}} {
		code, out, errs := call(args...)
		if code != 0 || !strings.Contains(out+errs, "Usage") {
			t.Errorf("%v: exit %d, output %q %q", args, code, out, errs)
		}
	}
	if code, out, _ := call("version"); code != 0 || !strings.HasPrefix(out, "oomwatch ") {
		t.Errorf("version: %d %q", code, out)
	}
}

func TestBadInvocations(t *testing.T) {
	tests := []struct {
		args []string
		code int
		want string
	}{
		{nil, exitUsage, "Usage"},
		{[]string{"frobnicate"}, exitUsage, `unknown command "frobnicate"`},
		{[]string{"run", "--no-such-flag"}, exitUsage, "unknown flag: --no-such-flag"},
		{[]string{"run", "extra"}, exitUsage, `unexpected argument "extra"`},
		{[]string{"run", "--log-level", "loud"}, exitUsage, `--log-level "loud"`},
		{[]string{"run", "--cgroup-root", "/nonexistent-oomwatch"}, 1, "neither memory.oom_control (v1) nor cgroup.controllers (v2)"},
		{[]string{"scan", "--cgroup-root", "/nonexistent-oomwatch"}, 1, "not a memory cgroup hierarchy"},
	}
	for _, tt := range tests {
		code, out, errs := call(tt.args...)
		if code != tt.code || !strings.Contains(out+errs, tt.want) {
			t.Errorf("%v: exit %d (want %d), output %q %q (want %q)", tt.args, code, tt.code, out, errs, tt.want)
		}
	}
}

func TestBadLadderIsAUsageError(t *testing.T) {
	cg := fakeTree(t)
	code, _, errs := call("run", "--ladder", "reset-adj,reboot", "--cgroup-root", cg, "--proc-root", t.TempDir())
	if code != exitUsage || !strings.Contains(errs, `unknown ladder rung "reboot"`) {
		t.Fatalf("exit %d, %q", code, errs)
	}
}

// fakeTree builds a v2 hierarchy with /lxc/web1 (limit, one task at -1000
// descended from sshd at -1000 whose parent is init at 0) and /free (no limit).
func fakeTree(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	write := func(p, c string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, p), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("cgroup.controllers", "memory\n")
	write("cgroup.procs", "1\n50\n")
	write("lxc/web1/cgroup.procs", "100\n")
	write("lxc/web1/memory.max", "20971520\n")
	write("lxc/web1/memory.current", "20000000\n")
	write("free/cgroup.procs", "")
	write("free/memory.max", "max\n")
	return root
}

func fakeProcs(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	for _, p := range []struct {
		pid, ppid, adj int
		comm           string
	}{{1, 0, 0, "init"}, {50, 1, -1000, "sshd"}, {100, 50, -1000, "java"}} {
		dir := filepath.Join(root, fmt.Sprint(p.pid))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, c := range map[string]string{
			"stat":          fixture.StatLine(p.pid, p.comm, 'S', p.ppid, 0),
			"status":        "Name:\tx\nUid:\t0\t0\t0\t0\nVmRSS:\t 1000 kB\n",
			"cmdline":       p.comm + "\x00",
			"oom_score_adj": fmt.Sprintf("%d\n", p.adj),
			"oom_adj":       "0\n",
			"cgroup":        "0::/\n",
		} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(c), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return root
}

func TestScanReportsWouldLoopAndNearLimitInTextAndJSON(t *testing.T) {
	cg, proc := fakeTree(t), fakeProcs(t)
	code, out, errs := call("scan", "--cgroup-root", cg, "--proc-root", proc)
	if code != exitRisk {
		t.Fatalf("exit %d, want %d (risk found); %s %s", code, exitRisk, out, errs)
	}
	for _, want := range []string{"!! /lxc/web1", "WOULD LOOP", "NEAR LIMIT", "java", "50 sshd (parent 1 init at 0)", "1 cgroup(s) would loop", "1 cgroup(s) use 90% or more"} {
		if !strings.Contains(out, want) {
			t.Errorf("scan output lacks %q:\n%s", want, out)
		}
	}
	code, out, _ = call("scan", "--json", "--cgroup-root", cg, "--proc-root", proc)
	var res watchdog.ScanResult
	if err := json.Unmarshal([]byte(out), &res); err != nil || code != exitRisk {
		t.Fatalf("json: exit %d, %v: %s", code, err, out)
	}
	// "/" holds sshd at -1000 too, but it has no limit: listed, not a risk.
	if res.Risks != 1 || len(res.Cgroups) != 2 || res.Cgroups[1].Cgroup != "/lxc/web1" || !res.Cgroups[1].WouldLoop ||
		res.Cgroups[1].Unkillable[0].Origin.Comm != "sshd" {
		t.Fatalf("scan result %+v", res)
	}
}

// TestRunStopsCleanly runs the daemon on a fake tree and cancels it, as
// SIGTERM does.
func TestRunStopsCleanly(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	var logs bytes.Buffer
	f := runFlags{roots: rootFlags{cgroupRoot: fakeTree(t), procRoot: fakeProcs(t)}, configPath: "/nonexistent/oomwatch.yaml", statusSocket: filepath.Join(t.TempDir(), "oomwatch.sock"), Overrides: config.Overrides{StateDir: t.TempDir(), Policy: policy.DefaultOptions(), Detector: watchdog.DefaultParams, Set: map[string]bool{"state-dir": true, "metrics-listen": true}}}
	err := run(ctx, zerolog.New(&logs), f)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, logs.String())
	}
	if !strings.Contains(logs.String(), `"event":"ready"`) || !strings.Contains(logs.String(), "oomwatch stopped") {
		t.Fatalf("logs:\n%s", logs.String())
	}
}
