package systemd

import "github.com/coreos/go-systemd/v22/daemon"

// Reloading says a configuration reload has begun; Ready ends it.
func (n *Notifier) Reloading() error { return n.send(daemon.SdNotifyReloading) }
