package systemd

import (
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// listen makes a notify socket and points NOTIFY_SOCKET at it.
func listen(t *testing.T) *net.UnixConn {
	t.Helper()
	p := filepath.Join(t.TempDir(), "notify.sock")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: p, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	t.Setenv("NOTIFY_SOCKET", p)
	return c
}

func recv(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	buf := make([]byte, 4096)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n])
}

func TestNotifyProtocol(t *testing.T) {
	c := listen(t)
	t.Setenv("WATCHDOG_USEC", "30000000")
	t.Setenv("WATCHDOG_PID", itoa(os.Getpid()))
	n, err := NewNotifier()
	if err != nil {
		t.Fatal(err)
	}
	if n.PingEvery() != 15*time.Second {
		t.Fatalf("ping every %v, want half of WatchdogSec=30s", n.PingEvery())
	}
	if err := n.Ready("watching 12 cgroups"); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, c); got != "READY=1\nSTATUS=watching 12 cgroups" {
		t.Fatalf("ready message %q", got)
	}
	if err := n.Ping("watching 12 cgroups, 1 open incident"); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, c); !strings.HasPrefix(got, "WATCHDOG=1\n") {
		t.Fatalf("ping message %q", got)
	}
	if err := n.Stopping(); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, c); got != "STOPPING=1" {
		t.Fatalf("stopping message %q", got)
	}
}

func TestWatchdogForAnotherPID(t *testing.T) {
	c := listen(t)
	t.Setenv("WATCHDOG_USEC", "30000000")
	t.Setenv("WATCHDOG_PID", "1")
	n, err := NewNotifier()
	if err != nil {
		t.Fatal(err)
	}
	if n.PingEvery() != 0 {
		t.Fatal("watchdog meant for another pid must be off")
	}
	_ = n.Ping("x")
	if got := recv(t, c); strings.Contains(got, "WATCHDOG=1") {
		t.Fatalf("pinged a watchdog that is not ours: %q", got)
	}
}

func TestNoSocketIsSilent(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	n, err := NewNotifier()
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Ready("x"); err != nil {
		t.Fatal(err)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

// TestWatchdogPingsFollowTheDaemon runs the real daemon on a fake cgroup tree
// with a test notify socket and WATCHDOG_USEC=400ms (WATCHDOG_PID unset
// means "for us"): READY=1 once armed, WATCHDOG=1 about every 200 ms, none
// while the process is stopped (SIGSTOP: what systemd sees when the loop is
// stuck), pings again after SIGCONT, STOPPING=1 on SIGTERM. Windows are
// generous: only "some" versus "none" is asserted.
func TestWatchdogPingsFollowTheDaemon(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the daemon")
	}
	bin := buildDaemon(t)
	cg := t.TempDir()
	for p, c := range map[string]string{
		"cgroup.controllers":    "memory\n",
		"cgroup.procs":          "",
		"a/cgroup.procs":        "",
		"a/memory.max":          "max\n",
		"a/memory.events":       "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n",
		"a/memory.events.local": "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n",
		"memory.events":         "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n",
	} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(cg, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(cg, p), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sock := filepath.Join(t.TempDir(), "notify.sock")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	type msg struct {
		at   time.Time
		text string
	}
	msgs := make(chan msg, 1000)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- msg{time.Now(), string(buf[:n])}
		}
	}()

	var logs strings.Builder
	cmd := exec.Command(bin, "run", "--cgroup-root", cg, "--proc-root", "/proc", "--state-dir", t.TempDir(), "--log-level", "debug")
	cmd.Env = append(filterEnv(os.Environ(), "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM"),
		"NOTIFY_SOCKET="+sock, "WATCHDOG_USEC=400000")
	cmd.Stderr = &syncWriter{w: &logs}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGCONT)
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("daemon log:\n%s", logs.String())
		}
	}()

	// count collects messages for d; it returns the WATCHDOG=1 pings and
	// whether one of the messages contained want.
	count := func(d time.Duration, want string) (pings int, saw bool) {
		deadline := time.After(d)
		for {
			select {
			case m, ok := <-msgs:
				if !ok {
					return
				}
				for _, line := range strings.Split(m.text, "\n") {
					if line == "WATCHDOG=1" {
						pings++
					}
					if want != "" && line == want {
						saw = true
					}
				}
			case <-deadline:
				return
			}
		}
	}
	waitFor := func(want string, d time.Duration) {
		t.Helper()
		deadline := time.After(d)
		for {
			select {
			case m, ok := <-msgs:
				if !ok {
					t.Fatalf("notify socket closed waiting for %q", want)
				}
				if slices.Contains(strings.Split(m.text, "\n"), want) {
					return
				}
			case err := <-done:
				t.Fatalf("daemon exited (%v) before sending %q", err, want)
			case <-deadline:
				t.Fatalf("no %q within %v", want, d)
			}
		}
	}

	waitFor("READY=1", 20*time.Second)
	before, _ := count(2*time.Second, "")
	if before < 3 {
		t.Fatalf("%d WATCHDOG=1 pings in 2 s with WATCHDOG_USEC=400ms, want about 10", before)
	}

	if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	count(300*time.Millisecond, "") // a ping may be in flight
	stopped, _ := count(1500*time.Millisecond, "")
	if stopped != 0 {
		t.Fatalf("%d pings while the daemon was stopped", stopped)
	}

	if err := cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	after, _ := count(2*time.Second, "")
	if after < 3 {
		t.Fatalf("%d pings in 2 s after SIGCONT, want about 10", after)
	}
	t.Logf("WATCHDOG=1 pings: %d in 2 s running, %d in 1.5 s stopped, %d in 2 s after SIGCONT", before, stopped, after)

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor("STOPPING=1", 10*time.Second)
	select {
	case err := <-done:
		done <- err // for the deferred cleanup
		if err != nil {
			t.Fatalf("daemon exit after SIGTERM: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("daemon still running 10 s after SIGTERM")
	}
}

func filterEnv(env []string, drop ...string) []string {
	var out []string
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if !slices.Contains(drop, k) {
			out = append(out, kv)
		}
	}
	return out
}

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
