package systemd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	godbus "github.com/godbus/dbus/v5"
)

// Units changes systemd units through the service manager's D-Bus API, so
// that systemd's own view of a unit stays the truth: a raw write to
// memory.max of a cgroup systemd owns is put back on the next daemon-reload
// (CGROUP_DELEGATION.md; moby/moby#41233).
//
// The connection is opened on first use, re-opened after it breaks, and
// closed by Close. It goes to the system bus, or, when that is missing (no
// dbus-daemon) and we are root, straight to PID 1 on /run/systemd/private.
// Units is safe for concurrent use; the zero value is ready to use.
// It implements policy.UnitLimiter.
type Units struct {
	mu   sync.Mutex
	conn *sddbus.Conn
	raw  *godbus.Conn // conn's method-call connection, for calls go-systemd does not wrap
	// dial opens a connection; nil means the system bus, then the private socket.
	dial func(ctx context.Context) (*sddbus.Conn, *godbus.Conn, error)
}

// SetMemoryMax sets MemoryMax= of unit ("foo.service", "bar.scope") to bytes
// at runtime (like `systemctl set-property --runtime`: until reboot, kept
// across daemon-reload). bytes = math.MaxUint64 means infinity.
func (u *Units) SetMemoryMax(ctx context.Context, unit string, bytes uint64) error {
	return u.do(ctx, func(c *sddbus.Conn, _ *godbus.Conn) error {
		return c.SetUnitPropertiesContext(ctx, unit, true,
			sddbus.Property{Name: "MemoryMax", Value: godbus.MakeVariant(bytes)})
	})
}

// UnitForCgroup returns the unit owning a cgroup v2 path ("/system.slice/
// foo.service/sub" → "foo.service"): systemd's own answer (the unit of that
// cgroup, else of its nearest ancestor), so callers never parse cgroup
// names. It returns "" and no error when no unit manages the path (systemd
// 252 answers NoSuchUnit for cgroups outside its units, e.g. LXC's
// /lxc.payload.web1, even though "/" is -.slice's): such a cgroup is not
// systemd's, and writing its files directly is right.
func (u *Units) UnitForCgroup(ctx context.Context, cgroup string) (string, error) {
	var id string
	err := u.do(ctx, func(_ *sddbus.Conn, raw *godbus.Conn) error {
		var p godbus.ObjectPath
		if err := raw.Object("org.freedesktop.systemd1", "/org/freedesktop/systemd1").CallWithContext(ctx,
			"org.freedesktop.systemd1.Manager.GetUnitByControlGroup", 0, cgroup).Store(&p); err != nil {
			if isNoSuchUnit(err) {
				id = ""
				return nil
			}
			return err
		}
		// GetProperty has no context: Properties.Get with ctx, so that a
		// service manager that stops answering cannot hold the caller.
		var v godbus.Variant
		if err := raw.Object("org.freedesktop.systemd1", p).CallWithContext(ctx,
			"org.freedesktop.DBus.Properties.Get", 0, "org.freedesktop.systemd1.Unit", "Id").Store(&v); err != nil {
			return err
		}
		s, ok := v.Value().(string)
		if !ok {
			return fmt.Errorf("unit %s: Id is %s, not a string", p, v.Signature())
		}
		id = s
		return nil
	})
	return id, err
}

// OOMPolicy returns unit's OOMPolicy= ("continue", "stop", "kill"): what
// systemd does to the whole unit when the kernel OOM-kills one of its
// tasks. "" when the unit type has none (a scope before systemd 253).
func (u *Units) OOMPolicy(ctx context.Context, unit string) (string, error) {
	iface := "org.freedesktop.systemd1.Service"
	if strings.HasSuffix(unit, ".scope") {
		iface = "org.freedesktop.systemd1.Scope"
	}
	var policy string
	err := u.do(ctx, func(_ *sddbus.Conn, raw *godbus.Conn) error {
		var v godbus.Variant
		err := raw.Object("org.freedesktop.systemd1", godbus.ObjectPath("/org/freedesktop/systemd1/unit/"+sddbus.PathBusEscape(unit))).CallWithContext(ctx,
			"org.freedesktop.DBus.Properties.Get", 0, iface, "OOMPolicy").Store(&v)
		if isUnknownProperty(err) {
			return nil
		}
		if err != nil {
			return err
		}
		s, ok := v.Value().(string)
		if !ok {
			return fmt.Errorf("unit %s: OOMPolicy is %s, not a string", unit, v.Signature())
		}
		policy = s
		return nil
	})
	return policy, err
}

