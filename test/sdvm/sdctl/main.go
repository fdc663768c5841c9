// Command sdctl drives package systemd from inside the systemd VM test
// (test/sdvm): it is built static and run by the guest's run.sh.
//
//	sdctl set-memory-max UNIT BYTES   systemd.Units.SetMemoryMax
//	sdctl unit-for-cgroup PATH        systemd.Units.UnitForCgroup
//	sdctl journal-probe ID            log one structured event through systemd.JournalWriter
//	                                  (exit 3 when stderr is not the journal)
package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/rs/zerolog"

	"github.com/oomwatch/oomwatch/systemd"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "sdctl:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) < 1 {
		return fmt.Errorf("usage: sdctl set-memory-max UNIT BYTES | unit-for-cgroup PATH | journal-probe ID")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var u systemd.Units
	defer u.Close()
	switch {
	case args[0] == "set-memory-max" && len(args) == 3:
		n, err := strconv.ParseUint(args[2], 10, 64)
		if err != nil {
			return err
		}
		if err := u.SetMemoryMax(ctx, args[1], n); err != nil {
			return err
		}
		// a second call on the same Units reuses the connection
		return u.SetMemoryMax(ctx, args[1], n)
	case args[0] == "unit-for-cgroup" && len(args) == 2:
		unit, err := u.UnitForCgroup(ctx, args[1])
		if err != nil {
			return err
		}
		fmt.Println(unit)
		return nil
	case args[0] == "journal-probe" && len(args) == 2:
		w, ok := systemd.JournalWriter()
		if !ok {
			os.Exit(3)
		}
		log := zerolog.New(w)
		log.Warn().Str("event", "probe").Str("probe_id", args[1]).Str("cgroup", "/lxc.payload.web1").
			Int("oom-kill", 0).Msg("journal probe")
		return nil
	}
	return fmt.Errorf("bad arguments %q", args)
}
