package config

import (
	"strings"
	"testing"
)

func TestGlobStarStaysInOneElementDoubleStarSpansMany(t *testing.T) {
	tests := []struct {
		pattern string
		match   []string
		nomatch []string
	}{
		{"/system.slice/containerd.service", []string{"/system.slice/containerd.service"}, []string{"/system.slice/containerd.service/x", "/system.slice/containerdXservice"}},
		{"/system.slice/*.service", []string{"/system.slice/a.service", "/system.slice/.service"}, []string{"/system.slice/a/b.service", "/a.service"}},
		{"/lxc.payload.*", []string{"/lxc.payload.web1"}, []string{"/lxc.payload.web1/.lxc", "/lxc.payload"}},
		{"/lxc.payload.web1/**", []string{"/lxc.payload.web1", "/lxc.payload.web1/.lxc", "/lxc.payload.web1/a/b"}, []string{"/lxc.payload.web10", "/lxc.payload.web"}},
		{"**/docker-*.scope", []string{"/system.slice/docker-ab.scope", "docker-ab.scope", "/a/b/docker-x.scope"}, []string{"/system.slice/docker-ab.scope/init.scope"}},
		{"/a/**/z", []string{"/a/z", "/a/b/z", "/a/b/c/z"}, []string{"/az", "/a/b/zz"}},
		{"/a**", []string{"/a", "/ab/c"}, []string{"/b"}},
		{"**", []string{"", "/", "/a/b"}, nil},
		{"/?", []string{"/a"}, []string{"/", "/ab", "//"}},
		{"/[a-c]x", []string{"/ax", "/cx"}, []string{"/dx", "//x"}},
		{"/[!a-c]x", []string{"/dx"}, []string{"/ax", "//x"}},
		{"/[^a]x", []string{"/bx"}, []string{"/ax", "//x"}},
		{"/[]a]", []string{"/]", "/a"}, []string{"/b"}},
		{"/[a-]", []string{"/a", "/-"}, []string{"/b"}},
		{`/\*`, []string{"/*"}, []string{"/a"}},
		{`/\[x]`, []string{"/[x]"}, []string{"/x"}},
		{"/a.b(c)+$^|{1}", []string{"/a.b(c)+$^|{1}"}, []string{"/aXb(c)+$^|{1}", "/a.bc"}},
		{"web*", []string{"web", "web1", "web-prod"}, []string{"db-web", "web/x"}},
		{"/é*", []string{"/éa"}, []string{"/ea"}},
	}
	for _, tt := range tests {
		g, err := compileGlob(tt.pattern)
		if err != nil {
			t.Errorf("compileGlob(%q): %v", tt.pattern, err)
			continue
		}
		for _, s := range tt.match {
			if !g.match(s) {
				t.Errorf("%q does not match %q", tt.pattern, s)
			}
		}
		for _, s := range tt.nomatch {
			if g.match(s) {
				t.Errorf("%q matches %q", tt.pattern, s)
			}
		}
	}
}

func TestBadGlobs(t *testing.T) {
	for p, want := range map[string]string{
		"":                        "empty pattern matches nothing",
		"[":                       `unclosed "["`,
		"/a/[abc":                 `unclosed "["`,
		`/a\`:                     `lone "\"`,
		"[z-a]":                   "bad range",
		"[/]":                     `cannot match "/"`,
		"[!-0]x":                  "", // a negated class may span "/": it excludes it
		"[+-0]":                   `cannot match "/"`,
		"\xff":                    "not valid UTF-8",
		strings.Repeat("a", 1025): "longer than 1024",
	} {
		_, err := compileGlob(p)
		switch {
		case want == "" && err != nil:
			t.Errorf("compileGlob(%q): %v", p, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("compileGlob(%q) = %v, want %q", p, err, want)
		}
	}
}

func FuzzGlob(f *testing.F) {
	for _, s := range []string{"/a/**", "**/x", "[a-z]*", `\*`, "[!/]", "/a/**/b", "[", "[]]"} {
		f.Add(s, "/a/b")
	}
	f.Fuzz(func(t *testing.T, pattern, s string) {
		g, err := compileGlob(pattern)
		if err != nil {
			return
		}
		g.match(s)
		// Without "**", "*", "?" and classes never cross "/".
		if !strings.Contains(pattern, "**") && !strings.Contains(pattern, "/") && !strings.Contains(pattern, `\`) && strings.Contains(s, "/") && g.match(s) {
			t.Fatalf("%q matches %q across a /", pattern, s)
		}
	})
}
