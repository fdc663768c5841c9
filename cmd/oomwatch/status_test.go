package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/oomwatch/oomwatch/internal/config"
	"github.com/oomwatch/oomwatch/internal/statusd"
	"github.com/oomwatch/oomwatch/policy"
	"github.com/oomwatch/oomwatch/test/testhost"
	"github.com/oomwatch/oomwatch/watchdog"
)

func TestStatusCmd(t *testing.T) {
	d, err := os.MkdirTemp("", "st") // short: sun_path is 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(d)
	sock := filepath.Join(d, "oomwatch.sock")

	var out, errb bytes.Buffer
	err = execute([]string{"status", "--socket", sock}, &out, &errb)
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != 1 || !errors.Is(ee.err, statusd.ErrNotRunning) {
		t.Fatalf("no daemon: %v", err)
	}

	srv, err := statusd.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	now := time.Now()
	go func() {
		done <- srv.Serve(ctx, func(statusd.Request) statusd.Status {
			return statusd.Status{
				Version: "1.2.3", PID: 4242, Started: now.Add(-3 * time.Hour), Ladder: []string{"reset-adj", "freeze"},
				CgroupVersion: 2, Layout: "unified", Hierarchy: "cgroup v2 memory hierarchy at /sys/fs/cgroup (unified)",
				Roots: statusd.Roots{Memory: "/sys/fs/cgroup", Proc: "/proc"}, Watched: 812, OOMs: 900, Kills: 1, Incidents: 2,
				LastEvent: now.Add(-2 * time.Second),
				OpenIncidents: []statusd.OpenIncident{{ID: "25423c849e15960f", Cgroup: "/lxc.payload.web1", Container: "web1", Verdict: "loop", Since: now.Add(-5 * time.Second)},
					{ID: "d0c4e5", Cgroup: "/system.slice/docker-3f2a1b4c5d6e77.scope", Container: "3f2a1b4c5d6e", ContainerName: "web\x1b[2J", Verdict: "loop", Since: now}},
				RecentActions: []statusd.Action{{Time: now, Incident: "25423c849e15960f", Cgroup: "/lxc.payload.web1", Action: policy.Action{Name: "reset-adj", PID: 6016, Comm: "java\x1b[2J", Done: true, Verified: false}},
					{Time: now, Incident: "d0c4e5", Cgroup: "/system.slice/docker-3f2a1b4c5d6e77.scope", Container: "3f2a1b4c5d6e", ContainerName: "db",
						Action: policy.Action{Name: "reset-adj", PID: 7, Comm: "hog", Done: true, Verified: true}}},
				Alerts:    []statusd.SinkQueue{{Name: "ops", Kind: "webhook", Queued: 3, Sent: 10}},
				KernelLog: "reading /dev/kmsg",
			}
		})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	out.Reset()
	if err := execute([]string{"status", "--socket", sock}, &out, &errb); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	for _, want := range []string{"oomwatch 1.2.3, pid 4242, up 3h0m", "ladder reset-adj → freeze", "812 memory cgroups", "last event 2s ago",
		"/lxc.payload.web1 (web1)", "25423c849e15960f", "docker-3f2a1b4c5d6e77.scope (web\\u001b[2J 3f2a1b4c5d6e)",
		"docker-3f2a1b4c5d6e77.scope (db 3f2a1b4c5d6e)", "6016 (java\\u001b[2J)", "done, not verified", "ops", "webhook", "reading /dev/kmsg"} {
		if !strings.Contains(s, want) {
			t.Errorf("status output lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "\x1b") {
		t.Error("raw escape from a comm reached the terminal")
	}
	out.Reset()
	if err := execute([]string{"status", "--socket", sock, "--json"}, &out, &errb); err != nil {
		t.Fatal(err)
	}
	var st statusd.Status
	if err := json.Unmarshal(out.Bytes(), &st); err != nil || st.Watched != 812 || len(st.OpenIncidents) != 2 || st.OpenIncidents[1].ContainerName != "web\x1b[2J" {
		t.Fatalf("--json: %v %+v", err, st)
	}
	if err := execute([]string{"status", "extra"}, &out, &errb); !errors.As(err, &ee) || ee.code != exitUsage {
		t.Errorf("positional argument: %v", err)
	}
}

func TestAgoUsesTheTwoLargestUnits(t *testing.T) {
	now := time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)
	for d, want := range map[time.Duration]string{5 * time.Second: "5s", 12 * time.Minute: "12m", 185 * time.Minute: "3h5m", 52 * time.Hour: "2d4h", -time.Second: "0s"} {
		if got := ago(now, now.Add(-d)); got != want {
			t.Errorf("ago(%v) = %q, want %q", d, got, want)
		}
	}
	if ago(now, time.Time{}) != "?" {
		t.Error("zero time")
	}
}

// The running daemon lists what it watches: a summary, then the cgroups,
// the one where the next OOM would loop (every task unkillable under a
// limit) first and marked; --at-risk and --cgroups narrow the list.
func TestStatusListsWatchedCgroupsAndRisk(t *testing.T) {
	d, err := os.MkdirTemp("", "st")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(d)
	sock := filepath.Join(d, "s.sock")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs testhost.SyncBuf
	tree := fakeTree(t)
	for _, dir := range []string{"lxc", "lxc/web1", "free"} { // the memory controller on
		if err := os.WriteFile(filepath.Join(tree, dir, "memory.events"), []byte("low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f := runFlags{roots: rootFlags{cgroupRoot: tree, procRoot: fakeProcs(t)}, level: "debug", statusSocket: sock, riskEvery: time.Hour, Overrides: config.Overrides{Policy: policy.DefaultOptions(), Detector: watchdog.DefaultParams, Set: map[string]bool{"state-dir": true, "metrics-listen": true}}}
	done := make(chan error, 1)
	go func() { done <- run(ctx, zerolog.New(&logs), f) }()
	var out string
	for i := 0; i < 250; i++ {
		var code int
		if code, out, _ = call("status", "--socket", sock); code == 0 && strings.Contains(out, "WOULD LOOP") {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, want := range []string{
		"cgroups: 4 watched, 0 with an open incident, 1 where the next OOM would loop (checked",
		"/lxc/web1",
		"20MiB", // limit
		"WOULD LOOP",
		"/free",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s\nlog:\n%s", want, out, logs.String())
		}
	}
	if i, j := strings.Index(out, "/lxc/web1"), strings.Index(out, "/free"); i < 0 || j < 0 || i > j {
		t.Errorf("the cgroup at risk is not listed first:\n%s", out)
	}
	_, out, _ = call("status", "--socket", sock, "--at-risk")
	if !strings.Contains(out, "/lxc/web1") || strings.Contains(out, "/free") {
		t.Errorf("--at-risk:\n%s", out)
	}
	_, out, _ = call("status", "--socket", sock, "--cgroups", "/fr*", "--json")
	var st statusd.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("--json: %v\n%s", err, out)
	}
	if len(st.Cgroups) != 1 || st.Cgroups[0].Cgroup != "/free" || st.CgroupSummary.AtRisk != 1 || st.CgroupSummary.Watched != 4 {
		t.Errorf("--cgroups /fr* --json: %+v %+v", st.CgroupSummary, st.Cgroups)
	}
	_, out, _ = call("status", "--socket", sock, "--rows", "1")
	if !strings.Contains(out, "(1 of 4;") {
		t.Errorf("--rows 1:\n%s", out)
	}
	if code, _, errs := call("status", "--socket", sock, "--cgroups", "[x"); code != exitUsage {
		t.Errorf("a bad glob: exit %d %s", code, errs)
	}
	if !strings.Contains(logs.String(), `"event":"risk"`) {
		t.Errorf("no risk event logged:\n%s", logs.String())
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("run: %v", err)
	}
}
