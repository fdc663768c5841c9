package config

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"
)

// maxGlobLen bounds a pattern; cgroup paths are at most PATH_MAX anyway.
const maxGlobLen = 1024

// glob matches cgroup paths and names. Syntax:
//
//   - any run of characters except "/"
//     **      any run of characters, "/" included; "/**" at the end also
//     matches nothing (so "/lxc.payload.web1/**" matches the cgroup
//     itself and everything below it), "**/" at the start and "/**/"
//     in the middle also match no directories
//     ?       one character except "/"
//     [abc] [a-z] [!a-z] [^a-z]   one character of (or not of) a class, never "/"
//     \x      the character x itself
//
// Patterns compile to an anchored RE2 regular expression, so matching is
// linear in the input whatever the pattern.
type glob struct {
	pattern string
	re      *regexp.Regexp
}

func (g *glob) match(s string) bool { return g.re.MatchString(s) }

func compileGlob(p string) (*glob, error) {
	if p == "" {
		return nil, errors.New("empty pattern matches nothing")
	}
	if len(p) > maxGlobLen {
		return nil, fmt.Errorf("pattern longer than %d bytes", maxGlobLen)
	}
	if !utf8.ValidString(p) {
		return nil, errors.New("pattern is not valid UTF-8")
	}
	var re strings.Builder
	re.WriteString(`^(?s:`)
	for i := 0; i < len(p); {
		c := p[i]
		switch {
		case c == '*' && i+1 < len(p) && p[i+1] == '*':
			atStart := i == 0
			slashBefore := i > 0 && p[i-1] == '/'
			end := i + 2
			for end < len(p) && p[end] == '*' {
				end++ // "***" is "**"
			}
			slashAfter := end < len(p) && p[end] == '/'
			switch {
			case slashBefore && end == len(p):
				// "/**" at the end: the "/" was written already; undo it
				// so "a/**" matches "a" too.
				s := re.String()
				re.Reset()
				re.WriteString(strings.TrimSuffix(s, "/"))
				re.WriteString(`(?:/.*)?`)
			case (atStart || slashBefore) && slashAfter:
				re.WriteString(`(?:.*/)?`)
				end++ // the "/" is part of the optional group
			default:
				re.WriteString(`.*`)
			}
			i = end
		case c == '*':
			re.WriteString(`[^/]*`)
			i++
		case c == '?':
			re.WriteString(`[^/]`)
			i++
		case c == '[':
			cls, n, err := globClass(p[i:])
			if err != nil {
				return nil, err
			}
			re.WriteString(cls)
			i += n
		case c == '\\':
			if i+1 >= len(p) {
				return nil, errors.New(`pattern ends with a lone "\"`)
			}
			r, size := utf8.DecodeRuneInString(p[i+1:])
			re.WriteString(regexp.QuoteMeta(string(r)))
			i += 1 + size
		default:
			r, size := utf8.DecodeRuneInString(p[i:])
			re.WriteString(regexp.QuoteMeta(string(r)))
			i += size
		}
	}
	re.WriteString(`)$`)
	compiled, err := regexp.Compile(re.String())
	if err != nil {
		return nil, fmt.Errorf("pattern cannot be compiled: %w", err)
	}
	return &glob{pattern: p, re: compiled}, nil
}

// globClass translates the class at the start of p ("[...]") and returns
// how many bytes it used. A class never matches "/", like "*" and "?":
// negated classes exclude it, positive ones may not name it. Every character is written as \x{…}, so nothing
// in the class can mean anything to the regexp engine but itself.
func globClass(p string) (string, int, error) {
	i := 1
	negate := false
	if i < len(p) && (p[i] == '!' || p[i] == '^') {
		negate = true
		i++
	}
	var b strings.Builder
	b.WriteString("[")
	if negate {
		b.WriteString(`^/`)
	}
	items := 0
	for {
		if i >= len(p) {
			return "", 0, errors.New(`unclosed "[" in pattern: close the class with "]" or write \[ for a literal [`)
		}
		if p[i] == ']' && items > 0 {
			i++
			break
		}
		lo, n, err := classChar(p[i:])
		if err != nil {
			return "", 0, err
		}
		i += n
		hi := lo
		if i+1 < len(p) && p[i] == '-' && p[i+1] != ']' {
			hi, n, err = classChar(p[i+1:])
			if err != nil {
				return "", 0, err
			}
			if hi < lo {
				return "", 0, fmt.Errorf("bad range %q-%q in pattern", lo, hi)
			}
			i += 1 + n
		}
		if !negate && lo <= '/' && '/' <= hi {
			return "", 0, errors.New(`a "[...]" class cannot match "/": write the "/" outside the class`)
		}
		fmt.Fprintf(&b, `\x{%x}`, lo)
		if hi != lo {
			fmt.Fprintf(&b, `-\x{%x}`, hi)
		}
		items++
	}
	b.WriteString("]")
	return b.String(), i, nil
}

func classChar(p string) (rune, int, error) {
	if p[0] == '\\' {
		if len(p) < 2 {
			return 0, 0, errors.New(`unclosed "[" in pattern: close the class with "]" or write \[ for a literal [`)
		}
		r, size := utf8.DecodeRuneInString(p[1:])
		return r, 1 + size, nil
	}
	r, size := utf8.DecodeRuneInString(p)
	return r, size, nil
}

// Matcher compiles p in the syntax of the config's cgroup globs (see glob)
// for other users of it, such as the status socket's cgroup filter.
func Matcher(p string) (func(string) bool, error) {
	g, err := compileGlob(p)
	if err != nil {
		return nil, err
	}
	return g.match, nil
}
