package config

import (
	"errors"
	"fmt"
	"reflect"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"

	"github.com/oomwatch/oomwatch/alert"
	"github.com/oomwatch/oomwatch/internal/rootowned"
)

const alertsHint = "README's Alerts section describes every sink and key"

// alerts decodes and validates the alerts section into c. Its problems are
// positioned like every other, but show no excerpt and no value from the
// file: the lines of this section hold tokens, keys and URLs with
// credentials.
func (b *builder) alerts(c *Config, n ast.Node) {
	switch scalar(n).(type) {
	case *ast.MappingNode, *ast.MappingValueNode:
	default:
		b.add(posOf(n).problem("write a mapping, or {} for none", "want a mapping, found %s", describe(n)))
		return
	}
	before := b.ps.count()
	d := &decoder{ps: b.ps, file: b.file, secret: true}
	var ac alert.Config
	d.decode(n, reflect.ValueOf(&ac).Elem())
	if b.ps.count() != before {
		return // a value that did not decode would be validated as its zero
	}
	b.alertErrors(ac.Validate())
	if b.checkFiles {
		b.alertErrors(ac.CheckFiles(b.owner))
	}
	c.alerts = ac
}

func (b *builder) add(p *Problem) { b.ps.add(p) }

// alertErrors positions the alert package's errors: each *alert.FieldError
// at its key (or its sink when the key is not written, such as a missing
// url), anything else at the section.
func (b *builder) alertErrors(err error) {
	for _, e := range flatten(err) {
		var fe *alert.FieldError
		if !errors.As(e, &fe) {
			at := b.nodePos("$.alerts")
			at.path = "alerts"
			b.addSecret(at.problem(alertsHint, "%v", e))
			continue
		}
		sink := fmt.Sprintf("$.alerts.%s[%d]", fe.Kind, fe.Index)
		at, ok := b.find(sink + "." + fe.Field)
		if !ok || fe.Field == "" {
			at = b.nodePos(sink)
		}
		at.path = fmt.Sprintf("alerts.%s[%d] (%s)", fe.Kind, fe.Index, fe.Name)
		var re *rootowned.Error
		if errors.As(fe.Err, &re) {
			// A file the sink reads or runs: its own fix (chmod, chown).
			field, _, _ := strings.Cut(fe.Err.Error(), ":")
			b.addSecret(at.problem(re.Hint, "%s: %s: %s", field, re.Path, re.Msg))
			continue
		}
		b.addSecret(at.problem(alertsHint, "%v", fe.Err))
	}
}

func (b *builder) addSecret(p *Problem) {
	b.ps.add(p)
	p.Source = ""
}

// flatten lists the errors errors.Join joined.
func flatten(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}

// find is nodePos for a path that may not be in the file.
func (b *builder) find(p string) (pos, bool) {
	yp, err := yaml.PathString(p)
	if err != nil {
		return pos{}, false
	}
	n, err := yp.FilterFile(b.file)
	if err != nil || n == nil {
		return pos{}, false
	}
	return posOf(n), true
}
