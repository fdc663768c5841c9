package cgroupfs

import (
	"errors"
	"path/filepath"
)

// Walking: bounded walks of a subtree and the tasks under it.

// Walk visits cg and every descendant, parents first, stopping after max
// cgroups (max <= 0: no bound) with ErrTooMany. Cgroups that vanish during
// the walk are skipped; fn returning filepath.SkipDir skips a subtree.
//
// The children of a cgroup are all visited before any of them is listed.
// On v2 the parent's cgroup.stat is then read: when its nr_descendants is
// the number of children, none of them has children, and they are not
// listed at all (most cgroups are leaves: at 10,000 cgroups that is 10,000
// directory reads saved, for one small read per parent). The count is read
// after fn has seen every child, so a grandchild created later is for fn's
// own watch of its parent to report (the watchdog's case), not for Walk.
func (h Hierarchy) Walk(cg string, max int, fn func(cg string) error) error {
	n := 0
	visit := func(c string) (descend bool, err error) {
		if max > 0 && n >= max {
			return false, ErrTooMany
		}
		n++
		if err := fn(c); errors.Is(err, filepath.SkipDir) {
			return false, nil // do not descend
		} else if err != nil {
			return false, err
		}
		return true, nil
	}
	// below visits the subtrees under c, which was visited.
	var below func(c string) error
	below = func(c string) error {
		kids, err := h.Children(c)
		if errors.Is(err, ErrGone) {
			return nil
		}
		if err != nil {
			return err
		}
		descend := make([]bool, len(kids))
		for i, k := range kids {
			if descend[i], err = visit(k); err != nil {
				return err
			}
		}
		if len(kids) > 0 && h.Version == 2 && h.descendants(c) == len(kids) {
			return nil // every child is a leaf
		}
		for i, k := range kids {
			if !descend[i] {
				continue
			}
			if err := below(k); err != nil {
				return err
			}
		}
		return nil
	}
	c := Clean(cg)
	if d, err := visit(c); err != nil || !d {
		return err
	}
	return below(c)
}

// descendants is nr_descendants from cg's v2 cgroup.stat (live descendant
// cgroups, any depth), or -1 when it cannot be read.
func (h Hierarchy) descendants(cg string) int {
	n, err := readAs(h, cg, fileCgroupStat, parseDescendants)
	if err != nil {
		return -1
	}
	return n
}

// ErrTooMany is returned by Walk when the bound was reached.
var ErrTooMany = errors.New("too many cgroups")

// SubtreeProcs lists every PID in cg and its descendants.
func (h Hierarchy) SubtreeProcs(cg string, max int) ([]int, error) {
	var pids []int
	err := h.Walk(cg, max, func(c string) error {
		p, err := h.Procs(c)
		if errors.Is(err, ErrGone) {
			return nil
		}
		pids = append(pids, p...)
		return err
	})
	return pids, err
}
