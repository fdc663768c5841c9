package config

import (
	"fmt"
	"reflect"
	"strings"
)

// Warnings are things in a good file that are likely mistakes: rules that
// can never apply or change nothing. The file is used as written;
// check-config prints them and the daemon logs them when it loads the file.
func (c *Config) Warnings() []*Problem { return c.warnings }

// warnRules finds the rules that can never apply or change nothing.
func (b *builder) warnRules(rules []ruleDoc) []*Problem {
	ws := newProblems(b.ps.file, nil)
	ws.lines = b.ps.lines
	type seen struct {
		name string
		line int
	}
	var everything *seen      // the first rule that matches every cgroup
	same := map[string]seen{} // the match of each rule so far → its first rule
	for i := range rules {
		rd := &rules[i]
		at := b.rulePos(i)
		name := quoteBounded(rd.Name.v)
		m := rd.Match
		key := fmt.Sprintf("%t %q %t %q %t %q", m.Cgroup.set, m.Cgroup.v, m.Container.set, m.Container.v, m.Unit.set, m.Unit.v)
		switch first, dup := same[key]; {
		case everything != nil:
			ws.at(at, fmt.Sprintf("move it before rule %s, or give that rule a match", everything.name),
				"rule %s can never apply: rule %s (line %d) before it matches every cgroup", name, everything.name, everything.line)
		case dup:
			ws.at(at, fmt.Sprintf("merge it into rule %s, or change its match", first.name),
				"rule %s can never apply: rule %s (line %d) before it has the same match", name, first.name, first.line)
		default:
			same[key] = seen{name, at.line}
		}
		if !m.Cgroup.set && !m.Container.set && !m.Unit.set && everything == nil {
			everything = &seen{name, at.line}
		}
		if v := m.Cgroup; v.set && v.v != "" && !strings.HasPrefix(v.v, "/") && !strings.HasPrefix(v.v, "*") {
			ws.at(v.at, fmt.Sprintf("cgroup paths start with \"/\": write %s", quoteBounded("/"+v.v)),
				"rule %s matches no cgroup: pattern %s does not start with \"/\"", name, quoteBounded(v.v))
		}
		if !anySet(reflect.ValueOf(rd.SettingsDoc)) && !rd.Cooldown.set {
			ws.at(at, "give it the settings it should change, or remove it",
				"rule %s changes no setting: the cgroups it matches keep the top-level settings, and no later rule applies to them", name)
		}
	}
	ws.sort()
	return ws.list
}

// anySet says whether any leaf value in a document struct was set.
func anySet(v reflect.Value) bool {
	if v.Kind() != reflect.Struct {
		return false
	}
	if f := v.FieldByName("set"); f.IsValid() && f.Kind() == reflect.Bool {
		return f.Bool()
	}
	for i := 0; i < v.NumField(); i++ {
		if anySet(v.Field(i)) {
			return true
		}
	}
	return false
}
