package watchdog

import (
	"context"
	"errors"
	"sort"
	"time"
)

// Watched is one watched cgroup as the event loop knows it.
type Watched struct {
	Cgroup string
	// The open incident, if any, and the container name it found
	// (Incident.ContainerName).
	Incident      string
	Verdict       Verdict
	Since         time.Time
	ContainerName string
	// OOM counters as last read (v2 memory.events, hierarchical; v1 the
	// eventfd count since oomwatch armed it and the subtree's oom_kill).
	OOMs, Kills uint64
	Paused      bool // v1: an open paused incident (oom_kill_disable, under_oom)
	NoMemory    bool // v2: the memory controller is not enabled for it
}

// ErrNotRunning: the event loop is not running (before Run, or after it
// returned).
var ErrNotRunning = errors.New("watchdog: event loop not running")

// Watched lists the watched cgroups, sorted by path. The event loop makes
// the list between two turns (it owns the watch state); the call wakes it
// and waits for the list or ctx. Safe from any goroutine.
func (w *Watchdog) Watched(ctx context.Context) ([]Watched, error) {
	p := w.running.Load()
	if p == nil {
		return nil, ErrNotRunning
	}
	reply := make(chan []Watched, 1)
	select {
	case w.listReqs <- reply:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if err := p.Poke(); err != nil {
		return nil, ErrNotRunning
	}
	select {
	case l := <-reply:
		sort.Slice(l, func(i, j int) bool { return l[i].Cgroup < l[j].Cgroup })
		return l, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// answerLists answers the pending Watched calls: one copy of the watch
// state per turn, however many callers wait.
func (w *Watchdog) answerLists() {
	var l []Watched
	for {
		select {
		case reply := <-w.listReqs:
			if l == nil {
				t0 := time.Now()
				l = w.watchedList()
				w.listTook.Store(int64(time.Since(t0)))
			}
			reply <- append([]Watched(nil), l...)
		default:
			return
		}
	}
}

func (w *Watchdog) watchedList() []Watched {
	l := make([]Watched, 0, len(w.cgroups))
	for cg, st := range w.cgroups {
		e := Watched{Cgroup: cg, OOMs: st.last.OOM, Kills: st.last.Kills, Paused: st.paused, NoMemory: st.noMemory}
		if st.inc != nil {
			e.Incident, e.Verdict, e.Since, e.ContainerName = st.inc.ID, st.inc.Verdict, st.inc.Started, st.inc.ContainerName
		}
		l = append(l, e)
	}
	return l
}
