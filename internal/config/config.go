// Package config reads oomwatch's one YAML config file
// (/etc/oomwatch/oomwatch.yaml), strictly: unknown keys, wrong types,
// duplicate keys and bad values are errors that say FILE:LINE:COLUMN, what
// is wrong and what to do. A file with any problem is never used, not even
// in part. With no file at the default path the embedded defaults apply;
// they are the file defaults.yaml, which documents every key and which
// `oomwatch config --defaults` prints.
//
// Rules, matched per incident by cgroup path, container name and systemd
// unit, override the top-level settings; the first match wins.
package config

import (
	_ "embed"
	"fmt"
	"net"
	"path"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"

	"github.com/oomwatch/oomwatch/alert"
	"github.com/oomwatch/oomwatch/internal/cgnames"
	"github.com/oomwatch/oomwatch/policy"
	"github.com/oomwatch/oomwatch/watchdog"
)

// DefaultPath is where the daemon looks for its config file.
const DefaultPath = "/etc/oomwatch/oomwatch.yaml"

// MaxFileSize bounds the config file: a real one is a few KiB.
const MaxFileSize = 1 << 20

// Defaults of the settings that are not policy.Options or watchdog.Params.
const (
	DefaultStateDir            = "/var/lib/oomwatch"
	DefaultMaxActionsPerMinute = 30
	DefaultMetricsListen       = "127.0.0.1:9731"
)

// Bounds on values where a typo would hurt.
const (
	maxMaxCgroups  = 1 << 20
	maxMinOOMs     = 1_000_000
	maxMaxTasks    = 1000
	maxActions     = 100_000
	maxRuleNameLen = 128
)

//go:embed defaults.yaml
var defaultsYAML []byte

// DefaultsYAML returns the embedded defaults file: every key, its default
// and what it means.
func DefaultsYAML() []byte { return slices.Clone(defaultsYAML) }

// Config is a validated config. It is immutable: every accessor returns
// copies.
type Config struct {
	// Path is the file the config was read from; empty for the built-in
	// defaults (no file at the default path).
	Path string

	global   Global
	alerts   alert.Config
	warnings []*Problem
	top      settings
	rules    []rule
}

// Global are the settings that apply to the daemon as a whole.
type Global struct {
	MaxCgroups          int    // bound on the number of cgroups watched
	MaxPerSubtree       int    // bound on the cgroups watched under one top-level cgroup
	StateDir            string // where raise-limit remembers original limits
	MaxActionsPerMinute int    // across all cgroups
	MetricsListen       string // host:port of the Prometheus endpoint; "" = off
}

// Resolved are the settings for one incident's cgroup.
type Resolved struct {
	Rule     string        // the matching rule's name; "" = the top-level settings
	Names    cgnames.Names // what the cgroup path says about its owner
	Detector watchdog.Params
	Policy   policy.Options
}

type settings struct {
	det watchdog.Params
	pol policy.Options
}

type rule struct {
	name                    string
	cgroup, container, unit *glob
	set                     settings
}

// Defaults returns the built-in config, the one defaults.yaml describes.
func Defaults() *Config {
	return &Config{
		global: Global{
			MaxCgroups:          watchdog.DefaultMaxCgroups,
			MaxPerSubtree:       watchdog.DefaultMaxPerSubtree,
			StateDir:            DefaultStateDir,
			MaxActionsPerMinute: DefaultMaxActionsPerMinute,
			MetricsListen:       DefaultMetricsListen,
		},
		top: settings{det: watchdog.DefaultParams, pol: policy.DefaultOptions()},
	}
}

// Global returns the daemon-wide settings.
func (c *Config) Global() Global {
	return c.global
}

// Alerts returns the alert sinks (the alerts section), decoded and
// validated; the zero Config when there are none. Callers must not modify
// its slices and maps.
func (c *Config) Alerts() alert.Config { return c.alerts }

// RuleNames lists the rules in match order.
func (c *Config) RuleNames() []string {
	names := make([]string, len(c.rules))
	for i, r := range c.rules {
		names[i] = r.name
	}
	return names
}

