package systemd

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
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
