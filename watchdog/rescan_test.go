package watchdog

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/oomwatch/oomwatch/eventfd"
	"github.com/oomwatch/oomwatch/internal/cgroupfs"
	"github.com/oomwatch/oomwatch/internal/procfs"
)

// An inotify overflow (which a tenant can cause with mkdir and rmdir)
// makes the watchdog rescan the hierarchy for the cgroups whose creation
// it missed. The rescan is done a slice per loop turn, the loop not
// sleeping in between, so one overflow at thousands of cgroups does not
// stall the loop; in the end every missed cgroup is watched.
func TestOverflowRescanIsSpreadOverLoopTurns(t *testing.T) {
	root := t.TempDir()
	writeV1Cgroup(t, root, 0)
	const before, missed = 3000, 500
	for i := 0; i < before; i++ {
		writeV1Cgroup(t, filepath.Join(root, fmt.Sprintf("d%d", i%30), fmt.Sprintf("c%d", i)), 0)
	}
	w, err := New(Config{CG: cgroupfs.Hierarchy{Version: 1, Root: root}, Proc: procfs.New(t.TempDir()), Detector: DefaultParams},
		newRecorder(), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	armFake(t, w)
	armed := len(w.cgroups)
	for i := 0; i < missed; i++ { // created while the queue overflowed: no event
		writeV1Cgroup(t, filepath.Join(root, fmt.Sprintf("d%d", i%30), fmt.Sprintf("new%d", i)), 0)
	}

	now := time.Now()
	w.turn(now, []eventfd.Event{{Kind: eventfd.Overflow}}, now)
	if len(w.rescan) == 0 {
		t.Fatalf("the whole rescan of %d cgroups ran in the overflow's loop turn", armed+missed)
	}
	if d := w.nextTimeout(now); d != 0 {
		t.Errorf("next timeout %v with the rescan under way, want 0 (no sleep)", d)
	}
	turns := 1
	for len(w.rescan) > 0 && turns < 100000 {
		w.turn(now, nil, now)
		turns++
	}
	if got, want := len(w.cgroups), armed+missed; got != want {
		t.Errorf("after the rescan (%d turns) %d cgroups watched, want %d", turns, got, want)
	}
	t.Logf("%d cgroups rescanned in %d loop turns", armed+missed, turns)
}