// TopLevel returns the settings that apply where no rule matches.
func (c *Config) TopLevel() Resolved {
	return Resolved{Detector: c.top.det, Policy: clonePolicy(c.top.pol)}
}

// For resolves the settings for one incident's cgroup (a path relative to
// the hierarchy root, "/lxc.payload.web1"): the first matching rule's
// overrides on top of the top-level settings. A rule matches when every
// matcher it gives matches; "container" never matches a cgroup without a
// container, nor a container's monitor (lxc.monitor.*, conmon), "unit"
// never one outside a systemd unit.
func (c *Config) For(cgroup string) Resolved {
	cg := path.Clean("/" + cgroup)
	names := cgnames.Parse(cg)
	for _, r := range c.rules {
		if r.matches(cg, names) {
			return Resolved{Rule: r.name, Names: names, Detector: r.set.det, Policy: clonePolicy(r.set.pol)}
		}
	}
	return Resolved{Names: names, Detector: c.top.det, Policy: clonePolicy(c.top.pol)}
}

func (r *rule) matches(cg string, n cgnames.Names) bool {
	if r.cgroup != nil && !r.cgroup.match(cg) {
		return false
	}
	if r.container != nil && (n.Container == "" || n.Monitor || !r.container.match(n.Container)) {
		return false
	}
	if r.unit != nil && (n.Unit == "" || !r.unit.match(n.Unit)) {
		return false
	}
	return true
}

func clonePolicy(o policy.Options) policy.Options {
	o.Ladder = slices.Clone(o.Ladder)
	o.ExemptComm = slices.Clone(o.ExemptComm)
	o.ExemptCmdline = slices.Clone(o.ExemptCmdline)
	o.ExemptCgroup = slices.Clone(o.ExemptCgroup)
	return o
}

// Parse reads a config from data; name is the file name used in errors.
// An empty file (or one of comments only) is the built-in defaults. Errors
// are *Error.
func Parse(name string, data []byte) (*Config, error) {
	return parse(name, data, builder{})
}

// parse is Parse with the builder's options set (ps and file are filled
// in here).
func parse(name string, data []byte, b builder) (cfg *Config, err error) {
	ps := newProblems(name, data)
	defer func() {
		// The YAML library is large and fed untrusted bytes: a panic in it
		// is a bad file, not a dead daemon.
		if r := recover(); r != nil {
			cfg = nil
			ps.add(&Problem{Msg: fmt.Sprintf("cannot read the YAML: parser failure: %v", r), Hint: "simplify the file; start from oomwatch config --defaults"})
			err = ps.err()
		}
	}()
	if len(data) > MaxFileSize {
		ps.add(&Problem{Msg: fmt.Sprintf("file is more than the %s allowed", sizeStr(MaxFileSize)), Hint: "a config file is a few KiB: check the path"})
		return nil, ps.err()
	}
	if msg := notText(data); msg != "" {
		ps.add(&Problem{Msg: msg, Hint: "point oomwatch at its YAML config file (oomwatch config --defaults shows one)"})
		return nil, ps.err()
	}
	f, err := parser.ParseBytes(data, 0, parser.AllowDuplicateMapKey()) // duplicates: reported by the decoder with the rest
	if err != nil {
		ps.add(fromYAML(nil, err))
		return nil, ps.err()
	}
	var body ast.Node
	for i, d := range f.Docs {
		if d == nil || d.Body == nil {
			continue
		}
		if body != nil {
			ps.at(posOf(d.Body), "keep one document: remove the \"---\" line and what follows, or merge it", "a second YAML document (document %d)", i+1)
			return nil, ps.err()
		}
		body = d.Body
	}
	c := Defaults()
	c.Path = name
	if body == nil {
		return c, nil
	}
	if rejectAliases(ps, body) {
		return nil, ps.err()
	}
	var doc fileDoc
	(&decoder{ps: ps, file: f}).decode(body, reflect.ValueOf(&doc).Elem())
	b.ps, b.file = ps, f
	b.build(c, &doc)
	if err := ps.err(); err != nil {
		return nil, err
	}
	return c, nil
}

