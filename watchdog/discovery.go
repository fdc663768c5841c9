package watchdog

import (
	"errors"
	"path/filepath"
	"strings"
	"time"

	"github.com/oomwatch/oomwatch/eventfd"
	"github.com/oomwatch/oomwatch/internal/cgnames"
	"github.com/oomwatch/oomwatch/internal/cgroupfs"
	"github.com/oomwatch/oomwatch/internal/procfs"
)

// Discovery and arming: which cgroups are watched (the walk, the caps per
// subtree, inotify on new directories), their baselines, and forgetting
// the ones that go.

// add starts watching cg and its whole subtree (a cgroup created with
// mkdir -p may already have children when we see it).
func (w *Watchdog) add(cg string) error {
	return w.cfg.CG.Walk(cg, 0, w.visit)
}

// visit arms one cgroup of a walk unless it is watched already. nil means
// descend into it; filepath.SkipDir do not (ignored, or its subtree is at
// its cap); cgroupfs.ErrTooMany stop (the global cap).
func (w *Watchdog) visit(c string) error {
	if _, ok := w.cgroups[c]; ok {
		return nil
	}
	if len(w.cgroups) >= w.cfg.MaxCgroups {
		if !w.full {
			w.full = true
			w.log.Warn().Str("event", "cgroup_cap").Int("max_cgroups", w.cfg.MaxCgroups).Str("cgroup", c).
				Msg("cgroup limit reached: further cgroups are not watched (raise max_cgroups)")
		}
		return cgroupfs.ErrTooMany
	}
	for _, ig := range w.cfg.Ignore {
		if ig != "/" && cgroupfs.Clean(ig) == c {
			w.log.Info().Str("cgroup", c).Msg("not watching oomwatch's own cgroup")
			return filepath.SkipDir
		}
	}
	// The per-subtree cap: a container that creates cgroups in its
	// delegated subtree cannot take the global budget from everyone else.
	key, inCtr := w.capKey(c)
	if key != "" && w.perTop[key] >= w.cfg.MaxPerSubtree {
		if !w.capped[key] {
			w.capped[key] = true
			w.log.Warn().Str("event", "cgroup_cap").Str("subtree", key).Int("max_per_subtree", w.cfg.MaxPerSubtree).
				Msg("subtree holds too many cgroups: its new cgroups are not watched")
		}
		return filepath.SkipDir
	}
	err := w.arm(c, key, inCtr)
	if errors.Is(err, cgroupfs.ErrGone) || errors.Is(err, eventfd.ErrGone) {
		return nil
	}
	if err == nil && w.fresh && w.cfg.RiskHint != nil {
		w.cfg.RiskHint(c)
	}
	if err != nil && c != "/" {
		// One cgroup we cannot watch (permissions, fd limit) must not
		// stop the daemon from watching the others.
		w.armErrors++
		if w.armErrors <= 10 {
			w.log.Warn().Err(err).Str("cgroup", c).Msg("cannot watch cgroup")
		}
		return nil
	}
	return err
}

// rescanStep goes on with the rescan that follows an inotify queue
// overflow, for at most rescanBudget (and at least rescanMin directories)
// per loop turn: a rescan visits every cgroup (about 14 µs each), which at
// tens of thousands of cgroups would stall the loop for a second if done at
// once, and a tenant can overflow the queue at will with mkdir and rmdir.
// The loop does not sleep while directories are left (nextTimeout), and the
// events of each turn are handled between the slices.
func (w *Watchdog) rescanStep() {
	t0 := time.Now()
	for n := 0; len(w.rescan) > 0; n++ {
		if n >= rescanMin && time.Since(t0) >= rescanBudget {
			return
		}
		c := w.rescan[len(w.rescan)-1]
		w.rescan = w.rescan[:len(w.rescan)-1]
		w.rescanned++
		err := w.visit(c)
		if errors.Is(err, cgroupfs.ErrTooMany) {
			w.rescan = w.rescan[:0]
			break
		}
		if err != nil {
			continue // not to descend into, or the root unreadable: its events tell
		}
		kids, err := w.cfg.CG.Children(c)
		if err != nil {
			continue // gone meanwhile
		}
		for i := len(kids) - 1; i >= 0; i-- { // in order, as Walk visits them
			w.rescan = append(w.rescan, kids[i])
		}
	}
	w.log.Info().Str("event", "rescanned").Int("visited", w.rescanned).Int("cgroups", len(w.cgroups)).
		Msg("rescan after the inotify overflow done")
	w.rescan, w.rescanned = nil, 0
	// Its garbage back to the kernel, off the loop: a forced collection
	// at tens of thousands of cgroups takes longer than a loop turn may.
	go startupDone()
}

