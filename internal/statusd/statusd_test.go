package statusd

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/oomwatch/oomwatch/policy"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func sockPath(t *testing.T) string {
	// sun_path is 108 bytes: t.TempDir() under a long TMPDIR can exceed it.
	d, err := os.MkdirTemp("", "sd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return filepath.Join(d, "run", "oomwatch.sock")
}

func serve(t *testing.T, path string, p func(Request) Status) (cancel func()) {
	t.Helper()
	s, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, c := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, p) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			c()
			if err := <-done; err != nil {
				t.Error(err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func TestRoundTrip(t *testing.T) {
	path := sockPath(t)
	tr := NewTracker()
	t0 := time.Date(2026, 11, 27, 11, 0, 0, 0, time.UTC)
	tr.Opened(OpenIncident{ID: "b", Cgroup: "/b", Verdict: "loop", Since: t0.Add(time.Second)})
	tr.Opened(OpenIncident{ID: "a", Cgroup: "/a", Verdict: "stalled", Since: t0})
	tr.Opened(OpenIncident{ID: "c", Cgroup: "/c", Verdict: "loop", Since: t0})
	tr.Resolved("c")
	for i := range 25 {
		tr.Acted(Action{Incident: "a", Action: policy.Action{Name: "reset-adj", PID: i}})
	}
	stop := serve(t, path, func(Request) Status {
		s := Status{Version: "test", PID: os.Getpid(), Watched: 7, Layout: "unified", Alerts: []SinkQueue{{Name: "pd", Kind: "pagerduty", Queued: 2}}}
		tr.Fill(&s)
		return s
	})
	for _, p := range []string{path, filepath.Dir(path)} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		want := os.FileMode(0o600)
		if p != path {
			want = 0o700
		}
		if st.Mode().Perm() != want {
			t.Errorf("%s mode %v, want %v", p, st.Mode().Perm(), want)
		}
	}
	s, err := Query(path)
	if err != nil {
		t.Fatal(err)
	}
	if s.Version != "test" || s.Watched != 7 || len(s.Alerts) != 1 || s.Alerts[0].Queued != 2 {
		t.Errorf("status: %+v", s)
	}
	if len(s.OpenIncidents) != 2 || s.OpenIncidents[0].ID != "a" || s.OpenIncidents[1].ID != "b" {
		t.Errorf("open: %+v", s.OpenIncidents)
	}
	if len(s.RecentActions) != MaxRecentActions || s.RecentActions[0].PID != 24 || s.RecentActions[19].PID != 5 {
		t.Errorf("actions: %+v", s.RecentActions)
	}
	// A raw client: any tool that can write a line gets JSON back.
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte(`{"cmd":"nope"}` + "\n"))
	var r response
	if err := json.NewDecoder(c).Decode(&r); err != nil || !strings.Contains(r.Error, "unknown command") {
		t.Errorf("bad cmd: %+v %v", r, err)
	}
	c.Close()
	stop()
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left after shutdown: %v", err)
	}
	if _, err := Query(path); !errors.Is(err, ErrNotRunning) {
		t.Errorf("query after shutdown: %v", err)
	}
}

func TestSecondDaemonRefused(t *testing.T) {
	path := sockPath(t)
	serve(t, path, func(Request) Status { return Status{} })
	_, err := Listen(path)
	if !errors.Is(err, ErrRunning) {
		t.Fatalf("second Listen: %v, want ErrRunning", err)
	}
	if _, err := Query(path); err != nil {
		t.Fatalf("first daemon broken by the attempt: %v", err)
	}
}

func TestStaleSocketRemoved(t *testing.T) {
	path := sockPath(t)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	// A socket file nobody listens on, as a killed daemon leaves it.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Fatal(err)
	}
	serve(t, path, func(Request) Status { return Status{Version: "new"} })
	if s, err := Query(path); err != nil || s.Version != "new" {
		t.Fatalf("%+v %v", s, err)
	}
}

func TestNotASocketRefused(t *testing.T) {
	path := sockPath(t)
	os.MkdirAll(filepath.Dir(path), 0o700)
	if err := os.WriteFile(path, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(path); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("Listen over a regular file: %v", err)
	}
}

func TestQueryTimeout(t *testing.T) {
	path := sockPath(t)
	os.MkdirAll(filepath.Dir(path), 0o700)
	// A listener that never answers.
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var conns []net.Conn
	var mu sync.Mutex
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	start := time.Now()
	_, err = QueryTimeout(path, 200*time.Millisecond)
	if err == nil || time.Since(start) > 2*time.Second {
		t.Fatalf("err %v after %v", err, time.Since(start))
	}
	ln.Close()
	<-done
	mu.Lock()
	for _, c := range conns {
		c.Close()
	}
	mu.Unlock()
}
