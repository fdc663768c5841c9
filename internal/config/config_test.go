package config

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/oomwatch/oomwatch/internal/cgnames"
	"github.com/oomwatch/oomwatch/policy"
	"github.com/oomwatch/oomwatch/watchdog"
)

// Every error message is checked whole: position, what is wrong, what to do.
func TestParseErrors(t *testing.T) {
	const more = " every key is listed by oomwatch config --defaults"
	tests := []struct {
		name, src string
		want      []string
	}{
		{"unknown key", "ladderr: [reset-adj]\n",
			[]string{`f.yaml:1:1: unknown key "ladderr" — did you mean "ladder"?` + more}},
		{"unknown nested key", "detector:\n  window: 1s\n  windoww: 2s\n",
			[]string{`f.yaml:3:3: detector: unknown key "windoww" — did you mean "window"?` + more}},
		{"unknown key far from any", "frobnicate: 1\n",
			[]string{`f.yaml:1:1: unknown key "frobnicate" — remove it or fix its spelling;` + more}},
		{"unknown key in a rule", "rules:\n  - name: a\n    cooldownn: 1s\n",
			[]string{`f.yaml:3:5: rules[0]: unknown key "cooldownn" — did you mean "cooldown"?` + more}},
		{"top-level key in a rule", "rules:\n  - name: a\n    max_per_subtree: 10\n",
			[]string{`f.yaml:3:5: rules[0]: unknown key "max_per_subtree" — "max_per_subtree" is not valid here: move it to where oomwatch config --defaults shows it`}},
		{"unknown matcher", "rules:\n  - name: a\n    match: {containr: web}\n",
			[]string{`f.yaml:3:13: rules[0].match: unknown key "containr" — did you mean "container"?` + more}},
		{"word for a number", "detector:\n  min_ooms: three\n",
			[]string{`f.yaml:2:13: detector.min_ooms: want a whole number, found "three" — write a whole number, such as 3`}},
		{"fraction for a number", "max_cgroups: 1.5\n",
			[]string{`f.yaml:1:14: max_cgroups: want a whole number, found "1.5" — write a whole number, such as 3`}},
		{"duplicate key", "detector:\n  min_ooms: 3\n  min_ooms: 4\n",
			[]string{`f.yaml:3:3: detector: duplicate key "min_ooms" (first at line 2, column 3) — keep only one of them`}},
		{"duplicate top-level key", "dry_run: true\nladder: [freeze]\ndry_run: false\n",
			[]string{`f.yaml:3:1: duplicate key "dry_run" (first at line 1, column 1) — keep only one of them`}},
		{"unknown rung", "rules:\n  - name: a\n  - name: b\n  - name: c\n    ladder:\n      - reset-adj\n      - reboot\n",
			[]string{`f.yaml:7:9: rules[2].ladder[1]: unknown ladder rung "reboot" — use reset-adj, raise-limit, freeze, kill`}},
		{"unknown rung for OOMPolicy=stop units", "oom_policy_stop_ladder: [freeze, stop]\n",
			[]string{`f.yaml:1:34: oom_policy_stop_ladder[1]: unknown ladder rung "stop" — use reset-adj, raise-limit, freeze, kill`}},
		{"duplicate rung", "ladder: [reset-adj, freeze, reset-adj]\n",
			[]string{`f.yaml:1:29: ladder[2]: ladder rung "reset-adj" appears twice — name each rung once`}},
		{"empty ladder", "ladder: []\n",
			[]string{`f.yaml:1:9: ladder: empty ladder — name at least one rung: reset-adj, raise-limit, freeze, kill`}},
		{"ladder not a list", "ladder: freeze\n",
			[]string{`f.yaml:1:9: ladder: want a list, found "freeze" — write a list: [a, b] or one "- item" per line`}},
		{"rung not a string", "ladder: [1]\n",
			[]string{`f.yaml:1:10: ladder[0]: want a string, found "1" — write a string; quote it ("...") if it looks like a number or starts with *`}},
		{"step in words", "raise_limit: {step: 10 percent}\n",
			[]string{`f.yaml:1:21: raise_limit.step: "10 percent": not a percentage or a size — ` + amountHint}},
		{"zero step", "raise_limit: {step: 0%}\n",
			[]string{`f.yaml:1:21: raise_limit.step: raise step is zero — use more than 0, such as 10% or 256M`}},
		{"ceiling below the limit", "raise_limit:\n  ceiling: 90%\n",
			[]string{`f.yaml:2:12: raise_limit.ceiling: 90% is not above the original limit — use more than 100%, such as 200%, or a size such as 4G`}},
		{"size with a bad unit", "raise_limit: {ceiling: 4Q}\n",
			[]string{`f.yaml:1:24: raise_limit.ceiling: "4Q": not a percentage or a size — ` + amountHint}},
		{"percentage too large", "raise_limit: {ceiling: 20000%}\n",
			[]string{`f.yaml:1:24: raise_limit.ceiling: "20000%": more than 10000% — ` + amountHint}},
		{"margin of everything", "raise_limit: {revert_margin: 100%}\n",
			[]string{`f.yaml:1:30: raise_limit.revert_margin: revert margin 100% would never let usage fall below it — use less than 100%, such as 10%`}},
		{"bad cgroup glob", "rules:\n  - name: a\n    match: {cgroup: \"/a/[\"}\n",
			[]string{`f.yaml:3:21: rules[0].match.cgroup: pattern "/a/[": unclosed "[" in pattern: close the class with "]" or write \[ for a literal [ — fix the pattern: * matches within one path element, ** across them, [a-z] one character`}},
		{"bad exempt glob", "exempt:\n  comm: [sshd, \"[\"]\n",
			[]string{`f.yaml:2:16: exempt.comm[1]: bad pattern "[" — fix the pattern: * matches any run of characters but "/", ? one, [a-z] one of a class; write \[ for a literal [`}},
		{"empty matcher", "rules:\n  - name: a\n    match: {unit: \"\"}\n",
			[]string{`f.yaml:3:19: rules[0].match.unit: pattern "": empty pattern matches nothing — fix the pattern: * matches within one path element, ** across them, [a-z] one character`}},
		{"unknown kill mode", "kill: {mode: gentle}\n",
			[]string{`f.yaml:1:14: kill.mode: unknown kill mode "gentle" — use largest (the largest task) or cgroup (every task)`}},
		{"unknown paused action", "paused: {action: freeze}\n",
			[]string{`f.yaml:1:18: paused.action: unknown paused action "freeze" — use "" (report only), raise-limit or kill`}},
		{"negative duration", "freeze: {timeout: -1s}\n",
			[]string{`f.yaml:1:19: freeze.timeout: duration "-1s" is not positive — ` + durationHint}},
		{"zero duration", "safety: {cooldown: 0s}\n",
			[]string{`f.yaml:1:20: safety.cooldown: duration "0s" is not positive — ` + durationHint}},
		{"duration without unit", "detector: {window: 5}\n",
			[]string{`f.yaml:1:20: detector.window: want a duration, found the bare number "5" — add a unit: 300ms, 5s, 5m`}},
		{"duration in words", "verify: {timeout: two seconds}\n",
			[]string{`f.yaml:1:19: verify.timeout: want a duration, found "two seconds" — ` + durationHint}},
		{"window too long", "detector: {window: 2h}\n",
			[]string{`f.yaml:1:20: detector.window: detector window 2h0m0s is too long — use at most 1h`}},
		{"min_ooms zero", "detector: {min_ooms: 0}\n",
			[]string{`f.yaml:1:22: detector.min_ooms: min_ooms 0 is out of range — use 1 to 1000000`}},
		{"reset value -1000", "reset_adj: {value: -1000}\n",
			[]string{`f.yaml:1:20: reset_adj.value: reset value -1000 is out of range — use -999 to 1000 (0, the kernel's default, is usual; -1000 would keep the task unkillable)`}},
		{"max_tasks zero", "reset_adj: {max_tasks: 0}\n",
			[]string{`f.yaml:1:24: reset_adj.max_tasks: max_tasks 0 is out of range — use 1 to 1000`}},
		{"no actions allowed", "safety: {max_actions_per_minute: 0}\n",
			[]string{`f.yaml:1:34: safety.max_actions_per_minute: max_actions_per_minute 0 is out of range — use 1 to 100000; to act on nothing use dry_run: true`}},
		{"max_cgroups zero", "max_cgroups: 0\n",
			[]string{`f.yaml:1:14: max_cgroups: max_cgroups 0 is out of range — use 1 to 1048576`}},
		{"max_per_subtree zero", "max_per_subtree: 0\n",
			[]string{`f.yaml:1:18: max_per_subtree: max_per_subtree 0 is out of range — use 1 to 1048576`}},
		{"max_per_subtree negative", "max_per_subtree: -5\n",
			[]string{`f.yaml:1:18: max_per_subtree: max_per_subtree -5 is out of range — use 1 to 1048576`}},
		{"max_per_subtree beyond the bound", "max_cgroups: 1048576\nmax_per_subtree: 1048577\n",
			[]string{`f.yaml:2:18: max_per_subtree: max_per_subtree 1048577 is out of range — use 1 to 1048576`}},
		{"max_per_subtree in words", "max_per_subtree: many\n",
			[]string{`f.yaml:1:18: max_per_subtree: want a whole number, found "many" — write a whole number, such as 3`}},
		{"max_per_subtree above the default max_cgroups", "max_per_subtree: 70000\n",
			[]string{`f.yaml:1:18: max_per_subtree: max_per_subtree 70000 is more than max_cgroups 65536 (the default) — lower max_per_subtree to at most 65536, or raise max_cgroups to 70000 or more`}},
		{"max_per_subtree above max_cgroups", "max_cgroups: 1000\nmax_per_subtree: 2000\n",
			[]string{`f.yaml:2:18: max_per_subtree: max_per_subtree 2000 is more than max_cgroups 1000 — lower max_per_subtree to at most 1000, or raise max_cgroups to 2000 or more`}},
		{"max_per_subtree above a max_cgroups set below it", "max_per_subtree: 2000\nmax_cgroups: 1000\n",
			[]string{`f.yaml:1:18: max_per_subtree: max_per_subtree 2000 is more than max_cgroups 1000 — lower max_per_subtree to at most 1000, or raise max_cgroups to 2000 or more`}},
		{"bad max_cgroups is reported alone", "max_cgroups: 0\nmax_per_subtree: 2000\n",
			[]string{`f.yaml:1:14: max_cgroups: max_cgroups 0 is out of range — use 1 to 1048576`}},
		{"relative state dir", "state_dir: var/lib/oomwatch\n",
			[]string{`f.yaml:1:12: state_dir: state directory "var/lib/oomwatch" is not an absolute path — use an absolute path such as /var/lib/oomwatch`}},
		{"bad listen address", "metrics: {listen: localhost}\n",
			[]string{`f.yaml:1:19: metrics.listen: listen address "localhost": not host:port — write host:port such as 127.0.0.1:9731, or "" to turn metrics off`}},
		{"bad listen port", "metrics: {listen: \":http\"}\n",
			[]string{`f.yaml:1:19: metrics.listen: listen address ":http": port "http" is not a number from 0 to 65535 — write host:port such as 127.0.0.1:9731, or "" to turn metrics off`}},
		{"not a bool", "dry_run: maybe\n",
			[]string{`f.yaml:1:10: dry_run: want true or false, found "maybe" — write true or false`}},
		{"rule without name", "rules:\n  - name: a\n  - match: {unit: \"x.service\"}\n    ladder: [kill]\n",
			[]string{`f.yaml:3:5: rules[1]: rule without a name — give every rule a unique name: name: keep-shims`}},
		{"rule with empty name", "rules:\n  - name: \"\"\n",
			[]string{`f.yaml:2:5: rules[0]: rule without a name — give every rule a unique name: name: keep-shims`}},
		{"two rules, one name", "rules:\n  - name: web\n    dry_run: true\n  - name: web\n",
			[]string{`f.yaml:4:11: rules[1].name: rule name "web" is used twice (first at line 2) — give every rule a unique name`}},
		{"rule name with control characters", "rules:\n  - name: \"a\\x1bb\"\n",
			[]string{`f.yaml:2:11: rules[0].name: rule name "a\x1bb" is too long or has control characters — use at most 128 printable characters`}},
		{"rules not a list", "rules: {name: a}\n",
			[]string{`f.yaml:1:8: rules: want a list, found a mapping — write a list: [a, b] or one "- item" per line`}},
		{"scalar for a mapping", "detector: 5\n",
			[]string{`f.yaml:1:11: detector: want a mapping (key: value lines), found an integer — write key: value pairs as in oomwatch config --defaults`}},
		{"list for a mapping in a rule", "rules:\n  - name: x\n    detector: [1]\n",
			[]string{`f.yaml:3:15: rules[0].detector: want a mapping (key: value lines), found a sequence — write key: value pairs as in oomwatch config --defaults`}},
		{"exempt not a list", "exempt: {comm: sshd}\n",
			[]string{`f.yaml:1:16: exempt.comm: want a list, found "sshd" — write a list: [a, b] or one "- item" per line`}},
		{"alerts not a mapping", "alerts: [webhook]\n",
			[]string{`f.yaml:1:9: alerts: want a mapping, found a list — write a mapping, or {} for none`}},
		{"tab indentation", "detector:\n\twindow: 1s\n",
			[]string{`f.yaml:2:1: tab character — indent with spaces: YAML does not allow tabs for indentation`}},
		{"unquoted star", "rules:\n  - name: x\n    match: {unit: *.service}\n",
			[]string{`f.yaml:3:19: rules[0].match.unit: "*.service" is a YAML alias — aliases are not supported: write the value out; quote a string that starts with * ("*.service")`}},
		{"anchor", "detector: &d {window: 1s}\n",
			[]string{`f.yaml:1:11: detector: YAML anchor — anchors are not supported: write each value out`}},
		{"merge key", "detector:\n  <<: {window: 1s}\n",
			[]string{`f.yaml:2:3: detector.<<: YAML merge key << — merge keys are not supported: write each key out`}},
		{"not a mapping", "hello\n",
			[]string{`f.yaml:1:1: the file must be a mapping of keys, found a string — start from oomwatch config --defaults`}},
		{"two documents", "dry_run: true\n---\ndry_run: false\n",
			[]string{`f.yaml:3:1: a second YAML document (document 2) — keep one document: remove the "---" line and what follows, or merge it`}},
		{"unclosed flow mapping", "detector: {window: 1s\n",
			[]string{`f.yaml:1:11: could not find flow mapping end token '}' — fix the YAML syntax here`}},
		{"quiet not shorter than timeout, in a rule", "rules:\n  - name: slow\n    verify: {quiet: 5s}\n",
			[]string{`f.yaml:3:21: rules[0].verify.quiet: quiet period 5s is not shorter than the verify timeout 2s — make verify.quiet shorter than verify.timeout`}},
		{"timeout lowered under the quiet period", "verify:\n  timeout: 200ms\n",
			[]string{`f.yaml:2:12: verify.timeout: quiet period 300ms is not shorter than the verify timeout 200ms — make verify.quiet shorter than verify.timeout`}},
		{"type and value problems all reported at once, an inherited one not twice", "kill: {mode: gentle}\nrules:\n  - ladder: [reboot]\n  - name: a\n    freeze: {timeout: 1x}\n",
			[]string{
				`f.yaml:1:14: kill.mode: unknown kill mode "gentle" — use largest (the largest task) or cgroup (every task)`,
				`f.yaml:3:5: rules[0]: rule without a name — give every rule a unique name: name: keep-shims`,
				`f.yaml:3:14: rules[0].ladder[0]: unknown ladder rung "reboot" — use reset-adj, raise-limit, freeze, kill`,
				`f.yaml:5:23: rules[1].freeze.timeout: want a duration, found "1x" — ` + durationHint,
			}},
		{"six mistakes in six sections, one run", "ladderr: [kill]\ndetector: {min_ooms: three}\ndry_run: true\ndry_run: false\nrules:\n  - name: a\n    kill: {mode: gentle}\nalerts:\n  slack: []\n  webhook:\n    - url: https://example.com/hook\n      timeout: 10 seconds\n",
			[]string{
				`f.yaml:1:1: unknown key "ladderr" — did you mean "ladder"?` + more,
				`f.yaml:2:22: detector.min_ooms: want a whole number, found "three" — write a whole number, such as 3`,
				`f.yaml:4:1: duplicate key "dry_run" (first at line 3, column 1) — keep only one of them`,
				`f.yaml:7:18: rules[0].kill.mode: unknown kill mode "gentle" — use largest (the largest task) or cgroup (every task)`,
				`f.yaml:9:3: alerts: unknown key "slack" — remove it or fix its spelling; README's Alerts section lists every key of each sink`,
				`f.yaml:12:16: alerts.webhook[0].timeout: want a duration, found a string — write a number with a unit: 500ms, 10s, 5m`,
			}},
		{"alerts: a sink's value problem at its key", "alerts:\n  exec:\n    - name: page\n      command: [page, --team, ops]\n  webhook:\n    - name: hook\n",
			[]string{
				`f.yaml:4:16: alerts.exec[0] (page): command[0] "page": want an absolute path (hooks never go through a shell or $PATH) — ` + alertsHint,
				`f.yaml:6:7: alerts.webhook[0] (hook): url: required — ` + alertsHint,
			}},
		{"alerts: a misspelt sink key", "alerts:\n  webhook:\n    - url: https://example.com/hook\n      secrett: whsec_abc\n",
			[]string{`f.yaml:4:7: alerts.webhook[0]: unknown key "secrett" — did you mean "secret"? README's Alerts section lists every key of each sink`}},
		{"semantic problems all reported, in file order", "rules:\n  - ladder: [reboot]\n  - name: a\n    kill: {mode: gentle}\nreset_adj: {value: 5000}\n",
			[]string{
				`f.yaml:2:5: rules[0]: rule without a name — give every rule a unique name: name: keep-shims`,
				`f.yaml:2:14: rules[0].ladder[0]: unknown ladder rung "reboot" — use reset-adj, raise-limit, freeze, kill`,
				`f.yaml:4:18: rules[1].kill.mode: unknown kill mode "gentle" — use largest (the largest task) or cgroup (every task)`,
				`f.yaml:5:20: reset_adj.value: reset value 5000 is out of range — use -999 to 1000 (0, the kernel's default, is usual; -1000 would keep the task unkillable)`,
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("f.yaml", []byte(tt.src))
			if c != nil {
				t.Errorf("got a config along with the error")
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v (%T): want *Error", err, err)
			}
			var got []string
			for _, p := range e.Problems {
				got = append(got, p.Error())
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("source:\n%s\ngot:\n  %s\nwant:\n  %s", tt.src, strings.Join(got, "\n  "), strings.Join(tt.want, "\n  "))
			}
			if err.Error() != strings.Join(tt.want, "\n") {
				t.Errorf("Error() = %q", err.Error())
			}
		})
	}
}

