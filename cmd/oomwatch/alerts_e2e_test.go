package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/oomwatch/oomwatch/internal/config"
	"github.com/oomwatch/oomwatch/policy"
	"github.com/oomwatch/oomwatch/watchdog"
)

// TestDaemonSendsAlerts runs the daemon (run) on a fake v2 tree with a
// webhook sink from the config file: a loop in /lxc/web1 sends "detected",
// then the ladder's outcome, then "resolved" once the OOMs stop, each a
// valid oomwatch.alert/v1 document naming the container and the origin.
func TestDaemonSendsAlerts(t *testing.T) {
	var mu sync.Mutex
	var docs []map[string]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var d map[string]any
		if err := json.Unmarshal(b, &d); err != nil {
			t.Errorf("webhook body is not JSON: %v: %s", err, b)
		}
		mu.Lock()
		docs = append(docs, d)
		mu.Unlock()
	}))
	defer srv.Close()

	cg, proc := fakeTree(t), fakeProcs(t)
	web1 := filepath.Join(cg, "lxc/web1")
	events := func(oom int) {
		for _, f := range []string{"memory.events", "memory.events.local"} {
			if err := os.WriteFile(filepath.Join(web1, f), fmt.Appendf(nil, "low 0\nhigh 0\nmax 0\noom %d\noom_kill 0\noom_group_kill 0\n", oom), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	events(0)
	conf := filepath.Join(t.TempDir(), "oomwatch.yaml")
	if err := os.WriteFile(conf, fmt.Appendf(nil, "alerts:\n  webhook:\n    - name: hook\n      url: %s\n", srv.URL), 0o600); err != nil {
		t.Fatal(err)
	}
	f := runFlags{roots: rootFlags{cgroupRoot: cg, procRoot: proc}, configPath: conf, statusSocket: filepath.Join(t.TempDir(), "s.sock"), Overrides: config.Overrides{StateDir: t.TempDir(), Policy: policy.DefaultOptions(), Detector: watchdog.DefaultParams, Set: map[string]bool{"config": true, "state-dir": true, "metrics-listen": true}}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, zerolog.Nop(), f) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	time.Sleep(300 * time.Millisecond) // armed
	events(2)
	events(9)
	want := []string{"detected", "remediation-failed", "resolved"} // a fake /proc has no pidfds, tmpfs no freezer
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		var got []string
		for _, d := range docs {
			got = append(got, fmt.Sprint(d["type"]))
		}
		n := len(docs)
		mu.Unlock()
		if n >= len(want) {
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("alert types %v, want %v", got, want)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("alerts so far %v, want %v", got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	d := docs[0]
	origin, _ := d["origin"].(map[string]any)
	if d["schema"] != "oomwatch.alert/v1" || d["cgroup"] != "/lxc/web1" || d["container"] != "web1" || d["verdict"] != "loop" ||
		d["status"] != "firing" || origin["comm"] != "sshd" {
		t.Errorf("detected document %v", d)
	}
	if r := docs[2]; r["status"] != "resolved" || r["incident_id"] != d["incident_id"] {
		t.Errorf("resolved document %v", r)
	}
}
