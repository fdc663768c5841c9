package systemd

import (
	"fmt"
	"os"
	"testing"

	godbus "github.com/godbus/dbus/v5"
)

func TestNoSuchUnit(t *testing.T) {
	e := godbus.Error{Name: "org.freedesktop.systemd1.NoSuchUnit", Body: []any{"Control group '/x' is not valid or not managed by this instance"}}
	if !isNoSuchUnit(e) || !isNoSuchUnit(&e) || !isNoSuchUnit(fmt.Errorf("call: %w", e)) {
		t.Fatal("NoSuchUnit reply not recognised")
	}
	if isNoSuchUnit(godbus.Error{Name: "org.freedesktop.DBus.Error.AccessDenied"}) || isNoSuchUnit(os.ErrNotExist) {
		t.Fatal("other errors taken for NoSuchUnit")
	}
}