func TestProblemExcerpt(t *testing.T) {
	_, err := Parse("f.yaml", []byte("detector:\n\tmin_ooms: 1\n"))
	var e *Error
	if !errors.As(err, &e) {
		t.Fatal(err)
	}
	if got, want := e.Problems[0].Excerpt(), "  2 | \tmin_ooms: 1\n    | ^"; got != want {
		t.Errorf("excerpt:\n%s\nwant:\n%s", got, want)
	}
	_, err = Parse("f.yaml", []byte("detector:\n  min_ooms: three\n"))
	errors.As(err, &e)
	if got, want := e.Problems[0].Excerpt(), "  2 |   min_ooms: three\n    |             ^"; got != want {
		t.Errorf("excerpt:\n%s\nwant:\n%s", got, want)
	}
}

func TestProblemsAreBounded(t *testing.T) {
	var b strings.Builder
	b.WriteString("rules:\n")
	for i := 0; i < 50; i++ {
		b.WriteString("  - ladder: [kill]\n")
	}
	_, err := Parse("f.yaml", []byte(b.String()))
	var e *Error
	if !errors.As(err, &e) {
		t.Fatal(err)
	}
	if len(e.Problems) != maxProblems || e.More != 50-maxProblems {
		t.Errorf("%d problems listed, %d more: want %d and %d", len(e.Problems), e.More, maxProblems, 50-maxProblems)
	}
	if !strings.HasSuffix(err.Error(), "… and 30 more problems") {
		t.Errorf("error does not say how many more: %q", err.Error())
	}
}

