package config

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/token"
)

// maxProblems bounds how many problems one file reports: the first few are
// what an operator fixes first, and a hostile file cannot make the report
// huge.
const maxProblems = 20

// Problem is one thing wrong with a config file, with where it is and what
// to do about it.
type Problem struct {
	File   string
	Line   int    // 1-based; 0 when the problem is the file as a whole
	Column int    // 1-based
	Msg    string // what is wrong, starting with the key path ("rules[1].ladder[0]: …")
	Hint   string // what to do
	Source string // the offending line of the file, for an excerpt; may be empty

	path string // the key path alone ("rules[1].ladder[0]")
}

// Error formats p as "FILE:LINE:COLUMN: what is wrong — what to do".
func (p *Problem) Error() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", p.Line, p.Column)
	}
	b.WriteString(": ")
	b.WriteString(p.Msg)
	if p.Hint != "" {
		b.WriteString(" — ")
		b.WriteString(p.Hint)
	}
	return b.String()
}

// Excerpt returns the offending line with a caret under the column, or ""
// when there is no source line.
func (p *Problem) Excerpt() string {
	if p.Line <= 0 || p.Source == "" {
		return ""
	}
	num := fmt.Sprintf("%d", p.Line)
	pad := strings.Repeat(" ", len(num))
	// Keep tabs in the caret line so the caret sits under the column.
	var caret strings.Builder
	col := 1
	for _, r := range p.Source {
		if col >= p.Column {
			break
		}
		if r == '\t' {
			caret.WriteRune('\t')
		} else {
			caret.WriteRune(' ')
		}
		col++
	}
	return fmt.Sprintf("  %s | %s\n  %s | %s^", num, p.Source, pad, caret.String())
}

// Error is every problem found in one config file. Nothing of a file that
// has problems is ever used.
type Error struct {
	Problems []*Problem
	More     int // problems found beyond the ones listed
}

func (e *Error) Error() string {
	lines := make([]string, 0, len(e.Problems)+1)
	for _, p := range e.Problems {
		lines = append(lines, p.Error())
	}
	if e.More > 0 {
		lines = append(lines, fmt.Sprintf("… and %d more problems", e.More))
	}
	return strings.Join(lines, "\n")
}

// problems collects the problems of one file.
type problems struct {
	file  string
	lines []string
	list  []*Problem
	more  int
}

func newProblems(file string, src []byte) *problems {
	return &problems{file: file, lines: strings.Split(string(src), "\n")}
}

func (ps *problems) add(p *Problem) {
	if len(ps.list) >= maxProblems {
		ps.more++
		return
	}
	p.File = ps.file
	if p.Line > 0 && p.Line <= len(ps.lines) {
		p.Source = excerptLine(ps.lines[p.Line-1])
	}
	ps.list = append(ps.list, p)
}

func (ps *problems) count() int { return len(ps.list) + ps.more }

// within counts the problems listed under a key path: the path itself
// and everything below it ("rules[1]" counts "rules[1].ladder[0]").
func (ps *problems) within(path string) int {
	n := 0
	for _, p := range ps.list {
		if rest, ok := strings.CutPrefix(p.path, path); ok && (rest == "" || rest[0] == '.' || rest[0] == '[') {
			n++
		}
	}
	return n
}

// outside counts the problems listed under none of the key paths given.
func (ps *problems) outside(paths ...string) int {
	n := len(ps.list)
	for _, p := range paths {
		n -= ps.within(p)
	}
	return n
}

func (ps *problems) at(a pos, hint, format string, args ...any) {
	ps.add(a.problem(hint, format, args...))
}

func (ps *problems) err() error {
	if len(ps.list) == 0 {
		return nil
	}
	ps.sort()
	return &Error{Problems: ps.list, More: ps.more}
}

// sort puts the problems in file order, as an operator reads them.
func (ps *problems) sort() {
	sort.SliceStable(ps.list, func(i, j int) bool {
		a, b := ps.list[i], ps.list[j]
		return a.Line < b.Line || a.Line == b.Line && a.Column < b.Column
	})
}

// excerptLine bounds a source line shown back to the operator.
func excerptLine(s string) string {
	s = strings.TrimRight(s, "\r")
	const max = 160
	if len(s) > max {
		s = s[:max] + "…"
	}
	return strings.ToValidUTF8(s, "?")
}

// pos is where a value sits in the file, and its key path.
type pos struct {
	line, col int
	path      string // "rules[1].ladder[0]"
}

