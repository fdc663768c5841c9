package watchdog

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/oomwatch/oomwatch/eventfd"
	"github.com/oomwatch/oomwatch/internal/cgroupfs"
	"github.com/oomwatch/oomwatch/internal/procfs"
)

// writeV1Cgroup creates a fake v1 memory cgroup dir (parents included)
// with the files the watchdog reads, no tasks and oom_kill kills.
func writeV1Cgroup(t testing.TB, dir string, kills int) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]string{
		"memory.oom_control":    fmt.Sprintf("oom_kill_disable 0\nunder_oom 0\noom_kill %d\n", kills),
		"cgroup.procs":          "",
		"memory.limit_in_bytes": "9223372036854771712\n",
		"memory.usage_in_bytes": "1000\n",
		"cgroup.event_control":  "",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// armFake arms w on its hierarchy without running the loop, so a test can
// hand it events itself (a fake tree has no v1 eventfd: the kernel's
// notifications are the events the test passes to handle).
func armFake(t testing.TB, w *Watchdog) {
	t.Helper()
	p, err := eventfd.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	w.poller = p
	if err := w.add("/"); err != nil {
		t.Fatal(err)
	}
}

// TestV1NotificationVisitsItsSubtreeOnly: a v1 OOM at a parent notifies it
// and each descendant; handling those notifications (the first one of each
// cgroup builds its baseline) visits the cgroups of the notified subtree,
// never every watched cgroup. With 1,000 unrelated cgroups watched, the old
// baseline scanned all of them for each of the 4 notifications.
func TestV1NotificationVisitsItsSubtreeOnly(t *testing.T) {
	root := t.TempDir()
	writeV1Cgroup(t, root, 0)
	const others = 1000
	for i := 0; i < others; i++ {
		writeV1Cgroup(t, filepath.Join(root, fmt.Sprintf("other%d", i)), 0)
	}
	writeV1Cgroup(t, filepath.Join(root, "busy"), 0)
	for i, kills := range []int{2, 0, 0} { // a kill before oomwatch started
		writeV1Cgroup(t, filepath.Join(root, "busy", fmt.Sprintf("c%d", i)), kills)
	}
	w, err := New(Config{CG: cgroupfs.Hierarchy{Version: 1, Root: root}, Proc: procfs.New(t.TempDir()), Detector: DefaultParams},
		newRecorder(), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	armFake(t, w)
	if len(w.cgroups) != others+5 {
		t.Fatalf("watching %d cgroups, want %d", len(w.cgroups), others+5)
	}

	// The victim's memcg counts the kill: /busy/c1.
	writeV1Cgroup(t, filepath.Join(root, "busy", "c1"), 1)
	evs := []eventfd.Event{{Key: "/busy", Kind: eventfd.OOM, Count: 1}}
	for i := 0; i < 3; i++ {
		evs = append(evs, eventfd.Event{Key: fmt.Sprintf("/busy/c%d", i), Kind: eventfd.OOM, Count: 1})
	}
	w.visits = 0
	w.handle(time.Now(), evs)
	// /busy walks its 3 children twice (baseline, kills); each child has
	// none: 6 visits in all.
	if w.visits > 6 {
		t.Errorf("4 notifications in a 4-cgroup subtree visited %d cgroups (%d watched), want at most 6", w.visits, len(w.cgroups))
	}
	// The baseline is the subtree's kills when armed (c0's 2), so the new
	// kill is counted once, by /busy and by /busy/c1.
	if st := w.cgroups["/busy"]; st.last.Kills != 3 {
		t.Errorf("/busy counts %d kills, want 3 (2 before oomwatch, 1 now)", st.last.Kills)
	}
	if got := w.Stats().Kills; got != 2 {
		t.Errorf("kills counted %d, want 2 (/busy and /busy/c1 each see the one new kill)", got)
	}

	// Removing the subtree at once (its children's removals were missed)
	// visits the subtree too.
	w.visits = 0
	w.drop("/busy")
	if w.visits > 3 || len(w.cgroups) != others+1 {
		t.Errorf("dropping a 4-cgroup subtree visited %d cgroups and left %d watched, want at most 3 and %d", w.visits, len(w.cgroups), others+1)
	}
	for p, k := range w.kids {
		for i, c := range k {
			if st := w.cgroups[c]; st == nil || int(st.pos) != i {
				t.Fatalf("children index of %s: %s at %d is %+v", p, c, i, st)
			}
		}
	}
}

// TestInspectorMaxCgroups: the inspection reads the tasks of at most
// MaxCgroups cgroups, the inspected cgroup first, and returns those.
func TestInspectorMaxCgroups(t *testing.T) {
	cgRoot, procRoot := t.TempDir(), t.TempDir()
	writeV2Root(t, cgRoot)
	writeCgroup(t, cgRoot, "web", "max")
	for i := 0; i < 10; i++ {
		pid := 100 + i
		writeProc(t, procRoot, pid, 1, "app", 0, 1000)
		writeCgroup(t, cgRoot, fmt.Sprintf("web/c%d", i), "max", pid)
	}
	h, err := cgroupfs.Open(cgRoot, "")
	must(t, err)
	for _, tc := range []struct{ max, want int }{{5, 4}, {0, 10}, {11, 10}} {
		cands, err := Inspector{CG: h, Proc: procfs.New(procRoot), MaxCgroups: tc.max}.Candidates("/web")
		if err != nil || len(cands) != tc.want {
			t.Errorf("MaxCgroups %d: %d candidates, %v; want %d (/web and its first %d children)", tc.max, len(cands), err, tc.want, tc.want)
		}
	}
}

// TestEnableMemoryVisitsChildrenOnly: a write to one cgroup's
// subtree_control re-checks its children, not every watched cgroup.
func TestEnableMemoryVisitsChildrenOnly(t *testing.T) {
	cgRoot := t.TempDir()
	writeV2Root(t, cgRoot)
	for i := 0; i < 200; i++ {
		writeCgroup(t, cgRoot, fmt.Sprintf("other%d", i), "max")
	}
	// No memory files in /web's children: it has not enabled memory.
	for _, d := range []string{"web", "web/c0", "web/c1"} {
		must(t, os.Mkdir(filepath.Join(cgRoot, d), 0o755))
		must(t, os.WriteFile(filepath.Join(cgRoot, d, "cgroup.procs"), nil, 0o644))
	}
	h, err := cgroupfs.Open(cgRoot, "")
	must(t, err)
	w, err := New(Config{CG: h, Proc: procfs.New(t.TempDir()), Detector: DefaultParams}, newRecorder(), zerolog.Nop())
	must(t, err)
	armFake(t, w)
	writeEvents(t, filepath.Join(cgRoot, "web", "c1"), 0, 0, 0) // the kernel added c1's files
	w.visits = 0
	w.enableMemory("/web")
	if w.visits != 2 || w.cgroups["/web/c1"].noMemory || !w.cgroups["/web/c0"].noMemory {
		t.Errorf("visited %d cgroups (want 2); noMemory c0 %v c1 %v, want true false", w.visits, w.cgroups["/web/c0"].noMemory, w.cgroups["/web/c1"].noMemory)
	}
}