func TestTooLarge(t *testing.T) {
	_, err := Parse("f.yaml", make([]byte, MaxFileSize+1))
	if err == nil || err.Error() != "f.yaml: file is more than the 1 MiB allowed — a config file is a few KiB: check the path" {
		t.Errorf("err = %v", err)
	}
}

// A binary or non-UTF-8 file gets a plain message, not a YAML syntax error
// in the middle of its bytes (which would echo them into the terminal).
func TestBinaryFileIsNotText(t *testing.T) {
	for _, c := range []struct {
		data []byte
		want string
	}{
		{[]byte("window: 1s\n\x00\x01\x02"), "f.yaml: binary file, not YAML text (a NUL byte at offset 11)"},
		{[]byte("window: 1s\n\xff\xfe"), "f.yaml: not UTF-8 text, not a YAML file (an invalid byte 0xff at offset 11)"},
	} {
		_, err := Parse("f.yaml", c.data)
		if err == nil || !strings.HasPrefix(err.Error(), c.want+" — ") {
			t.Errorf("%q: err = %v, want %q", c.data, err, c.want)
		}
	}
}

func TestEmptyIsDefaults(t *testing.T) {
	for _, src := range []string{"", "\n", "# nothing here\n", "---\n", "---\n# c\n...\n"} {
		c, err := Parse("f.yaml", []byte(src))
		if err != nil {
			t.Fatalf("%q: %v", src, err)
		}
		if c.Path != "f.yaml" {
			t.Errorf("%q: path %q", src, c.Path)
		}
		c.Path = ""
		if !reflect.DeepEqual(c, Defaults()) {
			t.Errorf("%q: %+v\nwant the defaults %+v", src, c, Defaults())
		}
	}
}