// capKey names the subtree c counts against for MaxPerSubtree: the
// outermost container cgroup at or above c (as internal/cgnames names it:
// /lxc/web1, /docker/<id>, …/cri-containerd-<id>.scope,
// /machine.slice/libpod-<id>.scope), so containers that share a parent
// (/lxc, /docker, /kubepods.slice) each have their own budget and one that
// floods its subtree cannot blind oomwatch to its siblings; outside any
// container, the top-level cgroup. inCtr reports the first case.
func (w *Watchdog) capKey(c string) (key string, inCtr bool) {
	c = cgroupfs.Clean(c)
	if c == "/" {
		return "", false
	}
	if p, ok := cgroupfs.Parent(c); ok && p != "/" {
		if ps := w.cgroups[p]; ps != nil && ps.capKey != "" {
			if ps.inCtr {
				return ps.capKey, true
			}
			if cgnames.Parse(c).Container != "" {
				return c, true
			}
			return ps.capKey, false
		}
	}
	// The parent is not watched (start of a walk, ignored, capped).
	return subtreeOf(c)
}

// Subtree names the subtree cg belongs to for the bounds kept per container
// (MaxPerSubtree, the policy's action budget): the outermost container
// cgroup at or above cg, or outside any container the top-level cgroup; ""
// for the root. capKey gives the same answer from its parent's.
func Subtree(cg string) string {
	key, _ := subtreeOf(cgroupfs.Clean(cg))
	return key
}

// subtreeOf is Subtree for a clean c, looking at every ancestor, outermost
// first; inCtr reports a container.
func subtreeOf(c string) (key string, inCtr bool) {
	if c == "/" {
		return "", false
	}
	for i := 1; i < len(c); i++ {
		if c[i] == '/' && cgnames.Parse(c[:i]).Container != "" {
			return c[:i], true
		}
	}
	if cgnames.Parse(c).Container != "" {
		return c, true
	}
	return topLevel(c), false
}

func topLevel(c string) string {
	c = cgroupfs.Clean(c)
	if c == "/" {
		return ""
	}
	if i := strings.IndexByte(c[1:], '/'); i >= 0 {
		return c[:i+1]
	}
	return c
}

