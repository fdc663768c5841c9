package main

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden help files in testdata/help")

// commands are every command of the tree, as "oomwatch help" lists them.
func commands(t *testing.T) []string {
	t.Helper()
	var names []string
	for _, c := range newRootCmd(nil, nil).Commands() {
		if c.IsAvailableCommand() || c.Name() == "help" {
			names = append(names, c.Name())
		}
	}
	if len(names) < 9 {
		t.Fatalf("only %d commands: %v", len(names), names)
	}
	return names
}

// Every command's help is on stdout, exits 0, fits 80 columns and matches
// its golden file (go test ./cmd/oomwatch -run TestHelpGolden -update
// rewrites them; README and oomwatch(8) follow these texts).
func TestHelpGolden(t *testing.T) {
	cases := map[string][]string{"oomwatch": {"--help"}}
	for _, name := range commands(t) {
		cases[name] = []string{name, "--help"}
	}
	for name, args := range cases {
		code, out, errs := call(args...)
		if code != 0 || errs != "" {
			t.Errorf("%v: exit %d, stderr %q", args, code, errs)
		}
		for i, l := range strings.Split(out, "\n") {
			if len([]rune(l)) > 80 {
				t.Errorf("%v: line %d has %d columns: %q", args, i+1, len([]rune(l)), l)
			}
		}
		if strings.Contains(out, "Flags:\n\n") || strings.HasSuffix(strings.TrimSpace(out), "Flags:") {
			t.Errorf("%v: an empty Flags section:\n%s", args, out)
		}
		golden := filepath.Join("testdata", "help", name+".txt")
		if *update {
			if err := os.WriteFile(golden, []byte(out), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatalf("%v (run with -update to create it)", err)
		}
		if out != string(want) {
			t.Errorf("%v: help differs from %s (run with -update if the change is meant):\n%s", args, golden, out)
		}
	}
	// "help COMMAND" is the same text as "COMMAND --help".
	_, viaHelp, _ := call("help", "scan")
	_, viaFlag, _ := call("scan", "--help")
	if viaHelp != viaFlag {
		t.Errorf("help scan and scan --help differ:\n%s\n---\n%s", viaHelp, viaFlag)
	}
}

// A usage error is one line on stderr naming the command and pointing to its
// --help, exit 64 for every command: never the risk code 2 scan uses, never 0.
func TestUsageErrorsExit64WithOneLine(t *testing.T) {
	for _, name := range commands(t) {
		args := []string{name, "--bogus"}
		code, out, errs := call(args...)
		want := "oomwatch " + name + ": unknown flag: --bogus (see oomwatch " + name + " --help)\n"
		if name == "help" {
			// help takes any words: the flag is still unknown to it.
			want = "oomwatch help: unknown flag: --bogus (see oomwatch help --help)\n"
		}
		if code != exitUsage || out != "" || errs != want {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want 64 and %q", args, code, out, errs, want)
		}
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"version", "extra"}, `oomwatch version: unexpected argument "extra"`},
		{[]string{"help", "frobnicate"}, `oomwatch help: no help for "frobnicate"`},
		{[]string{"frobnicate"}, `oomwatch: unknown command "frobnicate"`},
		{[]string{"thaw"}, "oomwatch thaw: want 1 argument(s), got 0"},
		{[]string{"scan", "x"}, `oomwatch scan: unexpected argument "x"`},
		{[]string{"incidents", "--limit", "-1"}, "oomwatch incidents: --limit -1: want 0 or more"},
		{[]string{"run", "--window", "soon"}, `oomwatch run: invalid argument "soon" for "--window" flag`},
	} {
		code, _, errs := call(tt.args...)
		if code != exitUsage || !strings.HasPrefix(errs, tt.want) || strings.Count(errs, "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q; want 64 and one line starting %q", tt.args, code, errs, tt.want)
		}
	}
}

// A config file the daemon refuses exits 78 (EX_CONFIG) from run and from
// check-config alike, so the unit can refuse to restart into it.
func TestBadConfigExits78(t *testing.T) {
	p := writeConfig(t, "ladder: [reset-adj, reboot]\n")
	code, _, errs := call("run", "--config", p, "--cgroup-root", fakeTree(t), "--proc-root", fakeProcs(t), "--status-socket", "", "--metrics-listen", "")
	if code != exitConfig || !strings.Contains(errs, p+":1:") {
		t.Errorf("run: exit %d, %q", code, errs)
	}
	if code, _, errs := call("check-config", p); code != exitConfig || !strings.Contains(errs, p+":1:") {
		t.Errorf("check-config: exit %d, %q", code, errs)
	}
	alerts := writeConfig(t, "alerts:\n  webhook:\n    - name: w\n      url: ftp://x\n")
	if code, _, errs := call("run", "--config", alerts, "--cgroup-root", fakeTree(t), "--proc-root", fakeProcs(t), "--status-socket", "", "--metrics-listen", ""); code != exitConfig {
		t.Errorf("run with a bad alerts section: exit %d, %q", code, errs)
	}
}

func TestVersionCommandAndFlagPrintTheVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		if code, out, errs := call(args...); code != 0 || out != "oomwatch "+version+"\n" || errs != "" {
			t.Errorf("%v: exit %d %q %q", args, code, out, errs)
		}
	}
}

// The completion scripts come from the same flag definitions the commands
// parse: each shell's script is printed, and the completion engine the
// scripts call answers with the real flags and values.
func TestCompletionScriptsAndEngineOfferTheRealFlags(t *testing.T) {
	for shell, want := range map[string]string{"bash": "complete -o default -F __start_oomwatch oomwatch", "zsh": "#compdef oomwatch", "fish": "complete -c oomwatch"} {
		code, out, errs := call("completion", shell)
		if code != 0 || !strings.Contains(out, want) || errs != "" {
			t.Errorf("completion %s: exit %d, %d bytes, stderr %q", shell, code, len(out), errs)
		}
	}
	for _, tt := range []struct {
		args []string
		want []string
	}{
		{[]string{"__complete", ""}, []string{"run", "scan", "status", "incidents", "thaw", "check-config", "completion"}},
		{[]string{"__complete", "run", "--lad"}, []string{"--ladder"}},
		{[]string{"__complete", "run", "--ladder", ""}, []string{"reset-adj", "raise-limit", "freeze", "kill"}},
		{[]string{"__complete", "run", "--kill-mode", ""}, []string{"largest", "cgroup"}},
		{[]string{"__complete", "help", ""}, []string{"scan", "run"}},
		{[]string{"__complete", "scan", "--"}, []string{"--json", "--max-cgroups", "--cgroup-root"}},
	} {
		code, out, _ := call(tt.args...)
		for _, w := range tt.want {
			if code != 0 || !strings.Contains("\n"+out, "\n"+w) {
				t.Errorf("%v: exit %d, lacks %q:\n%s", tt.args, code, w, out)
			}
		}
	}
}