// The embedded file is the documentation of the built-in defaults: it must
// say exactly what the code does.
func TestDefaultsFileIsTheDefaults(t *testing.T) {
	c, err := Parse("defaults.yaml", DefaultsYAML())
	if err != nil {
		t.Fatal(err)
	}
	c.Path = ""
	if !reflect.DeepEqual(c, Defaults()) {
		t.Errorf("defaults.yaml parses to\n%+v\nthe built-in defaults are\n%+v", c, Defaults())
	}
	d := Defaults()
	if got := d.TopLevel(); !reflect.DeepEqual(got.Policy, policy.DefaultOptions()) || got.Detector != watchdog.DefaultParams {
		t.Errorf("top level %+v: want policy.DefaultOptions and watchdog.DefaultParams", got)
	}
	if g := d.Global(); g.MaxCgroups != watchdog.DefaultMaxCgroups {
		t.Errorf("max_cgroups %d: want watchdog.DefaultMaxCgroups", g.MaxCgroups)
	}
	if g := d.Global(); g.MaxPerSubtree != watchdog.DefaultMaxPerSubtree {
		t.Errorf("max_per_subtree %d: want watchdog.DefaultMaxPerSubtree", g.MaxPerSubtree)
	}
}

func TestDefaultsFileDocumentsEveryKey(t *testing.T) {
	text := string(DefaultsYAML())
	keys := knownKeys()
	if len(keys) < 30 {
		t.Fatalf("only %d keys found by reflection: %v", len(keys), keys)
	}
	for _, k := range keys {
		if !strings.Contains(text, k+":") {
			t.Errorf("defaults.yaml never shows key %q", k)
		}
	}
	// Every top-level line that sets a key has a comment block or a
	// commented mapping above it.
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		if l == "" || strings.HasPrefix(l, "#") || strings.HasPrefix(l, " ") {
			continue
		}
		if i == 0 || !strings.HasPrefix(lines[i-1], "#") {
			t.Errorf("defaults.yaml line %d %q has no comment above it", i+1, l)
		}
	}
	// The commented example parses, and says what it shows.
	_, example, ok := strings.Cut(text, "# Example:\n")
	if !ok {
		t.Fatal("defaults.yaml has no example")
	}
	var ex strings.Builder
	for _, l := range strings.Split(example, "\n") {
		body, ok := strings.CutPrefix(l, "#  ")
		if !ok {
			break
		}
		ex.WriteString(body + "\n")
	}
	c, err := Parse("example", []byte(ex.String()))
	if err != nil {
		t.Fatalf("the example in defaults.yaml:\n%s\n%v", ex.String(), err)
	}
	if got := c.For("/lxc.payload.web1").Policy.RaiseCeiling; got != (policy.Amount{Bytes: 4 << 30}) || len(c.RuleNames()) != 2 {
		t.Errorf("example: rules %v, web ceiling %+v", c.RuleNames(), got)
	}

	// DefaultsYAML hands out copies.
	DefaultsYAML()[0] = 'X'
	if DefaultsYAML()[0] != '#' {
		t.Error("DefaultsYAML returned the embedded bytes themselves")
	}
}

