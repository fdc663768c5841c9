package systemd

import _ "embed"

// UnitFile is systemd/oomwatch.service, the unit the Debian package installs
// as /lib/systemd/system/oomwatch.service.
//
//go:embed oomwatch.service
var UnitFile []byte

// MaxExposure is the highest `systemd-analyze security` exposure level the
// unit may have: that of systemd-oomd's own unit.
const MaxExposure = 2.6
