package watchdog

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/oomwatch/oomwatch/internal/cgnames"
	"github.com/oomwatch/oomwatch/internal/cgroupfs"
	"github.com/oomwatch/oomwatch/internal/procfs"
)

// countingNamer names every container "web" and counts what it is asked.
type countingNamer struct {
	mu    sync.Mutex
	asked []cgnames.Names
}

func (n *countingNamer) Name(names cgnames.Names) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.asked = append(n.asked, names)
	return "web"
}

func (n *countingNamer) calls() []cgnames.Names {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]cgnames.Names(nil), n.asked...)
}

// The Namer is asked once, when the incident of a container known by its
// id opens, with the whole id; never for the idle cgroups around it nor for
// a container named by its path. The name reaches the incident and the
// watched list while the incident is open.
func TestWatchdogNamesContainerWhenIncidentOpens(t *testing.T) {
	const id = "3f2a1b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f80912cf3d9ec39b91e"
	cgRoot, procRoot := t.TempDir(), t.TempDir()
	writeV2Root(t, cgRoot)
	writeProc(t, procRoot, 100, 1, "hog", -1000, 9000)
	writeProc(t, procRoot, 101, 1, "java", -1000, 9000)
	writeCgroup(t, cgRoot, "system.slice", "max")
	writeCgroup(t, cgRoot, "system.slice/docker-"+id+".scope", "50331648", 100)
	writeCgroup(t, cgRoot, "system.slice/docker-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.scope", "50331648")
	writeCgroup(t, cgRoot, "lxc.payload.web1", "50331648", 101)
	h, err := cgroupfs.Open(cgRoot, "")
	must(t, err)
	rec := newRecorder()
	namer := &countingNamer{}
	ready := make(chan int, 1)
	w, err := New(Config{CG: h, Proc: procfs.New(procRoot), Detector: DefaultParams, ResolveAfter: time.Hour, Namer: namer,
		Ready: func(n int) { ready <- n }}, rec, zerolog.Nop())
	must(t, err)
	startRun(t, w)
	<-ready
	waitBaselines(t, w)
	if c := namer.calls(); len(c) != 0 {
		t.Fatalf("Namer asked before any incident: %+v", c)
	}
	cg := "/system.slice/docker-" + id + ".scope"
	setEvents(t, cgRoot, cg[1:], 2, 0, 2)
	setEvents(t, cgRoot, cg[1:], 9, 0, 9)
	rec.waitFor(t, "docker incident", func() bool { return len(rec.opened) == 1 })
	setEvents(t, cgRoot, "lxc.payload.web1", 2, 0, 2)
	setEvents(t, cgRoot, "lxc.payload.web1", 9, 0, 9)
	rec.waitFor(t, "lxc incident", func() bool { return len(rec.opened) == 2 })

	rec.mu.Lock()
	dock, lxc := rec.opened[0], rec.opened[1]
	rec.mu.Unlock()
	if dock.Cgroup != cg || dock.Container != id[:12] || dock.ContainerName != "web" {
		t.Errorf("docker incident: cgroup %s container %q name %q", dock.Cgroup, dock.Container, dock.ContainerName)
	}
	if lxc.Container != "web1" || lxc.ContainerName != "" {
		t.Errorf("lxc incident: container %q name %q, want web1 and no runtime name", lxc.Container, lxc.ContainerName)
	}
	if c := namer.calls(); len(c) != 1 || c[0].ID != id || c[0].Runtime != cgnames.Docker {
		t.Errorf("Namer asked %+v, want once for the docker id", c)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	l, err := w.Watched(ctx)
	must(t, err)
	for _, e := range l {
		if want := map[string]string{cg: "web"}[e.Cgroup]; e.ContainerName != want {
			t.Errorf("Watched %s: container name %q, want %q", e.Cgroup, e.ContainerName, want)
		}
	}
}