// The discovery caps: max_per_subtree defaults to
// watchdog.DefaultMaxPerSubtree, is set on its own or with max_cgroups,
// and may equal max_cgroups. A max_cgroups below the default
// max_per_subtree is not an error: left unset, max_per_subtree is bounded
// by max_cgroups anyway.
func TestMaxPerSubtreeDefaultsAndMayEqualMaxCgroups(t *testing.T) {
	tests := []struct {
		src                string
		maxCgroups, perSub int
	}{
		{"", watchdog.DefaultMaxCgroups, watchdog.DefaultMaxPerSubtree},
		{"max_per_subtree:\n", watchdog.DefaultMaxCgroups, watchdog.DefaultMaxPerSubtree},
		{"max_per_subtree: 100\n", watchdog.DefaultMaxCgroups, 100},
		{"max_per_subtree: 65536\n", watchdog.DefaultMaxCgroups, 65536},
		{"max_cgroups: 200000\nmax_per_subtree: 100000\n", 200000, 100000},
		{"max_per_subtree: 500\nmax_cgroups: 500\n", 500, 500},
		{"max_cgroups: 1000\n", 1000, watchdog.DefaultMaxPerSubtree},
		{"max_cgroups: 1048576\nmax_per_subtree: 1048576\n", 1048576, 1048576},
		{"max_per_subtree: 1\n", watchdog.DefaultMaxCgroups, 1},
	}
	for _, tt := range tests {
		c, err := Parse("f.yaml", []byte(tt.src))
		if err != nil {
			t.Errorf("%q: %v", tt.src, err)
			continue
		}
		if g := c.Global(); g.MaxCgroups != tt.maxCgroups || g.MaxPerSubtree != tt.perSub {
			t.Errorf("%q: max_cgroups %d, max_per_subtree %d: want %d and %d", tt.src, g.MaxCgroups, g.MaxPerSubtree, tt.maxCgroups, tt.perSub)
		}
	}
}

