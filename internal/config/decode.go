package config

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/token"
)

// decoder fills a document struct from the file's syntax tree one key at a
// time, so that every problem of a file is reported in one go: goccy's
// decoder stops at the first. The structure (mappings, lists, keys) is
// walked here; each leaf is decoded on its own, by its UnmarshalYAML (this
// package's value types) or by goccy (the alerts section's plain Go types),
// and a leaf that fails is recorded and left unset.
type decoder struct {
	ps   *problems
	file *ast.File
	// secret: the alerts section, whose lines hold tokens and keys. Its
	// problems show no excerpt and no value from the file.
	secret bool
}

var (
	nodeType     = reflect.TypeFor[ast.Node]()
	durationType = reflect.TypeFor[time.Duration]()
)

// nodeUnmarshaler is what this package's leaves implement.
type nodeUnmarshaler interface{ UnmarshalYAML(ast.Node) error }

func (d *decoder) decode(n ast.Node, v reflect.Value) {
	if n == nil {
		return
	}
	if _, null := scalar(n).(*ast.NullNode); null {
		return // "key:" with no value: not set here
	}
	switch {
	case v.Type() == nodeType:
		v.Set(reflect.ValueOf(n))
	case v.Addr().Type().Implements(reflect.TypeFor[nodeUnmarshaler]()):
		d.leaf(n, v)
	case v.Kind() == reflect.Struct:
		d.mapping(n, v)
	case v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.Struct:
		d.list(n, v)
	default:
		d.leaf(n, v)
	}
}

// leaf decodes one value, recording its problem.
func (d *decoder) leaf(n ast.Node, v reflect.Value) {
	var err error
	if u, ok := v.Addr().Interface().(nodeUnmarshaler); ok {
		err = u.UnmarshalYAML(n)
	} else {
		err = yaml.NodeToValue(n, v.Addr().Interface(), yaml.Strict())
	}
	if err == nil {
		return
	}
	var p *Problem
	if errors.As(err, &p) {
		d.add(p)
		return
	}
	// goccy's own errors for plain Go types: said again in our words, at
	// the value, without echoing it (it may be a secret).
	at := posOf(n)
	switch t := v.Type(); {
	case t == durationType:
		d.add(at.problem("write a number with a unit: 500ms, 10s, 5m", "want a duration, found %s", d.describe(n)))
	case t.Kind() == reflect.Bool:
		d.add(at.problem("write true or false", "want true or false, found %s", d.describe(n)))
	case t.Kind() == reflect.Int:
		d.add(at.problem("write a whole number, such as 3", "want a whole number, found %s", d.describe(n)))
	case t.Kind() == reflect.String:
		d.add(at.problem(`write a string; quote it ("...") if it looks like a number`, "want a string, found %s", d.describe(n)))
	case t.Kind() == reflect.Slice:
		d.add(at.problem(`write a list: [a, b] or one "- item" per line`, "want a list of %s, found %s", kindName(t.Elem()), d.describe(n)))
	case t.Kind() == reflect.Map:
		d.add(at.problem("write name: value pairs", "want a mapping of %s, found %s", kindName(t.Elem()), d.describe(n)))
	default:
		d.add(at.problem("fix the value here", "cannot read this value"))
	}
}

func kindName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "strings"
	case reflect.Int:
		return "whole numbers"
	}
	return t.Kind().String()
}

// kindOf names the YAML kind of n: "a string", "a list".
func kindOf(n ast.Node) string { return article(scalar(n).Type().YAMLName()) }

// describe is describe, but in the alerts section a string is never
// quoted back.
func (d *decoder) describe(n ast.Node) string {
	if d.secret {
		switch scalar(n).(type) {
		case *ast.StringNode, *ast.LiteralNode:
			return "a string"
		case *ast.IntegerNode, *ast.FloatNode:
			return "a number"
		case *ast.BoolNode:
			return "true or false"
		}
	}
	return describe(n)
}

func (d *decoder) add(p *Problem) {
	d.ps.add(p)
	if d.secret {
		p.Source = ""
	}
}

