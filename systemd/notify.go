// Package systemd talks to the service manager: sd_notify readiness,
// status and watchdog pings.
package systemd

import (
	"fmt"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// Notifier sends sd_notify messages when NOTIFY_SOCKET is set and does
// nothing otherwise, so the daemon runs the same under systemd and without.
type Notifier struct {
	watchdog time.Duration // WatchdogSec from the unit; 0 when off
}

// NewNotifier reads WATCHDOG_USEC/WATCHDOG_PID from the environment.
func NewNotifier() (*Notifier, error) {
	wd, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		return nil, fmt.Errorf("read systemd watchdog settings: %w", err)
	}
	return &Notifier{watchdog: wd}, nil
}

// PingEvery is how often the main loop must ping: half the unit's
// WatchdogSec, as sd_watchdog_enabled(3) advises; 0 when the watchdog is off.
func (n *Notifier) PingEvery() time.Duration { return n.watchdog / 2 }

func (n *Notifier) send(state string) error {
	_, err := daemon.SdNotify(false, state)
	return err
}

// Ready says every source is armed.
func (n *Notifier) Ready(status string) error {
	return n.send(daemon.SdNotifyReady + "\nSTATUS=" + status)
}

// Ping tells systemd's watchdog the main loop is alive, with a fresh status.
func (n *Notifier) Ping(status string) error {
	msg := "STATUS=" + status
	if n.watchdog > 0 {
		msg = daemon.SdNotifyWatchdog + "\n" + msg
	}
	return n.send(msg)
}

// Stopping says shutdown has begun.
func (n *Notifier) Stopping() error { return n.send(daemon.SdNotifyStopping) }