const example = `# an operator's file
dry_run: false
ladder: [reset-adj, raise-limit, freeze]
detector: {window: 2s}
exempt:
  comm: [sshd]
raise_limit: {step: 256M, ceiling: 4Gi}
safety: {cooldown: 1m, max_actions_per_minute: 10}
state_dir: /var/lib/oomwatch/
metrics: {listen: ""}
alerts:
  webhook:
    - url: https://example.com/hook
rules:
  - name: shims
    match: {cgroup: "/system.slice/containerd.service", unit: "*.service"}
    dry_run: true
  - name: web
    match: {container: "web*"}
    ladder: [kill]
    kill: {mode: cgroup}
    detector: {min_ooms: 5}
    exempt: {comm: []}
    cooldown: 10s
  - name: lxc-subtree
    match: {cgroup: "/lxc.payload.db*/**"}
    reset_adj: {value: 100, max_tasks: 1}
    raise_limit: {step: 1.5G, revert_margin: 0%}
    verify: {timeout: 5s, quiet: 1s}
    paused: {action: raise-limit}
    freeze: {timeout: 1s}
  - name: k8s-pod
    match: {cgroup: "/kubepods.slice/**"}
    detector:
`

func TestParseExample(t *testing.T) {
	c, err := Parse("/etc/oomwatch/oomwatch.yaml", []byte(example))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.RuleNames(); !reflect.DeepEqual(got, []string{"shims", "web", "lxc-subtree", "k8s-pod"}) {
		t.Errorf("rules %v", got)
	}
	g := c.Global()
	if g.StateDir != "/var/lib/oomwatch" || g.MaxActionsPerMinute != 10 || g.MetricsListen != "" || g.MaxCgroups != watchdog.DefaultMaxCgroups {
		t.Errorf("global %+v", g)
	}
	if a := c.Alerts(); len(a.Webhook) != 1 || a.Webhook[0].URL != "https://example.com/hook" {
		t.Errorf("alerts decoded as %+v", a)
	}

	top := policy.DefaultOptions()
	top.Ladder = []string{policy.ResetAdj, policy.RaiseLimit, policy.Freeze}
	top.ExemptComm = []string{"sshd"}
	top.RaiseStep = policy.Amount{Bytes: 256 << 20}
	top.RaiseCeiling = policy.Amount{Bytes: 4 << 30}
	top.Cooldown = time.Minute
	topDet := watchdog.Params{Window: 2 * time.Second, MinOOMs: 3}

	shims := top
	shims.DryRun = true // and nothing else: everything else is inherited

	web := top
	web.Ladder = []string{policy.Kill}
	web.KillMode = policy.KillCgroup
	web.ExemptComm = nil
	web.Cooldown = 10 * time.Second

	lxc := top
	lxc.ResetTo, lxc.MaxResets = 100, 1
	lxc.RaiseStep = policy.Amount{Bytes: 1610612736}
	lxc.RevertMargin = policy.Amount{}
	lxc.VerifyTimeout, lxc.QuietFor = 5*time.Second, time.Second
	lxc.PausedAction = policy.RaiseLimit
	lxc.FreezeTimeout = time.Second

	const webID = "/system.slice/docker-9ec39b91e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f80912cf3d.scope"
	tests := []struct {
		cgroup, rule string
		det          watchdog.Params
		pol          policy.Options
	}{
		{"/system.slice/containerd.service", "shims", topDet, shims},
		{"system.slice/containerd.service", "shims", topDet, shims}, // made absolute
		{"/system.slice/containerd.service/x", "", topDet, top},     // the cgroup glob is exact
		{"/lxc.payload.web1", "web", watchdog.Params{Window: 2 * time.Second, MinOOMs: 5}, web},
		{"/lxc/web2/ns", "web", watchdog.Params{Window: 2 * time.Second, MinOOMs: 5}, web},
		{"/lxc.monitor.web1", "", topDet, top},           // never the monitor
		{webID, "", topDet, top},                         // short id does not match web*
		{"/lxc.payload.db1", "lxc-subtree", topDet, lxc}, // "/**" matches the cgroup itself
		{"/lxc.payload.db1/system.slice/pg.service", "lxc-subtree", topDet, lxc},
		{"/lxc.payload.dbx/a/b/c", "lxc-subtree", topDet, lxc},
		{"/kubepods.slice/kubepods-pod1.slice", "k8s-pod", topDet, top}, // null detector: inherits
		{"/", "", topDet, top},
		{"/system.slice/ssh.service", "", topDet, top},
		// A sub-cgroup named by the tenant of container "other" or "db1"
		// is still that container's: never matched as web1.
		{"/lxc.payload.other/lxc.payload.web1", "", topDet, top},
		{"/lxc.payload.db1/lxc.payload.web1", "lxc-subtree", topDet, lxc},
	}
	for _, tt := range tests {
		r := c.For(tt.cgroup)
		if r.Rule != tt.rule || r.Detector != tt.det || !reflect.DeepEqual(r.Policy, tt.pol) {
			t.Errorf("For(%q) = rule %q\n  %+v\n  %+v\nwant rule %q\n  %+v\n  %+v", tt.cgroup, r.Rule, r.Detector, r.Policy, tt.rule, tt.det, tt.pol)
		}
		if want := cgnames.Parse(tt.cgroup); r.Rule != "" && r.Names.Container != want.Container {
			t.Errorf("For(%q) names %+v", tt.cgroup, r.Names)
		}
	}

	// Resolved options are copies: changing them changes nothing.
	r := c.For("/system.slice/containerd.service")
	r.Policy.Ladder[0] = "kill"
	r.Policy.ExemptComm[0] = "x"
	if again := c.For("/system.slice/containerd.service"); again.Policy.Ladder[0] != policy.ResetAdj || again.Policy.ExemptComm[0] != "sshd" {
		t.Error("For hands out the config's own slices")
	}
	if tl := c.TopLevel(); !reflect.DeepEqual(tl.Policy, top) || tl.Detector != topDet || tl.Rule != "" {
		t.Errorf("TopLevel %+v", tl)
	}
}