// arm watches cg, which counts against the subtree capKey (see capKey).
func (w *Watchdog) arm(cg, capKey string, inCtr bool) error {
	watch := w.poller.WatchDir // v2: memory.events and cgroup.subtree_control changes
	if w.cfg.CG.Version == 1 {
		watch = w.poller.WatchSubdirs // v1: OOMs come from the eventfd
	}
	if err := watch(cg, w.cfg.CG.Dir(cg)); err != nil {
		return err
	}
	st := &cgroupState{gen: w.gen.Load()}
	w.cgroups[cg] = st
	if p, ok := cgroupfs.Parent(cg); ok {
		st.pos = int32(len(w.kids[p]))
		w.kids[p] = append(w.kids[p], cg)
	}
	if st.capKey, st.inCtr = capKey, inCtr; capKey != "" {
		w.perTop[capKey]++
	}
	w.watched.Store(int64(len(w.cgroups)))
	if cg == "/" {
		return nil // the root has no memory.events; v1: "OOM notification doesn't work for the root cgroup"
	}
	if w.cfg.CG.Version == 2 {
		// The start-up walk polls in readBaselines, after ready: an open
		// and an epoll_ctl per cgroup would lengthen arming.
		if err := w.watchEvents(cg, w.fresh); err != nil {
			if errors.Is(err, eventfd.ErrGone) && w.cfg.CG.Exists(cg) {
				// No memory.events: the memory controller is not enabled
				// here (parent's subtree_control) and its usage is charged
				// to an ancestor. Keep the directory watch for new
				// children, nothing else.
				st.noMemory = true
				return nil
			}
			w.drop(cg)
			return err
		}
	}
	if w.cfg.CG.Version == 1 && !w.unsupported.Load() {
		ec, oc := w.cfg.CG.EventControlPaths(cg)
		err := w.poller.WatchV1OOM(cg, ec, oc)
		if errors.Is(err, errors.ErrUnsupported) {
			// CONFIG_MEMCG_V1=n or PREEMPT_RT: no OOM eventfd. Say so once.
			w.unsupported.Store(true)
			w.log.Error().Err(err).Msg("cgroup v1 OOM notifications are not supported by this kernel: v1 OOM loops cannot be detected")
		} else if err != nil {
			w.drop(cg)
			return err
		}
	}
	switch {
	case w.cfg.CG.Version == 1:
		// v1: only this cgroup's own oom_kill is read here; the subtree
		// baseline is summed from the armed cgroups of its subtree at the
		// first eventfd wake-up (see v1Base). Summing oom_kill over the
		// subtree for every cgroup at start-up walked each subtree twice;
		// reading the baseline only at the wake-up would absorb the very
		// kill that caused it.
		oc, err := w.cfg.CG.OOMControl(cg)
		if err != nil {
			w.drop(cg)
			return err
		}
		st.armKills, st.needBase = oc.OOMKill, true
	case w.fresh:
		// v2, a cgroup created while we run: a new memcg starts with every
		// counter at zero, which is the right baseline (an OOM between
		// mkdir and this arm still counts). Saves a read per new cgroup.
		// st.last is that baseline (see observe).
	default:
		// v2, an existing cgroup: its counters may hold old OOMs, so a
		// baseline is needed, but reading memory.events here was the
		// largest cost of arming (28 % of the CPU at 10,000 cgroups):
		// the watch is live now and readBaselines reads it right after.
		st.baseLate = true
		w.pending = append(w.pending, cg)
		// Stored with the cgroup, not after arming: Stats never shows a
		// cgroup as watched whose baseline is still unread as read.
		w.baselining.Store(int64(len(w.pending)))
	}
	return nil
}

// readBaselines reads up to baselineBatch deferred v2 baselines. A cgroup
// whose notification came first got its baseline in observe instead.
func (w *Watchdog) readBaselines(now time.Time) {
	n := min(baselineBatch, len(w.pending))
	for _, cg := range w.pending[:n] {
		if st := w.cgroups[cg]; st != nil && st.baseLate {
			w.baseline(now, cg, st)
		}
		if st := w.cgroups[cg]; st != nil && !st.noMemory {
			w.poll(cg)
		}
	}
	w.pending = w.pending[n:]
	w.baselining.Store(int64(len(w.pending)))
	if len(w.pending) == 0 {
		w.pending = nil // release the start-up array
	}
}

// baseline reads a v2 cgroup's counters as the point deltas count from.
func (w *Watchdog) baseline(now time.Time, cg string, st *cgroupState) {
	c, _, err := w.counters(cg, st, 0)
	if errors.Is(err, cgroupfs.ErrGone) {
		w.drop(cg)
		return
	}
	if err != nil {
		// Still no baseline: the next notification tries again.
		w.log.Warn().Err(err).Str("cgroup", cg).Msg("cannot read OOM counters")
		return
	}
	st.baseLate = false
	st.last = c // the baseline: see observe
}

// watchEvents makes the changes of cg's memory.events heard. kernfs only
// notifies a file whose inode is cached (kernfs_notify_workfn uses ilookup):
// the pin keeps it so for the directory watch. With poll, the file is
// polled as well (see poll).
func (w *Watchdog) watchEvents(cg string, poll bool) error {
	if err := w.poller.PinFile(cg, w.cfg.CG.MemoryEventsPath(cg)); err != nil {
		return err
	}
	if poll {
		w.poll(cg)
	}
	return nil
}

// poll has cg's memory.events polled: the poll hears the kernel's
// notification itself rather than the workqueue's inotify echo, which a
// looping task on a busy CPU delays by many OOM attempts
// (eventfd.PollFile). Without a poll (not kernfs, or no fd left: warned
// once) the directory watch still reports every change, later.
func (w *Watchdog) poll(cg string) {
	err := w.poller.PollFile(cg, w.cfg.CG.MemoryEventsPath(cg))
	if err == nil || errors.Is(err, errors.ErrUnsupported) || errors.Is(err, eventfd.ErrGone) {
		return // a missing file: the next read finds the cgroup gone
	}
	if !w.pollWarned {
		w.pollWarned = true
		w.log.Warn().Str("event", "poll_unavailable").Err(err).Str("cgroup", cg).
			Msg("cannot poll memory.events (out of fds: raise LimitNOFILE): the OOMs of this and further such cgroups are heard through inotify, some milliseconds later")
	}
}

