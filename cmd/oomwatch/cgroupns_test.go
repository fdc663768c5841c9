package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/oomwatch/oomwatch/internal/config"
	"github.com/oomwatch/oomwatch/internal/procfs"
	"github.com/oomwatch/oomwatch/policy"
	"github.com/oomwatch/oomwatch/watchdog"
)

// privateProcs is fakeProcs seen from a private cgroup namespace: PID 1
// outside it, and our own namespace link (links, pid → target) differing
// from PID 1's when given.
func privateProcs(t *testing.T, links map[int]string) string {
	t.Helper()
	root := fakeProcs(t)
	if err := os.WriteFile(filepath.Join(root, "1", "cgroup"), []byte("0::/../..\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for pid, target := range links {
		dir := filepath.Join(root, strconv.Itoa(pid), "ns")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, filepath.Join(dir, "cgroup")); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// In a private cgroup namespace that it cannot leave, run refuses to start
// with exit status 78 and says why and what to do, before it watches or
// changes anything.
func TestRunRefusesPrivateCgroupNamespace(t *testing.T) {
	for _, tc := range []struct {
		name  string
		links map[int]string
		says  string
	}{
		{"namespace links differ, join fails", map[int]string{1: "cgroup:[4026531835]", os.Getpid(): "cgroup:[4026532241]"},
			"cannot join the host's: open "},
		{"no link readable, PID 1 outside", nil, "cannot open the host's"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Bounded: a run that does not refuse watches until ctx ends.
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			var logs bytes.Buffer
			f := runFlags{roots: rootFlags{cgroupRoot: fakeTree(t), procRoot: privateProcs(t, tc.links)}, configPath: "/nonexistent/oomwatch.yaml", Overrides: config.Overrides{Policy: policy.DefaultOptions(), Detector: watchdog.DefaultParams, Set: map[string]bool{"state-dir": true, "metrics-listen": true, "status-socket": true}}}
			err := run(ctx, zerolog.New(&logs), f)
			var ee *exitError
			if !errors.As(err, &ee) || ee.code != exitConfig {
				t.Fatalf("run: %v, want exit %d; logs:\n%s", err, exitConfig, logs.String())
			}
			for _, want := range []string{"oomwatch runs in a private cgroup namespace", tc.says, "--cgroupns=host", "hostPID: true"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("the error does not say %q: %v", want, err)
				}
			}
			if logs.Len() > 0 {
				t.Errorf("it logged before refusing:\n%s", logs.String())
			}
		})
	}
}

// After the re-exec the marker is consumed: gone from the environment (alert
// hooks never see it), reported once joined, and a namespace still private
// after the join is refused rather than joined again (no exec loop).
func TestHostCgroupNamespaceAfterReexec(t *testing.T) {
	noExec := func(string, []string, []string) error { t.Fatal("exec called"); return nil }
	t.Setenv(joinedEnv, "4026532241:4026531835")
	got, err := hostCgroupNamespace(procfs.New(fakeProcs(t)), noExec)
	if err != nil || got != "4026532241:4026531835" {
		t.Errorf("joined: %q, %v", got, err)
	}
	if v, ok := os.LookupEnv(joinedEnv); ok {
		t.Errorf("%s still set: %q", joinedEnv, v)
	}

	t.Setenv(joinedEnv, "4026532241:4026531835")
	links := map[int]string{1: "cgroup:[4026531835]", os.Getpid(): "cgroup:[4026532241]"}
	_, err = hostCgroupNamespace(procfs.New(privateProcs(t, links)), noExec)
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != exitConfig || !strings.Contains(err.Error(), "still there after joining") {
		t.Errorf("still private after the join: %v, want exit 78 saying so", err)
	}
}
