package config

import (
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/goccy/go-yaml/ast"

	"github.com/oomwatch/oomwatch/policy"
)

// The file as written. Every leaf is a value type that remembers whether it
// was set and where, so rules override only what they set and every
// semantic error points at its line. goccy decodes the structure (unknown
// keys, duplicate keys, mapping vs list); the leaves decode themselves from
// the AST node so type errors are in our words.

type fileDoc struct {
	SettingsDoc   `yaml:",inline"`
	MaxCgroups    intVal     `yaml:"max_cgroups"`
	MaxPerSubtree intVal     `yaml:"max_per_subtree"`
	StateDir      strVal     `yaml:"state_dir"`
	Safety        safetyDoc  `yaml:"safety"`
	Rules         []ruleDoc  `yaml:"rules"`
	Alerts        ast.Node   `yaml:"alerts"`
	Metrics       metricsDoc `yaml:"metrics"`
}

// SettingsDoc is what both the top level and a rule may set.
type SettingsDoc struct {
	DryRun   boolVal     `yaml:"dry_run"`
	Detector detectorDoc `yaml:"detector"`
	Ladder   strList     `yaml:"ladder"`
	// StopUnitLadder: the ladder for systemd units with OOMPolicy=stop.
	StopUnitLadder strList       `yaml:"oom_policy_stop_ladder"`
	ResetAdj       resetAdjDoc   `yaml:"reset_adj"`
	Exempt         exemptDoc     `yaml:"exempt"`
	RaiseLimit     raiseLimitDoc `yaml:"raise_limit"`
	Freeze         freezeDoc     `yaml:"freeze"`
	Kill           killDoc       `yaml:"kill"`
	Verify         verifyDoc     `yaml:"verify"`
	Paused         pausedDoc     `yaml:"paused"`
}

type ruleDoc struct {
	Name        strVal   `yaml:"name"`
	Match       matchDoc `yaml:"match"`
	SettingsDoc `yaml:",inline"`
	Cooldown    durVal `yaml:"cooldown"`
}

type matchDoc struct {
	Cgroup    strVal `yaml:"cgroup"`
	Container strVal `yaml:"container"`
	Unit      strVal `yaml:"unit"`
}

type detectorDoc struct {
	Window  durVal `yaml:"window"`
	MinOOMs intVal `yaml:"min_ooms"`
}

type resetAdjDoc struct {
	Value    intVal `yaml:"value"`
	MaxTasks intVal `yaml:"max_tasks"`
}

type exemptDoc struct {
	Comm    strList `yaml:"comm"`
	Cmdline strList `yaml:"cmdline"`
	Cgroup  strList `yaml:"cgroup"`
}

type raiseLimitDoc struct {
	Step         amountVal `yaml:"step"`
	Ceiling      amountVal `yaml:"ceiling"`
	RevertMargin amountVal `yaml:"revert_margin"`
	RevertHold   durVal    `yaml:"revert_hold"`
}

type freezeDoc struct {
	Timeout durVal `yaml:"timeout"`
}

type killDoc struct {
	Mode strVal `yaml:"mode"`
}

type verifyDoc struct {
	Timeout durVal `yaml:"timeout"`
	Quiet   durVal `yaml:"quiet"`
}

type pausedDoc struct {
	Action strVal `yaml:"action"`
}

type safetyDoc struct {
	Cooldown            durVal `yaml:"cooldown"`
	MaxActionsPerMinute intVal `yaml:"max_actions_per_minute"`
}

type metricsDoc struct {
	Listen strVal `yaml:"listen"`
}

// A key with no value ("dry_run:") is null: goccy leaves the leaf unset, so
// null means "not set here" (the default, or the top level for a rule).

// scalar unwraps a tag ("!!str x") to the value node.
func scalar(n ast.Node) ast.Node {
	for {
		t, ok := n.(*ast.TagNode)
		if !ok || t.Value == nil {
			return n
		}
		n = t.Value
	}
}

