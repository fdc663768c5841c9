package watchdog

import (
	"errors"
	"sort"

	"github.com/oomwatch/oomwatch/internal/cgroupfs"
)

// ScanCgroup is one cgroup worth reporting in a scan.
type ScanCgroup struct {
	Cgroup string `json:"cgroup"`
	Limit  uint64 `json:"limit_bytes"` // cgroupfs.Unlimited when none
	Usage  uint64 `json:"usage_bytes"`
	// WouldLoop: the cgroup has a limit and every task below it is
	// unkillable: an OOM here would loop today.
	WouldLoop bool `json:"would_loop"`
	// NearLimit: usage is at least NearLimitPercent of the limit.
	NearLimit bool `json:"near_limit,omitempty"`
	// Tasks counts every task in the subtree; Unkillable lists the
	// unkillable ones directly in this cgroup.
	Tasks      int         `json:"tasks"`
	Unkillable []Candidate `json:"unkillable"`
}

// ScanResult is the preventive audit.
type ScanResult struct {
	Hierarchy string       `json:"hierarchy"`
	Version   int          `json:"cgroup_version"`
	Scanned   int          `json:"cgroups_scanned"`
	Truncated bool         `json:"truncated,omitempty"` // the max bound was reached
	Cgroups   []ScanCgroup `json:"cgroups"`
	Risks     int          `json:"would_loop"`
	Near      int          `json:"near_limit"`
}

// NearLimitPercent is when scan calls a cgroup close to its limit.
const NearLimitPercent = 90

// Scan walks every memory cgroup (at most max) and reports the cgroups
// holding unkillable tasks and those where an OOM would loop.
func Scan(in Inspector, max int) (ScanResult, error) {
	res := ScanResult{Hierarchy: in.CG.String(), Version: in.CG.Version}
	direct := map[string][]Candidate{}
	var order []string
	err := in.CG.Walk("/", max, func(cg string) error {
		c, err := in.Direct(cg)
		if errors.Is(err, cgroupfs.ErrGone) {
			return nil
		}
		if err != nil {
			return err
		}
		direct[cg] = c
		order = append(order, cg)
		return nil
	})
	if errors.Is(err, cgroupfs.ErrTooMany) {
		res.Truncated = true
	} else if err != nil {
		return res, err
	}
	res.Scanned = len(order)
	sort.Strings(order)
	// Add each cgroup's tasks to itself and every ancestor.
	type agg struct{ tasks, unkillable, killable int }
	sub := map[string]*agg{}
	for _, cg := range order {
		sub[cg] = &agg{}
	}
	for _, d := range order {
		for cg, ok := d, true; ok; cg, ok = cgroupfs.Parent(cg) {
			a := sub[cg]
			if a == nil {
				continue
			}
			for _, c := range direct[d] {
				a.tasks++
				switch {
				case c.Unkillable:
					a.unkillable++
				case !c.Exiting:
					a.killable++
				}
			}
		}
	}
	for _, cg := range order {
		var unk []Candidate
		for _, c := range direct[cg] {
			if c.Unkillable {
				unk = append(unk, c)
			}
		}
		a := sub[cg]
		sc := ScanCgroup{Cgroup: cg, Tasks: a.tasks, Unkillable: unk, Limit: cgroupfs.Unlimited}
		if lim, err := in.CG.Limit(cg); err == nil {
			sc.Limit = lim
		}
		sc.Usage, _ = in.CG.Usage(cg)
		// Same rule as Classify: no killable task, at least one unkillable.
		if cg != "/" && sc.Limit != cgroupfs.Unlimited && a.killable == 0 && a.unkillable > 0 {
			sc.WouldLoop = true
			res.Risks++
		}
		if cg != "/" && sc.Limit != cgroupfs.Unlimited && sc.Limit > 0 && sc.Usage*100 >= sc.Limit*NearLimitPercent {
			sc.NearLimit = true
			res.Near++
		}
		if sc.WouldLoop || sc.NearLimit || len(unk) > 0 {
			res.Cgroups = append(res.Cgroups, sc)
		}
	}
	return res, nil
}
