package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"time"

	"github.com/oomwatch/oomwatch/internal/cgroupfs"
)

// frozenFile lists the cgroups the freeze rung froze, so that a restarted
// oomwatch reports those still frozen instead of forgetting them.
const frozenFile = "frozen.json"

type frozenRecord struct {
	Cgroup   string    `json:"cgroup"`
	Incident string    `json:"incident"`
	At       time.Time `json:"frozen_at"`
}

func (p *Policy) frozenPath() string {
	if p.cfg.StateDir == "" {
		return ""
	}
	return filepath.Join(p.cfg.StateDir, frozenFile)
}

// loadFrozen reads frozen.json. ok is false when the file must not be
// written (unreadable, or damaged and not kept aside). A damaged file is
// reported here; once kept aside it is replaced by what could be read.
func (p *Policy) loadFrozen() (recs []frozenRecord, ok bool) {
	f := p.frozenPath()
	if f == "" {
		return nil, true
	}
	recs, err := loadRecords(f, frozenRecord.check)
	var corrupt *corruptStateError
	switch {
	case errors.As(err, &corrupt):
		logCorrupt(p.log, corrupt, "the recovered cgroups are still reported; look for other frozen cgroups it names by hand")
		return recs, corrupt.Writable()
	case err != nil:
		p.log.Error().Err(err).Str("file", f).Msg("cannot read the list of frozen cgroups: it is left as it is and not written")
		return nil, false
	}
	return recs, true
}

func (r frozenRecord) check() error {
	if r.Cgroup == "" || r.Cgroup != cgroupfs.Clean(r.Cgroup) {
		return fmt.Errorf("cgroup %q is not a cgroup path", r.Cgroup)
	}
	return nil
}

func (p *Policy) saveFrozen(recs []frozenRecord) error {
	f := p.frozenPath()
	if f == "" {
		return nil
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].Cgroup < recs[j].Cgroup })
	b, err := json.MarshalIndent(recs, "", "  ")
	if err != nil {
		return err
	}
	return writeAtomic(f, b)
}

// rememberFrozen records a cgroup the freeze rung froze.
func (p *Policy) rememberFrozen(cg, incident string) {
	p.frozenMu.Lock()
	defer p.frozenMu.Unlock()
	recs, ok := p.loadFrozen()
	if !ok {
		p.log.Error().Str("cgroup", cg).Msg("cannot record the frozen cgroup: a restart will not report it")
		return
	}
	out := recs[:0]
	for _, r := range recs {
		if r.Cgroup != cg {
			out = append(out, r)
		}
	}
	out = append(out, frozenRecord{Cgroup: cg, Incident: incident, At: time.Now()})
	if err := p.saveFrozen(out); err != nil {
		p.log.Error().Err(err).Msg("cannot record the frozen cgroup: a restart will not report it")
	}
}

// reportFrozen runs at start: every cgroup a previous oomwatch froze that
// is still frozen is reported (it stays frozen until an operator thaws it);
// the others are forgotten.
func (p *Policy) reportFrozen() {
	p.frozenMu.Lock()
	defer p.frozenMu.Unlock()
	recs, ok := p.loadFrozen()
	still := []frozenRecord{}
	for _, r := range recs {
		if st, err := p.cg.FreezerState(r.Cgroup); err == nil && st != "THAWED" {
			still = append(still, r)
			p.log.Warn().Str("event", "still_frozen").Str("cgroup", r.Cgroup).Str("incident", r.Incident).Time("frozen_at", r.At).
				Msg("a cgroup oomwatch froze is still frozen: fix the cause, then run oomwatch thaw " + r.Cgroup)
		}
	}
	if ok && len(still) != len(recs) {
		_ = p.saveFrozen(still)
	}
}