// A rule that sets only dry_run inherits everything else, including what
// the top level changed.
func TestRuleInheritsWhatItDoesNotSet(t *testing.T) {
	src := "ladder: [freeze]\nverify: {timeout: 3s}\nexempt: {cmdline: [\"*sshd*\"]}\nrules:\n  - name: dry\n    dry_run: true\n"
	c, err := Parse("f.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	top, rule := c.TopLevel(), c.For("/any")
	if rule.Rule != "dry" || !rule.Policy.DryRun || top.Policy.DryRun {
		t.Fatalf("rule %q dry-run %v, top dry-run %v", rule.Rule, rule.Policy.DryRun, top.Policy.DryRun)
	}
	rule.Policy.DryRun = false
	if !reflect.DeepEqual(rule.Policy, top.Policy) || rule.Detector != top.Detector {
		t.Errorf("rule\n  %+v\ntop\n  %+v", rule.Policy, top.Policy)
	}
	if !reflect.DeepEqual(top.Policy.Ladder, []string{policy.Freeze}) || top.Policy.VerifyTimeout != 3*time.Second || top.Policy.Poll != policy.DefaultOptions().Poll {
		t.Errorf("top %+v", top.Policy)
	}
}

func TestFirstMatchWins(t *testing.T) {
	src := `rules:
  - name: one
    match: {cgroup: "/a/*", unit: "x*.service"}
    ladder: [freeze]
  - name: two
    match: {cgroup: "/a/**"}
    ladder: [kill]
`
	c, err := Parse("f.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	for cg, want := range map[string]string{
		"/a/x1.service":  "one", // both match: the first wins
		"/a/y.service":   "two", // unit does not match
		"/a/x1.scope":    "two",
		"/a/b/x.service": "two", // * stays in one element
		"/b":             "",
	} {
		if got := c.For(cg).Rule; got != want {
			t.Errorf("For(%q).Rule = %q, want %q", cg, got, want)
		}
	}
}

func TestAmountsArePercentOrBinarySizes(t *testing.T) {
	for in, want := range map[string]policy.Amount{
		"10%": {Percent: 10}, "12.5%": {Percent: 12.5}, "0%": {},
		"4096": {Bytes: 4096}, "256M": {Bytes: 256 << 20}, "256Mi": {Bytes: 256 << 20},
		"1k": {Bytes: 1024}, "1.5G": {Bytes: 3 << 29}, "2Ti": {Bytes: 2 << 40}, "3g": {Bytes: 3 << 30},
	} {
		got, err := parseAmount(in)
		if err != nil || got != want {
			t.Errorf("parseAmount(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "%", "-10%", "10 %", "1e3", "0x10", "NaN%", "Inf%", "1.2.3", "10MB", "18446744073709551616", "17179869184G", "1e400%", "M"} {
		if got, err := parseAmount(in); err == nil {
			t.Errorf("parseAmount(%q) = %+v: want an error", in, got)
		}
	}
	c, err := Parse("f.yaml", []byte("raise_limit: {step: 4096, ceiling: 8G}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if p := c.TopLevel().Policy; p.RaiseStep != (policy.Amount{Bytes: 4096}) || p.RaiseCeiling != (policy.Amount{Bytes: 8 << 30}) {
		t.Errorf("step %+v ceiling %+v", p.RaiseStep, p.RaiseCeiling)
	}
}

func TestNullMeansUnset(t *testing.T) {
	c, err := Parse("f.yaml", []byte("dry_run:\ndetector:\n  window:\nladder:\nrules:\nalerts:\nmetrics:\n"))
	if err != nil {
		t.Fatal(err)
	}
	c.Path = ""
	if !reflect.DeepEqual(c, Defaults()) {
		t.Errorf("%+v: want the defaults", c)
	}
}

// Validation must not lean on policy.Options.Validate for rung names, and
// must still run its other checks when Validate does not know a rung yet.
func TestValidatePolicyCopesWithUnknownRungs(t *testing.T) {
	o := policy.DefaultOptions()
	o.Ladder = []string{policy.RaiseLimit, policy.Kill}
	if err := validatePolicy(o); err != nil {
		t.Errorf("valid options: %v", err)
	}
	o.MaxResets = 0
	if err := validatePolicy(o); err == nil {
		t.Error("max resets 0 passed")
	}
	o = policy.DefaultOptions()
	o.Ladder = []string{"reboot"}
	if err := validatePolicy(o); err == nil {
		t.Error("unknown rung passed")
	}
}

func TestKnownKeysSuggest(t *testing.T) {
	for in, want := range map[string]string{"ladderr": "ladder", "min_oom": "min_ooms", "Ladder": "ladder", "cooldwn": "cooldown", "zzzzzzzz": "", strings.Repeat("a", 100): ""} {
		if got := suggest(in); got != want {
			t.Errorf("suggest(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add(DefaultsYAML())
	f.Add([]byte(example))
	for _, s := range []string{
		"", "ladder: [reset-adj, reboot]\n", "detector:\n\twindow: 1s\n", "a: &x [1]\nb: *x\n",
		"rules:\n  - name: a\n    match: {cgroup: \"/a/[\"}\n", "raise_limit: {step: 1.5G}\n",
		"detector: {min_ooms: 3, min_ooms: 4}\n", "--- !!map\n? a\n: b\n", "alerts: {a: [1, {b: c}]}\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz.yaml", data)
		if (c == nil) == (err == nil) {
			t.Fatalf("config %v and error %v: want exactly one", c, err)
		}
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || len(e.Problems) == 0 {
				t.Fatalf("error %v (%T): want *Error with problems", err, err)
			}
			for _, p := range e.Problems {
				if p.File != "fuzz.yaml" || p.Msg == "" {
					t.Fatalf("problem %+v", p)
				}
				_ = p.Excerpt()
			}
			return
		}
		// A config that parses is valid all the way down.
		for _, cg := range []string{"/", "/lxc.payload.a", "/system.slice/x.service"} {
			r := c.For(cg)
			if err := r.Detector.Validate(); err != nil {
				t.Fatalf("For(%q) detector: %v", cg, err)
			}
			if err := validatePolicy(r.Policy); err != nil {
				t.Fatalf("For(%q) policy: %v", cg, err)
			}
		}
	})
}

// A rule's ladder for systemd units with OOMPolicy=stop reaches the
// policy's options; where it is not set it stays empty (the ladder runs).
func TestStopUnitLadderFromARule(t *testing.T) {
	src := "rules:\n  - name: services\n    match: {unit: \"*.service\"}\n    oom_policy_stop_ladder: [freeze, kill]\n"
	c, err := Parse("f.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.For("/system.slice/app.service").Policy.StopUnitLadder; !reflect.DeepEqual(got, []string{policy.Freeze, policy.Kill}) {
		t.Errorf("rule: %v", got)
	}
	if got := c.TopLevel().Policy.StopUnitLadder; len(got) != 0 {
		t.Errorf("top level: %v, want none", got)
	}
}

// Rules that can never apply or change nothing are accepted with a
// warning each, at the rule, in file order.
func TestParseWarnsOfRulesThatCanNeverApply(t *testing.T) {
	src := `rules:
  - name: web
    match: {cgroup: "/system.slice/web.service"}
    ladder: [kill]
  - name: web-again
    match: {cgroup: "/system.slice/web.service"}
    ladder: [freeze]
  - name: relative
    match: {cgroup: "lxc.payload.*"}
    ladder: [freeze]
  - name: shield
    match: {unit: "db.service"}
  - name: all
    dry_run: true
  - name: late
    match: {unit: "x.service"}
    ladder: [kill]
`
	c, err := Parse("f.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, w := range c.Warnings() {
		got = append(got, w.Error())
	}
	want := []string{
		`f.yaml:5:5: rules[1]: rule "web-again" can never apply: rule "web" (line 2) before it has the same match — merge it into rule "web", or change its match`,
		`f.yaml:9:21: rules[2].match.cgroup: rule "relative" matches no cgroup: pattern "lxc.payload.*" does not start with "/" — cgroup paths start with "/": write "/lxc.payload.*"`,
		`f.yaml:11:5: rules[3]: rule "shield" changes no setting: the cgroups it matches keep the top-level settings, and no later rule applies to them — give it the settings it should change, or remove it`,
		`f.yaml:15:5: rules[5]: rule "late" can never apply: rule "all" (line 13) before it matches every cgroup — move it before rule "all", or give that rule a match`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("warnings:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	if ex := c.Warnings()[0].Excerpt(); !strings.Contains(ex, "- name: web-again") {
		t.Errorf("warning excerpt %q", ex)
	}
	// The example's last rule sets "detector:" to nothing.
	if c, err := Parse("f.yaml", []byte(example)); err != nil || len(c.Warnings()) != 1 || !strings.Contains(c.Warnings()[0].Msg, `rule "k8s-pod" changes no setting`) {
		t.Errorf("the example: %v, warnings %v", err, c.Warnings())
	}
}

// A problem in the alerts section is positioned but never shows the line
// or the value: those lines hold tokens and keys.
func TestAlertProblemsShowNoSecret(t *testing.T) {
	src := "alerts:\n  webhook:\n    - url: https://example.com/hook\n      headers: {Authorization: [Bearer, s3cr3t-token]}\n      timeout: s3cr3t-other\n"
	_, err := Parse("f.yaml", []byte(src))
	var e *Error
	if !errors.As(err, &e) || len(e.Problems) != 2 {
		t.Fatalf("error %v: want two problems", err)
	}
	for _, p := range e.Problems {
		if p.Line == 0 || p.Excerpt() != "" || strings.Contains(p.Error(), "s3cr3t") {
			t.Errorf("problem %q at line %d, excerpt %q: want a position and no excerpt or value", p.Error(), p.Line, p.Excerpt())
		}
	}
}