// mapping decodes a mapping into the struct v, key by key.
func (d *decoder) mapping(n ast.Node, v reflect.Value) {
	var kvs []*ast.MappingValueNode
	switch m := scalar(n).(type) {
	case *ast.MappingNode:
		kvs = m.Values
	case *ast.MappingValueNode:
		kvs = []*ast.MappingValueNode{m}
	default:
		at := posOf(n)
		if at.path == "" {
			d.add(at.problem("start from oomwatch config --defaults", "the file must be a mapping of keys, found %s", kindOf(n)))
			return
		}
		d.add(at.problem("write key: value pairs as in oomwatch config --defaults", "want a mapping (key: value lines), found %s", kindOf(n)))
		return
	}
	fields := fieldsOf(v.Type())
	seen := map[string]*token.Token{}
	for _, kv := range kvs {
		tk := kv.Key.GetToken()
		at := pos{path: parentKeyPath(kv)}
		if tk != nil && tk.Position != nil {
			at.line, at.col = tk.Position.Line, tk.Position.Column
		}
		key, ok := stringOf(kv.Key)
		if !ok {
			d.add(at.problem("write a plain name as the key", "a key must be a name, found %s", d.describe(kv.Key)))
			continue
		}
		if first, dup := seen[key]; dup {
			where := ""
			if first != nil && first.Position != nil {
				where = fmt.Sprintf(" (first at line %d, column %d)", first.Position.Line, first.Position.Column)
			}
			d.add(at.problem("keep only one of them", "duplicate key %s%s", quoteBounded(key), where))
			continue
		}
		seen[key] = tk
		idx, ok := fields[key]
		if !ok {
			d.add(unknownKey(at, key, fields, d.secret))
			continue
		}
		d.decode(kv.Value, v.FieldByIndex(idx))
	}
}

// list decodes a sequence into the slice of structs v, item by item.
func (d *decoder) list(n ast.Node, v reflect.Value) {
	seq, ok := scalar(n).(*ast.SequenceNode)
	if !ok {
		d.add(posOf(n).problem(`write a list: [a, b] or one "- item" per line`, "want a list, found %s", kindOf(n)))
		return
	}
	out := reflect.MakeSlice(v.Type(), len(seq.Values), len(seq.Values))
	for i, item := range seq.Values {
		d.decode(item, out.Index(i))
	}
	v.Set(out)
}

// parentKeyPath is the key path of the mapping that holds kv.
func parentKeyPath(kv *ast.MappingValueNode) string {
	p := keyPath(kv.Key.GetPath())
	if i := strings.LastIndexAny(p, ".["); i >= 0 {
		return p[:i]
	}
	return ""
}

// fieldsOf maps the YAML keys of struct t (inline structs included) to
// their fields.
func fieldsOf(t reflect.Type) map[string][]int {
	m := map[string][]int{}
	var walk func(t reflect.Type, prefix []int)
	walk = func(t reflect.Type, prefix []int) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			idx := append(append([]int(nil), prefix...), i)
			if opts == "inline" {
				walk(f.Type, idx)
				continue
			}
			if name == "" || name == "-" || !f.IsExported() {
				continue
			}
			m[name] = idx
		}
	}
	walk(t, nil)
	return m
}

// unknownKey words a key that is not in the mapping's fields.
func unknownKey(at pos, key string, fields map[string][]int, secret bool) *Problem {
	listed := "every key is listed by oomwatch config --defaults"
	if secret {
		listed = "README's Alerts section lists every key of each sink"
	}
	hint := "remove it or fix its spelling; " + listed
	best, bestD := "", 3
	for k := range fields {
		if dist := editDistance(strings.ToLower(key), k); dist < bestD || dist == bestD && k < best {
			best, bestD = k, dist
		}
	}
	switch {
	case best != "":
		hint = fmt.Sprintf("did you mean %q? %s", best, listed)
	case !secret && suggest(key) == key:
		// A real key in the wrong place (a top-level key inside a rule,
		// a rule key at the top): "did you mean" itself helps no one.
		hint = fmt.Sprintf("%q is not valid here: move it to where oomwatch config --defaults shows it", key)
	}
	return at.problem(hint, "unknown key %s", quoteBounded(key))
}
