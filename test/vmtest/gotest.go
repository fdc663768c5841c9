package vmtest

import (
	"regexp"
	"strings"
)

// GuestTest is one top-level test reported by a `go test -test.v` binary.
type GuestTest struct {
	Name   string
	Result string // "PASS", "FAIL", "SKIP"; "" if the test started but never reported (crash, timeout)
	Output string // console lines from its === RUN to its --- result (kernel lines included)
}

var (
	runRE    = regexp.MustCompile(`=== RUN\s+(\S+)`)
	resultRE = regexp.MustCompile(`--- (PASS|FAIL|SKIP): (\S+)`)
)

// ParseGoTest splits console output into the top-level guest tests, in order.
// Patterns are matched anywhere in a line: kernel messages may share a line with test output.
func ParseGoTest(out string) []GuestTest {
	var tests []*GuestTest
	byName := map[string]*GuestTest{}
	var cur, lastFailed *GuestTest // lastFailed: a panic's trace comes after "--- FAIL"
	for _, line := range strings.Split(out, "\n") {
		if m := runRE.FindStringSubmatch(line); m != nil && !strings.Contains(m[1], "/") {
			g := &GuestTest{Name: m[1]}
			tests = append(tests, g)
			byName[g.Name] = g
			cur, lastFailed = g, nil
		}
		switch {
		case cur != nil:
			cur.Output += line + "\n"
		case lastFailed != nil:
			lastFailed.Output += line + "\n"
		}
		if m := resultRE.FindStringSubmatch(line); m != nil && !strings.Contains(m[2], "/") {
			if g := byName[m[2]]; g != nil {
				g.Result = m[1]
				if g == cur {
					cur = nil
					if g.Result == "FAIL" {
						lastFailed = g
					}
				}
			}
		}
	}
	res := make([]GuestTest, len(tests))
	for i, g := range tests {
		res[i] = *g
	}
	return res
}
