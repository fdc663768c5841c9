package policy

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"time"
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

func (p *Policy) loadFrozen() ([]frozenRecord, error) {
	f := p.frozenPath()
	if f == "" {
		return nil, nil
	}
	b, err := os.ReadFile(f)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var recs []frozenRecord
	if err := json.Unmarshal(b, &recs); err != nil {
		return nil, err
	}
	return recs, nil
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
	recs, _ := p.loadFrozen()
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
	recs, err := p.loadFrozen()
	if err != nil {
		p.log.Error().Err(err).Str("file", p.frozenPath()).Msg("cannot read the list of frozen cgroups")
		return
	}
	still := []frozenRecord{}
	for _, r := range recs {
		if st, err := p.cg.FreezerState(r.Cgroup); err == nil && st != "THAWED" {
			still = append(still, r)
			p.log.Warn().Str("event", "still_frozen").Str("cgroup", r.Cgroup).Str("incident", r.Incident).Time("frozen_at", r.At).
				Msg("a cgroup oomwatch froze is still frozen: fix the cause, then run oomwatch thaw " + r.Cgroup)
		}
	}
	if len(still) != len(recs) {
		_ = p.saveFrozen(still)
	}
}
