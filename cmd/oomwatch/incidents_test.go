package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/oomwatch/oomwatch/internal/history"
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
		history.Actions(loop, []history.Action{{Action: "reset-adj", PID: 6016, Comm: "java", Done: true, Verified: true}}, ""),
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
