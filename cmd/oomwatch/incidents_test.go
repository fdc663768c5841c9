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

	"github.com/oomwatch/oomwatch/internal/history"
	"github.com/oomwatch/oomwatch/internal/statusd"
	"github.com/oomwatch/oomwatch/policy"
	"github.com/oomwatch/oomwatch/watchdog"
)

func TestIncidentsCmd(t *testing.T) {
	dir := t.TempDir()
	var out, errb bytes.Buffer
	if err := execute([]string{"incidents", "--state-dir", dir}, &out, &errb); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "no incidents recorded") {
		t.Errorf("empty: %q", out.String())
	}

	j := history.Open(dir, history.Options{})
	t0 := time.Now().Add(-time.Hour)
	loop := &watchdog.Incident{ID: "aaaa", Verdict: watchdog.VerdictLoop, Cgroup: "/lxc.payload.web1", Started: t0,
		Evidence:   watchdog.Evidence{Window: time.Second, OOMs: 312, Limit: 3000 << 20, Usage: 3000 << 20},
		Candidates: []watchdog.Candidate{{PID: 6016, Comm: "java", OOMScoreAdj: -1000, Unkillable: true}},
		Origin:     &watchdog.Origin{PID: 901, Comm: "sshd", ParentPID: 1, ParentComm: "systemd"}}
	stall := &watchdog.Incident{ID: "bbbb", Verdict: watchdog.VerdictStalled, Cgroup: "/system.slice/x.service", Started: t0.Add(10 * time.Minute),
		Evidence: watchdog.Evidence{OOMs: 5}}
	open := &watchdog.Incident{ID: "cccc", Verdict: watchdog.VerdictLoop, Cgroup: "/a", Started: t0.Add(20 * time.Minute), Evidence: watchdog.Evidence{OOMs: 9}}
	for _, r := range []history.Record{
		history.Opened(loop, history.Names{Container: "web1"}, []string{"Out of memory and no killable processes..."}),
		history.Step(loop, policy.Action{Name: "reset-adj", PID: 6016, Comm: "java", Pending: true}),
		history.Step(loop, policy.Action{Name: "reset-adj", PID: 6016, Comm: "java", Done: true, Verified: true}),
		history.LadderDone(loop, policy.OutcomeResolved),
		history.Resolved(loop, "no OOM for 2s", nil),
		history.Opened(stall, history.Names{}, nil),
		history.Opened(open, history.Names{}, nil),
	} {
		if err := j.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	j.Close()

	out.Reset()
	if err := execute([]string{"incidents", "--state-dir", dir}, &out, &errb); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	lines := strings.Split(s, "\n")
	if len(lines) < 4 || !strings.Contains(lines[1], "/a") || !strings.Contains(lines[3], "web1") {
		t.Fatalf("order (newest first):\n%s", s)
	}
	for _, want := range []string{"STARTED", "loop", "/lxc.payload.web1 (web1)", "312/0", "901 (sshd) ← systemd", "reset-adj java ✓ → resolved", "(report only)", "OPEN 40m"} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}

	out.Reset()
	if err := execute([]string{"incidents", "--state-dir", dir, "--limit", "1"}, &out, &errb); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "(1 of 3 incidents") {
		t.Errorf("--limit:\n%s", out.String())
	}

	out.Reset()
	if err := execute([]string{"incidents", "--state-dir", dir, "--json", "--limit", "0"}, &out, &errb); err != nil {
		t.Fatal(err)
	}
	var incs []history.Incident
	if err := json.Unmarshal(out.Bytes(), &incs); err != nil || len(incs) != 3 || incs[2].ID != "aaaa" || len(incs[2].KernelLog) != 1 {
		t.Fatalf("--json: %v %+v", err, incs)
	}

	var ee *exitError
	if err := execute([]string{"incidents", "--limit", "-1"}, &out, &errb); !errors.As(err, &ee) || ee.code != exitUsage {
		t.Errorf("--limit -1: %v", err)
	}
}

// Without --state-dir, incidents reads the running daemon's state
// directory, else state_dir from the config file, and says which it read.
func TestIncidentsFindsTheDaemonsStateDir(t *testing.T) {
	d, err := os.MkdirTemp("", "ow-inc") // short: a unix socket path is at most 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(d)
	sock := filepath.Join(d, "s.sock")
	daemonDir, cfgDir := filepath.Join(d, "daemon-state"), filepath.Join(d, "cfg-state")
	j := history.Open(daemonDir, history.Options{})
	inc := &watchdog.Incident{ID: "dddd", Verdict: watchdog.VerdictLoop, Cgroup: "/lxc.payload.db", Started: time.Now().Add(-time.Minute)}
	if err := j.Append(history.Opened(inc, history.Names{Container: "db"}, nil)); err != nil {
		t.Fatal(err)
	}
	j.Close()
	cfg := filepath.Join(d, "oomwatch.yaml")
	if err := os.WriteFile(cfg, []byte("state_dir: "+cfgDir+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"incidents", "--socket", sock, "--config", cfg}

	// No daemon: the config's state_dir, which does not exist yet.
	var out, errb bytes.Buffer
	if err := execute(args, &out, &errb); err != nil {
		t.Fatal(err)
	}
	if want := "no incidents recorded in " + cfgDir + " (state_dir in " + cfg; !strings.Contains(out.String(), want) || !strings.Contains(out.String(), "does not exist yet") {
		t.Errorf("no daemon: want %q and that it does not exist:\n%s%s", want, out.String(), errb.String())
	}

	srv, err := statusd.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- srv.Serve(ctx, func(statusd.Request) statusd.Status { return statusd.Status{PID: 4242, StateDir: daemonDir} })
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	out.Reset()
	if err := execute(args, &out, &errb); err != nil {
		t.Fatal(err)
	}
	if s := out.String(); !strings.Contains(s, "/lxc.payload.db (db)") || !strings.Contains(s, "journal: "+daemonDir+" (the running daemon's, pid 4242") {
		t.Errorf("daemon running: want its journal and where it came from:\n%s", s)
	}
	// --state-dir wins.
	out.Reset()
	if err := execute(append(args, "--state-dir", cfgDir), &out, &errb); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "(--state-dir; it does not exist yet)") {
		t.Errorf("--state-dir: %s", out.String())
	}
}
