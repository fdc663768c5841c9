// Package archtest fails when a package imports what it must not: data
// flows one way (kernel → eventfd → watchdog → policy → report) and the
// leaves stay mechanism only (no logging, no policy).
package archtest

import (
	"encoding/json"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const mod = "github.com/oomwatch/oomwatch"

type pkg struct {
	ImportPath string
	Imports    []string
	Standard   bool
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	out, err := exec.Command("go", "list", "-json", mod+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

func isStd(imp string) bool { return !strings.Contains(strings.Split(imp, "/")[0], ".") }

// allowed lists, for every package of the product, the packages of this
// module it may import. Data flows one way: kernel → eventfd → watchdog →
// policy → report → alert, journal, status, metrics; the leaves know only
// the kernel's files; cmd wires everything. A new package needs its line.
var allowed = map[string][]string{
	"eventfd":            {},
	"internal/cgroupfs":  {},
	"internal/procfs":    {},
	"internal/cgnames":   {},
	"internal/ctrstate":  {"internal/cgnames"},
	"internal/kmsg":      {},
	"internal/rootowned": {},
	"systemd":            {},
	"packaging":          {},
	"watchdog":           {"eventfd", "internal/cgnames", "internal/cgroupfs", "internal/procfs"},
	"policy":             {"watchdog", "internal/cgnames", "internal/cgroupfs", "internal/procfs"},
	"alert":              {"policy", "watchdog", "internal/cgnames", "internal/cgroupfs", "internal/rootowned"},
	"internal/history":   {"policy", "watchdog"},
	"internal/statusd":   {"policy", "watchdog"},
	"internal/metrics":   {"alert", "policy", "watchdog", "internal/procfs"},
	"internal/config":    {"alert", "policy", "watchdog", "internal/cgnames", "internal/rootowned"},
	"report":             {"alert", "policy", "watchdog", "internal/cgroupfs", "internal/config", "internal/history", "internal/metrics", "internal/statusd"},
	"cmd/oomwatch": {"alert", "eventfd", "policy", "report", "systemd", "watchdog", "internal/cgnames", "internal/cgroupfs",
		"internal/config", "internal/ctrstate", "internal/history", "internal/kmsg", "internal/metrics", "internal/procfs", "internal/rootowned", "internal/statusd"},
}

// Every product package imports only what allowed gives it (test rigs under
// test/ may use anything, the product never uses them), and the leaves use
// nothing outside the standard library and golang.org/x/sys/unix.
func TestEveryPackageImportsOnlyWhatItMay(t *testing.T) {
	leaves := map[string]bool{"eventfd": true, "internal/cgroupfs": true, "internal/procfs": true}
	seen := map[string]bool{}
	for _, p := range listPackages(t) {
		rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, mod), "/")
		if strings.HasPrefix(rel, "test/") {
			continue
		}
		may, ok := allowed[rel]
		if !ok {
			t.Errorf("package %s has no import rule: add it to allowed", rel)
			continue
		}
		seen[rel] = true
		for _, imp := range p.Imports {
			if leaves[rel] && !isStd(imp) && imp != "golang.org/x/sys/unix" {
				t.Errorf("%s imports %s: leaves may use only the standard library and golang.org/x/sys/unix", rel, imp)
			}
			if !strings.HasPrefix(imp, mod+"/") {
				continue
			}
			dep := strings.TrimPrefix(imp, mod+"/")
			if !slices.Contains(may, dep) {
				t.Errorf("%s imports %s: not in its allowed imports %v (data flows kernel → eventfd → watchdog → policy → report, never back)", rel, dep, may)
			}
		}
	}
	for rel := range allowed {
		if !seen[rel] {
			t.Errorf("allowed names %s, which go list does not find: did it move?", rel)
		}
	}
}