// aliasCheck finds anchors, aliases and merge keys. They are refused: they
// make values depend on far-away lines, and aliases can expand a small file
// into a huge one.
type aliasCheck struct{ found ast.Node }

func (v *aliasCheck) Visit(n ast.Node) ast.Visitor {
	if v.found != nil || n == nil {
		return nil
	}
	switch n.(type) {
	case *ast.AnchorNode, *ast.AliasNode, *ast.MergeKeyNode:
		v.found = n
		return nil
	}
	return v
}

func rejectAliases(ps *problems, body ast.Node) bool {
	v := &aliasCheck{}
	ast.Walk(v, body)
	if v.found == nil {
		return false
	}
	at := posOf(v.found)
	switch n := v.found.(type) {
	case *ast.AliasNode:
		ps.at(at, `aliases are not supported: write the value out; quote a string that starts with * ("*.service")`, "%s is a YAML alias", describeAlias(n))
	case *ast.AnchorNode:
		ps.at(at, "anchors are not supported: write each value out", "YAML anchor")
	default:
		ps.at(at, "merge keys are not supported: write each key out", "YAML merge key <<")
	}
	return true
}

func describeAlias(n *ast.AliasNode) string {
	if n.Value != nil {
		return quoteBounded("*" + n.Value.GetToken().Value)
	}
	return "this"
}

// builder turns a decoded file into a Config, checking every value.
type builder struct {
	ps   *problems
	file *ast.File
	// checkFiles: also check the files the alert sinks read or run, owned
	// by owner (LoadOptions.RequireRootOwned).
	checkFiles bool
	owner      uint32

	rules []pos // where each rule starts (rulePositions)
}

