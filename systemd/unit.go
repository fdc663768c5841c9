package systemd

import _ "embed"

// UnitFile is systemd/oomwatch.service, the unit the Debian package installs
// as /lib/systemd/system/oomwatch.service.
//
//go:embed oomwatch.service
var UnitFile []byte

// MaxExposure is the highest `systemd-analyze security` exposure level the
// unit may have. systemd-oomd's unit rates 2.0; oomwatch's 0.3 more are root
// (changing units over D-Bus without polkit) and its alerting network.
const MaxExposure = 2.3