func posOf(n ast.Node) pos {
	p := pos{path: keyPath(n.GetPath())}
	// A block mapping's token is its first ":"; point at its first key.
	for {
		if m, ok := n.(*ast.MappingNode); ok && !m.IsFlowStyle && len(m.Values) > 0 {
			n = m.Values[0]
			continue
		}
		if mv, ok := n.(*ast.MappingValueNode); ok && mv.Key != nil {
			n = mv.Key
			continue
		}
		break
	}
	if tk := n.GetToken(); tk != nil && tk.Position != nil {
		p.line, p.col = tk.Position.Line, tk.Position.Column
	}
	return p
}

func (a pos) problem(hint, format string, args ...any) *Problem {
	msg := fmt.Sprintf(format, args...)
	if a.path != "" {
		msg = a.path + ": " + msg
	}
	return &Problem{Line: a.line, Column: a.col, Msg: msg, Hint: hint, path: a.path}
}

// keyPath turns goccy's "$.rules[1].ladder" into "rules[1].ladder".
func keyPath(p string) string {
	p = strings.TrimPrefix(p, "$")
	return strings.TrimPrefix(p, ".")
}

// fromYAML turns an error of the YAML parser or decoder into a Problem with
// the position goccy reports and a message in our words.
func fromYAML(f *ast.File, err error) *Problem {
	var p *Problem
	if errors.As(err, &p) {
		return p
	}
	var ye yaml.Error
	if !errors.As(err, &ye) {
		return &Problem{Msg: "cannot read the YAML: " + err.Error(), Hint: "check the file's YAML syntax"}
	}
	tk := ye.GetToken()
	at := pos{}
	if tk != nil && tk.Position != nil {
		at.line, at.col = tk.Position.Line, tk.Position.Column
	}
	msg := ye.GetMessage()
	var unexp *yaml.UnexpectedNodeTypeError
	switch {
	case errors.As(err, &unexp):
		at.path = nodePath(f, tk)
		what, hint := "a mapping (key: value lines)", "write key: value pairs as in oomwatch config --defaults"
		if unexp.Expected == ast.SequenceType {
			what, hint = "a list", "write a list: [a, b] or one \"- item\" per line"
		}
		if at.path == "" {
			return at.problem("start from oomwatch config --defaults", "the file must be a mapping of keys, found %s", article(unexp.Actual.YAMLName()))
		}
		return at.problem(hint, "want %s, found %s", what, article(unexp.Actual.YAMLName()))
	case strings.Contains(msg, "'\t'") || strings.Contains(msg, `\t`):
		return at.problem("indent with spaces: YAML does not allow tabs for indentation", "tab character")
	}
	return at.problem("fix the YAML syntax here", "%s", msg)
}

func article(s string) string {
	switch s {
	case "int":
		return "an integer"
	case "":
		return "nothing"
	}
	if strings.ContainsAny(s[:1], "aeiou") {
		return "an " + s
	}
	return "a " + s
}

// nodePath finds the key path of the node whose token is tk.
func nodePath(f *ast.File, tk *token.Token) string {
	if n := findNode(f, tk); n != nil {
		return keyPath(n.GetPath())
	}
	return ""
}

type finder struct {
	tk    *token.Token
	found ast.Node
}

func (v *finder) Visit(n ast.Node) ast.Visitor {
	if v.found != nil || n == nil {
		return nil
	}
	if mv, ok := n.(*ast.MappingValueNode); ok && mv.Key != nil && mv.Key.GetToken() == v.tk {
		v.found = mv.Key
		return nil
	}
	if n.GetToken() == v.tk {
		if _, ok := n.(*ast.MappingValueNode); !ok {
			v.found = n
			return nil
		}
	}
	return v
}

func findNode(f *ast.File, tk *token.Token) ast.Node {
	if f == nil || tk == nil {
		return nil
	}
	v := &finder{tk: tk}
	for _, d := range f.Docs {
		if d.Body != nil {
			ast.Walk(v, d.Body)
		}
	}
	return v.found
}

// suggest returns the known key closest to an unknown one, if any is close.
func suggest(key string) string {
	best, bestD := "", 3
	for _, k := range knownKeys() {
		if d := editDistance(strings.ToLower(key), k); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance, bounded in cost by the key sizes
// (keys longer than 64 bytes are never close to a known key).
func editDistance(a, b string) int {
	if len(a) > 64 {
		return len(a)
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := prev[j-1]
			if a[i-1] != b[j-1] {
				c++
			}
			cur[j] = min(c, prev[j]+1, cur[j-1]+1)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// sortedUnique is used to list known keys deterministically.
func sortedUnique(in []string) []string {
	sort.Strings(in)
	out := in[:0]
	for i, s := range in {
		if i == 0 || s != in[i-1] {
			out = append(out, s)
		}
	}
	return out
}