// describe names a node for "found …" in messages, bounded.
func describe(n ast.Node) string {
	switch n := scalar(n).(type) {
	case *ast.MappingNode, *ast.MappingValueNode:
		return "a mapping"
	case *ast.SequenceNode:
		return "a list"
	case *ast.NullNode:
		return "nothing"
	case *ast.StringNode:
		return quoteBounded(n.Value)
	default:
		tk := n.GetToken()
		if tk == nil {
			return "nothing"
		}
		return quoteBounded(tk.Value)
	}
}

func quoteBounded(s string) string {
	const max = 40
	if len(s) > max {
		s = s[:max] + "…"
	}
	return strconv.Quote(s)
}

type boolVal struct {
	v   bool
	set bool
	at  pos
}

func (b *boolVal) UnmarshalYAML(n ast.Node) error {
	b.at = posOf(n)
	bn, ok := scalar(n).(*ast.BoolNode)
	if !ok {
		return b.at.problem("write true or false", "want true or false, found %s", describe(n))
	}
	b.v, b.set = bn.Value, true
	return nil
}

type intVal struct {
	v   int64
	set bool
	at  pos
}

func (i *intVal) UnmarshalYAML(n ast.Node) error {
	i.at = posOf(n)
	in, ok := scalar(n).(*ast.IntegerNode)
	if ok {
		switch v := in.Value.(type) {
		case int64:
			i.v, i.set = v, true
			return nil
		case uint64:
			if v <= math.MaxInt64 {
				i.v, i.set = int64(v), true
				return nil
			}
		}
		return i.at.problem("use a smaller number", "%s is too large", describe(n))
	}
	return i.at.problem("write a whole number, such as 3", "want a whole number, found %s", describe(n))
}

type strVal struct {
	v   string
	set bool
	at  pos
}

func (s *strVal) UnmarshalYAML(n ast.Node) error {
	s.at = posOf(n)
	v, ok := stringOf(n)
	if !ok {
		return s.at.problem(`write a string; quote it ("...") if it looks like a number or starts with *`, "want a string, found %s", describe(n))
	}
	s.v, s.set = v, true
	return nil
}

func stringOf(n ast.Node) (string, bool) {
	switch n := scalar(n).(type) {
	case *ast.StringNode:
		return n.Value, true
	case *ast.LiteralNode:
		if n.Value != nil {
			return n.Value.Value, true
		}
	}
	return "", false
}

const durationHint = "write a positive number with a unit: 300ms, 5s, 5m"

type durVal struct {
	v   time.Duration
	set bool
	at  pos
}

func (d *durVal) UnmarshalYAML(n ast.Node) error {
	d.at = posOf(n)
	s, ok := stringOf(n)
	if !ok {
		if _, isInt := scalar(n).(*ast.IntegerNode); isInt {
			return d.at.problem("add a unit: 300ms, 5s, 5m", "want a duration, found the bare number %s", describe(n))
		}
		return d.at.problem(durationHint, "want a duration, found %s", describe(n))
	}
	v, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return d.at.problem(durationHint, "want a duration, found %s", describe(n))
	}
	if v <= 0 {
		return d.at.problem(durationHint, "duration %s is not positive", describe(n))
	}
	d.v, d.set = v, true
	return nil
}

const amountHint = "write a percentage of the original limit (10%) or a size in bytes with an optional K, M, G, T suffix (256M, 1Gi)"

type amountVal struct {
	v   policy.Amount
	set bool
	at  pos
}

func (a *amountVal) UnmarshalYAML(n ast.Node) error {
	a.at = posOf(n)
	var s string
	switch v := scalar(n).(type) {
	case *ast.IntegerNode:
		s = v.GetToken().Value
	default:
		var ok bool
		if s, ok = stringOf(n); !ok {
			return a.at.problem(amountHint, "want a percentage or a size, found %s", describe(n))
		}
	}
	v, err := parseAmount(s)
	if err != nil {
		return a.at.problem(amountHint, "%s: %v", describe(n), err)
	}
	a.v, a.set = v, true
	return nil
}