// isUnknownProperty: the unit's interface has no such property.
func isUnknownProperty(err error) bool {
	var v godbus.Error
	if errors.As(err, &v) {
		return v.Name == "org.freedesktop.DBus.Error.UnknownProperty" || v.Name == "org.freedesktop.DBus.Error.InvalidArgs"
	}
	return false
}

func isNoSuchUnit(err error) bool {
	const name = "org.freedesktop.systemd1.NoSuchUnit"
	var v godbus.Error // what godbus returns for error replies
	if errors.As(err, &v) {
		return v.Name == name
	}
	var p *godbus.Error
	return errors.As(err, &p) && p.Name == name
}

// Close closes the connection, if any. Units can be used again afterwards.
func (u *Units) Close() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.closeLocked()
	return nil
}

func (u *Units) closeLocked() {
	if u.conn != nil {
		u.conn.Close()
	}
	u.conn, u.raw = nil, nil
}

// do runs f on a connected bus. When f fails and the connection turns out
// to be broken (systemd or dbus-daemon restarted), it reconnects and tries
// once more; errors from systemd itself are returned as they are.
func (u *Units) do(ctx context.Context, f func(*sddbus.Conn, *godbus.Conn) error) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	for attempt := 0; ; attempt++ {
		if u.conn == nil {
			dial := u.dial
			if dial == nil {
				dial = dialSystemd
			}
			// The connection outlives this call: a cancelled ctx must not
			// close it (godbus closes a connection when its context ends).
			c, raw, err := dial(context.WithoutCancel(ctx))
			if err != nil {
				return fmt.Errorf("connect to systemd: %w", err)
			}
			u.conn, u.raw = c, raw
		}
		err := f(u.conn, u.raw)
		if err == nil || u.conn.Connected() {
			return err
		}
		u.closeLocked()
		if attempt > 0 || ctx.Err() != nil {
			return err
		}
	}
}

// dialSystemd connects to the system bus, or to PID 1's private socket when
// there is no bus and we are root (what go-systemd's NewWithContext does),
// keeping the method-call connection for GetUnitByControlGroup.
func dialSystemd(ctx context.Context) (*sddbus.Conn, *godbus.Conn, error) {
	c, raw, err := dialWith(func() (*godbus.Conn, error) { return systemBus(ctx) })
	if err == nil || os.Geteuid() != 0 {
		return c, raw, err
	}
	c, raw, err2 := dialWith(func() (*godbus.Conn, error) { return privateSocket(ctx) })
	if err2 != nil {
		return nil, nil, errors.Join(err, err2)
	}
	return c, raw, nil
}

// dialWith builds a go-systemd connection from dial, which go-systemd calls
// twice (method calls, then signals); the first connection is the one that
// carries method calls.
func dialWith(dial func() (*godbus.Conn, error)) (*sddbus.Conn, *godbus.Conn, error) {
	var first *godbus.Conn
	c, err := sddbus.NewConnection(func() (*godbus.Conn, error) {
		bc, err := dial()
		if err == nil && first == nil {
			first = bc
		}
		return bc, err
	})
	if err != nil {
		return nil, nil, err
	}
	return c, first, nil
}

// auth authenticates with EXTERNAL and the numeric uid, like go-systemd (no
// user name lookup, which a static binary cannot do).
func auth(bc *godbus.Conn) error {
	if err := bc.Auth([]godbus.Auth{godbus.AuthExternal(strconv.Itoa(os.Getuid()))}); err != nil {
		bc.Close()
		return err
	}
	return nil
}

func systemBus(ctx context.Context) (*godbus.Conn, error) {
	bc, err := godbus.SystemBusPrivate(godbus.WithContext(ctx))
	if err != nil {
		return nil, err
	}
	if err := auth(bc); err != nil {
		return nil, err
	}
	if err := bc.Hello(); err != nil {
		bc.Close()
		return nil, err
	}
	return bc, nil
}

func privateSocket(ctx context.Context) (*godbus.Conn, error) {
	bc, err := godbus.Dial("unix:path=/run/systemd/private", godbus.WithContext(ctx))
	if err != nil {
		return nil, err
	}
	if err := auth(bc); err != nil {
		return nil, err
	}
	return bc, nil // PID 1 is the peer: no bus, no Hello
}
