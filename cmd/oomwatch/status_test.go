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

	"github.com/oomwatch/oomwatch/internal/statusd"
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
		done <- srv.Serve(ctx, func() statusd.Status {
			return statusd.Status{
				Version: "1.2.3", PID: 4242, Started: now.Add(-3 * time.Hour), Ladder: []string{"reset-adj", "freeze"},
				CgroupVersion: 2, Layout: "unified", Hierarchy: "cgroup v2 memory hierarchy at /sys/fs/cgroup (unified)",
				Roots: statusd.Roots{Memory: "/sys/fs/cgroup", Proc: "/proc"}, Watched: 812, OOMs: 900, Kills: 1, Incidents: 2,
				LastEvent:     now.Add(-2 * time.Second),
				OpenIncidents: []statusd.OpenIncident{{ID: "25423c849e15960f", Cgroup: "/lxc.payload.web1", Container: "web1", Verdict: "loop", Since: now.Add(-5 * time.Second)}},
				RecentActions: []statusd.Action{{Time: now, Incident: "25423c849e15960f", Cgroup: "/lxc.payload.web1", Action: "reset-adj", PID: 6016, Comm: "java\x1b[2J", Done: true, Verified: false}},
				Alerts:        []statusd.SinkQueue{{Name: "ops", Kind: "webhook", Queued: 3, Sent: 10}},
				KernelLog:     "reading /dev/kmsg",
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
		"/lxc.payload.web1 (web1)", "25423c849e15960f", "6016 (java\\u001b[2J)", "done, not verified", "ops", "webhook", "reading /dev/kmsg"} {
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
	if err := json.Unmarshal(out.Bytes(), &st); err != nil || st.Watched != 812 || len(st.OpenIncidents) != 1 {
		t.Fatalf("--json: %v %+v", err, st)
	}
	if err := execute([]string{"status", "extra"}, &out, &errb); !errors.As(err, &ee) || ee.code != exitUsage {
		t.Errorf("positional argument: %v", err)
	}
}

func TestAgo(t *testing.T) {
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