func (b *builder) build(c *Config, doc *fileDoc) {
	// Daemon-wide settings.
	if v := doc.MaxCgroups; v.set {
		if v.v < 1 || v.v > maxMaxCgroups {
			b.ps.at(v.at, fmt.Sprintf("use 1 to %d", maxMaxCgroups), "max_cgroups %d is out of range", v.v)
		}
		c.global.MaxCgroups = int(v.v)
	}
	if v := doc.MaxPerSubtree; v.set {
		switch {
		case v.v < 1 || v.v > maxMaxCgroups:
			b.ps.at(v.at, fmt.Sprintf("use 1 to %d", maxMaxCgroups), "max_per_subtree %d is out of range", v.v)
		case v.v > int64(c.global.MaxCgroups) && (!doc.MaxCgroups.set || doc.MaxCgroups.v >= 1 && doc.MaxCgroups.v <= maxMaxCgroups):
			// One subtree may use part of the global budget, not more
			// than all of it. (A bad max_cgroups is reported on its own.)
			which := ""
			if !doc.MaxCgroups.set {
				which = " (the default)"
			}
			b.ps.at(v.at, fmt.Sprintf("lower max_per_subtree to at most %d, or raise max_cgroups to %d or more", c.global.MaxCgroups, v.v),
				"max_per_subtree %d is more than max_cgroups %d%s", v.v, c.global.MaxCgroups, which)
		}
		c.global.MaxPerSubtree = int(v.v)
	}
	if v := doc.StateDir; v.set {
		if !path.IsAbs(v.v) {
			b.ps.at(v.at, "use an absolute path such as /var/lib/oomwatch", "state directory %s is not an absolute path", quoteBounded(v.v))
		}
		c.global.StateDir = path.Clean(v.v)
	}
	if v := doc.Safety.MaxActionsPerMinute; v.set {
		if v.v < 1 || v.v > maxActions {
			b.ps.at(v.at, fmt.Sprintf("use 1 to %d; to act on nothing use dry_run: true", maxActions), "max_actions_per_minute %d is out of range", v.v)
		}
		c.global.MaxActionsPerMinute = int(v.v)
	}
	if v := doc.Metrics.Listen; v.set {
		if v.v != "" {
			if err := checkListen(v.v); err != nil {
				b.ps.at(v.at, `write host:port such as 127.0.0.1:9731, or "" to turn metrics off`, "listen address %s: %v", quoteBounded(v.v), err)
			}
		}
		c.global.MetricsListen = v.v
	}
	if doc.Alerts != nil {
		b.alerts(c, doc.Alerts)
	}

	// Top-level settings over the built-in defaults. The settings as
	// resolved are checked only where each value on its own is good (a
	// scope with a problem would be reported twice), and a rule's only
	// when the top level it inherits is.
	b.checkSettings(&doc.SettingsDoc)
	c.top = apply(c.top, &doc.SettingsDoc)
	if v := doc.Safety.Cooldown; v.set {
		c.top.pol.Cooldown = v.v
	}
	topClean := b.ps.outside("rules", "alerts") == 0
	if topClean {
		b.checkResolved(c.top, &doc.SettingsDoc, pos{line: 1, col: 1})
	}

	// Rules over the top level.
	b.rulePositions()
	names := map[string]pos{}
	for i := range doc.Rules {
		rd := &doc.Rules[i]
		at := b.rulePos(i)
		r := rule{name: rd.Name.v}
		switch {
		case !rd.Name.set || rd.Name.v == "":
			b.ps.at(at, "give every rule a unique name: name: keep-shims", "rule without a name")
		case len(rd.Name.v) > maxRuleNameLen || strings.IndexFunc(rd.Name.v, unicode.IsControl) >= 0:
			b.ps.at(rd.Name.at, fmt.Sprintf("use at most %d printable characters", maxRuleNameLen), "rule name %s is too long or has control characters", quoteBounded(rd.Name.v))
		default:
			if first, dup := names[rd.Name.v]; dup {
				b.ps.at(rd.Name.at, "give every rule a unique name", "rule name %s is used twice (first at line %d)", quoteBounded(rd.Name.v), first.line)
			} else {
				names[rd.Name.v] = rd.Name.at
			}
		}
		r.cgroup = b.matcher(rd.Match.Cgroup)
		r.container = b.matcher(rd.Match.Container)
		r.unit = b.matcher(rd.Match.Unit)
		b.checkSettings(&rd.SettingsDoc)
		r.set = apply(c.top, &rd.SettingsDoc)
		if rd.Cooldown.set {
			r.set.pol.Cooldown = rd.Cooldown.v
		}
		if topClean && b.ps.within(fmt.Sprintf("rules[%d]", i)) == 0 {
			b.checkResolved(r.set, &rd.SettingsDoc, at)
		}
		c.rules = append(c.rules, r)
	}
	c.warnings = b.warnRules(doc.Rules)
}

// nodePos finds a node by its YAML path, for problems with a whole
// mapping (a rule without a name).
func (b *builder) nodePos(p string) pos {
	if at, ok := b.find(p); ok {
		return at
	}
	return pos{line: 1, col: 1}
}

// rulePositions finds where each rule starts, once: looking each up by
// its path would read the whole file per rule.
func (b *builder) rulePositions() {
	b.rules = nil
	yp, err := yaml.PathString("$.rules")
	if err != nil {
		return
	}
	n, err := yp.FilterFile(b.file)
	if err != nil || n == nil {
		return
	}
	if seq, ok := scalar(n).(*ast.SequenceNode); ok {
		for _, item := range seq.Values {
			b.rules = append(b.rules, posOf(item))
		}
	}
}

// rulePos is where rule i starts (line 1 when it cannot be found).
func (b *builder) rulePos(i int) pos {
	if i < len(b.rules) {
		return b.rules[i]
	}
	return pos{line: 1, col: 1}
}

func (b *builder) matcher(v strVal) *glob {
	if !v.set {
		return nil
	}
	g, err := compileGlob(v.v)
	if err != nil {
		b.ps.at(v.at, `fix the pattern: * matches within one path element, ** across them, [a-z] one character`, "pattern %s: %v", quoteBounded(v.v), err)
		return nil
	}
	return g
}

