package config

import (
	"fmt"

	"github.com/oomwatch/oomwatch/policy"
	"github.com/oomwatch/oomwatch/watchdog"
)

// Overrides are settings given on the command line. Each one named in Set
// (by its flag name) replaces the config file's value, for every rule;
// the others leave the file alone.
type Overrides struct {
	Set map[string]bool // flag names given

	Detector                                        watchdog.Params
	Policy                                          policy.Options
	Ladder, ExemptComm, ExemptCmdline, ExemptCgroup []string
	MaxCgroups, MaxPerSubtree, MaxActions           int
	StateDir, MetricsListen                         string
}

// Apply lays the overrides over a rule's resolved settings.
func (ov Overrides) Apply(p watchdog.Params, o policy.Options) (watchdog.Params, policy.Options) {
	if ov.Set["window"] {
		p.Window = ov.Detector.Window
	}
	if ov.Set["min-ooms"] {
		p.MinOOMs = ov.Detector.MinOOMs
	}
	set := map[string]func(){
		"dry-run":        func() { o.DryRun = ov.Policy.DryRun },
		"ladder":         func() { o.Ladder = ov.Ladder },
		"exempt-comm":    func() { o.ExemptComm = ov.ExemptComm },
		"exempt-cmdline": func() { o.ExemptCmdline = ov.ExemptCmdline },
		"exempt-cgroup":  func() { o.ExemptCgroup = ov.ExemptCgroup },
		"reset-to":       func() { o.ResetTo = ov.Policy.ResetTo },
		"verify-timeout": func() { o.VerifyTimeout = ov.Policy.VerifyTimeout },
		"freeze-timeout": func() { o.FreezeTimeout = ov.Policy.FreezeTimeout },
		"kill-mode":      func() { o.KillMode = ov.Policy.KillMode },
		"cooldown":       func() { o.Cooldown = ov.Policy.Cooldown },
		"paused-action":  func() { o.PausedAction = ov.Policy.PausedAction },
		"revert-hold":    func() { o.RevertHold = ov.Policy.RevertHold },
	}
	for name, fn := range set {
		if ov.Set[name] {
			fn()
		}
	}
	return p, o
}

// Global lays the overrides over the file's global settings.
func (ov Overrides) Global(g Global) Global {
	if ov.Set["max-cgroups"] {
		g.MaxCgroups = ov.MaxCgroups
	}
	if ov.Set["max-per-subtree"] {
		g.MaxPerSubtree = ov.MaxPerSubtree
	}
	if ov.Set["state-dir"] {
		g.StateDir = ov.StateDir
	}
	if ov.Set["max-actions-per-minute"] {
		g.MaxActionsPerMinute = ov.MaxActions
	}
	if ov.Set["metrics-listen"] {
		g.MetricsListen = ov.MetricsListen
	}
	return g
}

// Check checks that the overrides laid over c still make valid settings:
// the file was valid on its own, so what fails is an override. An explicit
// --max-per-subtree is checked against the global cap it is a part of
// (--max-cgroups or the file's max_cgroups), as the file's
// max_per_subtree is checked against max_cgroups; without it there is
// nothing to check (a --max-cgroups below the file's value only bounds it
// further).
func (ov Overrides) Check(c *Config) error {
	p, o := ov.Apply(c.TopLevel().Detector, c.TopLevel().Policy)
	if err := p.Validate(); err != nil {
		return err
	}
	if err := o.Validate(); err != nil {
		return err
	}
	if !ov.Set["max-per-subtree"] {
		return nil
	}
	g := ov.Global(c.Global())
	if g.MaxPerSubtree < 1 {
		return fmt.Errorf("--max-per-subtree %d: want at least 1", g.MaxPerSubtree)
	}
	limit := g.MaxCgroups
	if limit <= 0 {
		limit = watchdog.DefaultMaxCgroups
	}
	if g.MaxPerSubtree > limit {
		return fmt.Errorf("--max-per-subtree %d is more than the %d cgroups watched in all: lower it, or raise --max-cgroups (or max_cgroups in the config file)", g.MaxPerSubtree, limit)
	}
	return nil
}