// maxPercent bounds percentages: 100 times the original limit is already
// far beyond any sane ceiling, and it keeps Amount.Of from overflowing.
const maxPercent = 10000

// sizeUnits are binary, as in the kernel's memparse (memory.max,
// memory.limit_in_bytes), systemd's MemoryMax= and LXC: "512M" means MiB
// everywhere an operator has written a memory limit before. "Mi" is the
// same unit, spelled explicitly.
var sizeUnits = map[string]uint64{
	"":  1,
	"k": 1 << 10, "ki": 1 << 10,
	"m": 1 << 20, "mi": 1 << 20,
	"g": 1 << 30, "gi": 1 << 30,
	"t": 1 << 40, "ti": 1 << 40,
}

// parseAmount reads "10%", "12.5%", "4096", "256M", "1.5Gi".
func parseAmount(s string) (policy.Amount, error) {
	if num, ok := strings.CutSuffix(s, "%"); ok {
		f, err := strconv.ParseFloat(num, 64)
		if err != nil || !isPlainNumber(num) {
			return policy.Amount{}, fmt.Errorf("not a percentage")
		}
		if f > maxPercent {
			return policy.Amount{}, fmt.Errorf("more than %d%%", maxPercent)
		}
		return policy.Amount{Percent: f}, nil
	}
	i := 0
	for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
		i++
	}
	num, unit := s[:i], strings.ToLower(s[i:])
	mult, ok := sizeUnits[unit]
	if !ok || !isPlainNumber(num) {
		return policy.Amount{}, fmt.Errorf("not a percentage or a size")
	}
	if !strings.Contains(num, ".") {
		u, err := strconv.ParseUint(num, 10, 64)
		if err != nil || u > math.MaxUint64/mult {
			return policy.Amount{}, fmt.Errorf("too large")
		}
		return policy.Amount{Bytes: u * mult}, nil
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return policy.Amount{}, fmt.Errorf("not a size")
	}
	b := f * float64(mult)
	if b >= 1<<63 {
		return policy.Amount{}, fmt.Errorf("too large")
	}
	return policy.Amount{Bytes: uint64(b)}, nil
}

// isPlainNumber accepts digits with at most one dot: no sign, exponent,
// hex, NaN or Inf.
func isPlainNumber(s string) bool {
	if s == "" || s == "." {
		return false
	}
	dots := 0
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '.':
			dots++
		case s[i] < '0' || s[i] > '9':
			return false
		}
	}
	return dots <= 1
}

// strList is a list of strings, each with its position.
type strList struct {
	v   []string
	set bool
	at  pos
	ats []pos
}

func (l *strList) UnmarshalYAML(n ast.Node) error {
	l.at = posOf(n)
	seq, ok := scalar(n).(*ast.SequenceNode)
	if !ok {
		return l.at.problem(`write a list: [a, b] or one "- item" per line`, "want a list, found %s", describe(n))
	}
	l.v, l.ats = nil, nil
	for _, item := range seq.Values {
		s, ok := stringOf(item)
		if !ok {
			return posOf(item).problem(`write a string; quote it ("...") if it looks like a number or starts with *`, "want a string, found %s", describe(item))
		}
		l.v = append(l.v, s)
		l.ats = append(l.ats, posOf(item))
	}
	l.set = true
	return nil
}

// knownKeys lists every key of the schema, for "did you mean" hints and
// the test that the defaults file documents every key.
var knownKeys = sync.OnceValue(func() []string {
	var keys []string
	seen := map[reflect.Type]bool{}
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for t.Kind() == reflect.Slice || t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct || seen[t] || t.PkgPath() != reflect.TypeFor[fileDoc]().PkgPath() {
			return
		}
		seen[t] = true
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name != "" {
				keys = append(keys, name)
			}
			walk(f.Type)
		}
	}
	walk(reflect.TypeFor[fileDoc]())
	return sortedUnique(keys)
})