// checkSettings checks each value set in one scope, pointing at it.
func (b *builder) checkSettings(s *SettingsDoc) {
	ps := b.ps
	if v := s.Detector.Window; v.set && v.v > maxWindow {
		ps.at(v.at, "use at most 1h", "detector window %v is too long", v.v)
	}
	if v := s.Detector.MinOOMs; v.set && (v.v < 1 || v.v > maxMinOOMs) {
		ps.at(v.at, fmt.Sprintf("use 1 to %d", maxMinOOMs), "min_ooms %d is out of range", v.v)
	}
	if l := s.Ladder; l.set {
		if len(l.v) == 0 {
			ps.at(l.at, "name at least one rung: "+rungList, "empty ladder")
		}
		b.checkRungs(l)
	}
	b.checkRungs(s.StopUnitLadder)
	if v := s.ResetAdj.Value; v.set && (v.v < -999 || v.v > 1000) {
		ps.at(v.at, "use -999 to 1000 (0, the kernel's default, is usual; -1000 would keep the task unkillable)", "reset value %d is out of range", v.v)
	}
	if v := s.ResetAdj.MaxTasks; v.set && (v.v < 1 || v.v > maxMaxTasks) {
		ps.at(v.at, fmt.Sprintf("use 1 to %d", maxMaxTasks), "max_tasks %d is out of range", v.v)
	}
	for _, l := range []strList{s.Exempt.Comm, s.Exempt.Cmdline, s.Exempt.Cgroup} {
		for i, g := range l.v {
			if _, err := path.Match(g, ""); err != nil || g == "" {
				ps.at(l.ats[i], `fix the pattern: * matches any run of characters but "/", ? one, [a-z] one of a class; write \[ for a literal [`, "bad pattern %s", quoteBounded(g))
			}
		}
	}
	rl := s.RaiseLimit
	if v := rl.Step; v.set && v.v.Percent <= 0 && v.v.Bytes == 0 {
		ps.at(v.at, "use more than 0, such as 10% or 256M", "raise step is zero")
	}
	if v := rl.Ceiling; v.set {
		switch {
		case v.v.Percent > 0 && v.v.Percent <= 100:
			ps.at(v.at, "use more than 100%, such as 200%, or a size such as 4G", "%v%% is not above the original limit", v.v.Percent)
		case v.v.Percent <= 0 && v.v.Bytes == 0:
			ps.at(v.at, "use more than 100%, such as 200%, or a size such as 4G", "ceiling is zero")
		}
	}
	if v := rl.RevertMargin; v.set && v.v.Percent >= 100 {
		ps.at(v.at, "use less than 100%, such as 10%", "revert margin %v%% would never let usage fall below it", v.v.Percent)
	}
	if v := s.Kill.Mode; v.set && v.v != policy.KillLargest && v.v != policy.KillCgroup {
		ps.at(v.at, "use largest (the largest task) or cgroup (every task)", "unknown kill mode %s", quoteBounded(v.v))
	}
	if v := s.Paused.Action; v.set && v.v != "" && v.v != policy.RaiseLimit && v.v != policy.Kill {
		ps.at(v.at, `use "" (report only), raise-limit or kill`, "unknown paused action %s", quoteBounded(v.v))
	}
}

// checkRungs checks that every rung of a ladder is known and named once.
func (b *builder) checkRungs(l strList) {
	seen := map[string]bool{}
	for i, r := range l.v {
		switch {
		case !slices.Contains(policy.Rungs, r):
			b.ps.at(l.ats[i], "use "+rungList, "unknown ladder rung %s", quoteBounded(r))
		case seen[r]:
			b.ps.at(l.ats[i], "name each rung once", "ladder rung %s appears twice", quoteBounded(r))
		}
		seen[r] = true
	}
}

const (
	rungList  = "reset-adj, raise-limit, freeze, kill"
	maxWindow = time.Hour // watchdog.Params.Validate's bound
)