// enableMemory re-checks the children of cg after its cgroup.subtree_control
// was written: enabling +memory gives existing children memory.events, and
// kernfs sends no inotify event for files it adds. A child created before
// its parent enabled the controller would otherwise never be watched.
func (w *Watchdog) enableMemory(cg string) {
	for _, c := range w.kids[cgroupfs.Clean(cg)] {
		st := w.cgroups[c]
		w.visits++
		if !st.noMemory || !w.cfg.CG.HasMemoryEvents(c) {
			continue
		}
		if err := w.watchEvents(c, true); err != nil {
			continue
		}
		cnt, _, err := w.counters(c, st, 0)
		if err != nil {
			continue
		}
		st.noMemory, st.last = false, cnt // the baseline
		w.log.Debug().Str("cgroup", c).Msg("memory controller enabled: now watching OOM counters")
	}
}

// eachBelow calls fn for the watched descendants of cg, nearest first, and
// stops after max of them (max <= 0: no bound) or at fn's first error.
func (w *Watchdog) eachBelow(cg string, max int, fn func(c string, st *cgroupState) error) error {
	n := 0
	level := w.kids[cgroupfs.Clean(cg)]
	var next []string
	for len(level) > 0 {
		for _, c := range level {
			if max > 0 && n >= max {
				return nil
			}
			n++
			w.visits++
			if err := fn(c, w.cgroups[c]); err != nil {
				return err
			}
			next = append(next, w.kids[c]...)
		}
		level, next = next, level[:0:0]
	}
	return nil
}

// drop forgets cg and everything below it.
func (w *Watchdog) drop(cg string) {
	w.forgetTree(cgroupfs.Clean(cg))
	w.watched.Store(int64(len(w.cgroups)))
}

// forgetTree forgets c and its watched descendants, children first. rmdir
// needs an empty cgroup, so children are normally dropped before their
// parent; after an inotify overflow or a Gone of a whole subtree they are
// still here.
func (w *Watchdog) forgetTree(c string) {
	for k := w.kids[c]; len(k) > 0; k = w.kids[c] {
		w.visits++
		w.forgetTree(k[len(k)-1])
	}
	w.forget(c)
}

// forget drops one cgroup's watches and state; its children are gone
// already (forgetTree).
func (w *Watchdog) forget(c string) {
	st, ok := w.cgroups[c]
	if !ok {
		return
	}
	w.poller.Unwatch(c)
	if st.inc != nil {
		w.closeIncident(st, "cgroup removed")
	}
	delete(w.cgroups, c)
	delete(w.rechecks, c)
	delete(w.follows, c)
	delete(w.limitHits, c)
	delete(w.pre, c)
	delete(w.kids, c)
	if p, ok := cgroupfs.Parent(c); ok {
		// Swap with the last child: O(1) at any number of siblings.
		k := w.kids[p]
		last := k[len(k)-1]
		k[st.pos] = last
		if ls := w.cgroups[last]; ls != nil { // nil: c was the last
			ls.pos = st.pos
		}
		if k = k[:len(k)-1]; len(k) == 0 {
			delete(w.kids, p)
		} else {
			w.kids[p] = k
		}
	}
	if top := st.capKey; top != "" {
		if w.perTop[top]--; w.perTop[top] <= 0 {
			delete(w.perTop, top)
			delete(w.capped, top)
		}
	}
}

// OwnCgroup is the cgroup of process pid (oomwatch itself) on h, as a list
// for Config.Ignore (empty when it cannot be told, or it is the root).
func OwnCgroup(proc procfs.FS, h cgroupfs.Hierarchy, pid int) []string {
	lines, err := proc.Cgroups(pid)
	if err != nil {
		return nil
	}
	for _, l := range lines {
		if h.InCgroup(l.Path, l.ID, l.Controllers, l.Path) && l.Path != "/" && !strings.HasPrefix(l.Path, "/..") {
			return []string{l.Path}
		}
	}
	return nil
}
