package systemd_test

import (
	"context"
	"strings"
	"testing"

	"github.com/oomwatch/oomwatch/policy"
	"github.com/oomwatch/oomwatch/systemd"
)

var _ policy.UnitLimiter = (*systemd.Units)(nil)

// Without a bus (this host, or a container without systemd) every call
// fails with an error naming the connection, never hangs, and Close works
// whether or not anything was opened. The real calls run in the systemd VM
// (test/sdvm).
func TestUnitsWithoutSystemd(t *testing.T) {
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/oomwatch-test-bus")
	var u systemd.Units
	defer u.Close()
	if err := u.SetMemoryMax(context.Background(), "x.service", 1<<20); err == nil {
		t.Skip("connected to systemd: this host has a service manager; the VM test covers the calls")
	} else if !strings.Contains(err.Error(), "connect to systemd") {
		t.Fatalf("error %q does not say the connection failed", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := u.UnitForCgroup(ctx, "/system.slice"); err == nil {
		t.Fatalf("UnitForCgroup without a bus: %v", err)
	}
	if err := u.Close(); err != nil {
		t.Fatal(err)
	}
}