// checkResolved checks what only the combination of one scope with what it
// inherits can break, then runs the owners' own validation; it runs only on
// a scope whose values passed checkSettings, so a problem already pinned on
// its line is not reported twice. Problems that
// cannot be pinned on one value point at def (the rule, or the file's
// start).
func (b *builder) checkResolved(s settings, d *SettingsDoc, def pos) {
	o := s.pol
	if o.QuietFor >= o.VerifyTimeout {
		at := def
		switch {
		case d.Verify.Quiet.set:
			at = d.Verify.Quiet.at
		case d.Verify.Timeout.set:
			at = d.Verify.Timeout.at
		}
		b.ps.at(at, "make verify.quiet shorter than verify.timeout", "quiet period %v is not shorter than the verify timeout %v", o.QuietFor, o.VerifyTimeout)
		return
	}
	if err := s.det.Validate(); err != nil {
		b.ps.at(def, "fix the detector settings", "%v", err)
	}
	if err := validatePolicy(o); err != nil {
		b.ps.at(def, "fix the setting named", "%v", err)
	}
}

// validatePolicy runs policy.Options.Validate. Validate may not know every
// rung of policy.Rungs yet (it learns raise-limit and kill with their
// actions): such rungs, refused by Validate on otherwise default options,
// are taken out of the ladder for that check, so every other check still runs, and it runs
// whole as soon as Validate knows them.
func validatePolicy(o policy.Options) error {
	err := o.Validate()
	if err == nil {
		return nil
	}
	var known []string
	for _, r := range o.Ladder {
		probe := policy.DefaultOptions()
		probe.Ladder = []string{r}
		if !slices.Contains(policy.Rungs, r) || probe.Validate() == nil {
			known = append(known, r)
		}
	}
	if len(known) == len(o.Ladder) {
		return err
	}
	if len(known) == 0 {
		known = []string{policy.ResetAdj}
	}
	o.Ladder = known
	return o.Validate()
}

// apply returns base with what d sets.
func apply(base settings, d *SettingsDoc) settings {
	s := settings{det: base.det, pol: clonePolicy(base.pol)}
	if d.DryRun.set {
		s.pol.DryRun = d.DryRun.v
	}
	if v := d.Detector.Window; v.set {
		s.det.Window = v.v
	}
	if v := d.Detector.MinOOMs; v.set && v.v > 0 {
		s.det.MinOOMs = uint64(v.v)
	}
	if d.Ladder.set {
		s.pol.Ladder = slices.Clone(d.Ladder.v)
	}
	setList(&s.pol.StopUnitLadder, d.StopUnitLadder)
	if v := d.ResetAdj.Value; v.set {
		s.pol.ResetTo = int(v.v)
	}
	if v := d.ResetAdj.MaxTasks; v.set {
		s.pol.MaxResets = int(v.v)
	}
	setList(&s.pol.ExemptComm, d.Exempt.Comm)
	setList(&s.pol.ExemptCmdline, d.Exempt.Cmdline)
	setList(&s.pol.ExemptCgroup, d.Exempt.Cgroup)
	if v := d.RaiseLimit.Step; v.set {
		s.pol.RaiseStep = v.v
	}
	if v := d.RaiseLimit.Ceiling; v.set {
		s.pol.RaiseCeiling = v.v
	}
	if v := d.RaiseLimit.RevertMargin; v.set {
		s.pol.RevertMargin = v.v
	}
	if v := d.RaiseLimit.RevertHold; v.set {
		s.pol.RevertHold = v.v
	}
	if v := d.Freeze.Timeout; v.set {
		s.pol.FreezeTimeout = v.v
	}
	if v := d.Kill.Mode; v.set {
		s.pol.KillMode = v.v
	}
	if v := d.Verify.Timeout; v.set {
		s.pol.VerifyTimeout = v.v
	}
	if v := d.Verify.Quiet; v.set {
		s.pol.QuietFor = v.v
	}
	if v := d.Paused.Action; v.set {
		s.pol.PausedAction = v.v
	}
	return s
}

// setList replaces a list when set; an empty list is nil, as in the
// built-in defaults.
func setList(dst *[]string, l strList) {
	if !l.set {
		return
	}
	if len(l.v) == 0 {
		*dst = nil
		return
	}
	*dst = slices.Clone(l.v)
}

func checkListen(s string) error {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("not host:port")
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || port == "" || p > 65535 {
		return fmt.Errorf("port %s is not a number from 0 to 65535", quoteBounded(port))
	}
	return nil
}
