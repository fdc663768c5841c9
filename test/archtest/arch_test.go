// Package archtest fails when a package imports what it must not: data
// flows one way (kernel → eventfd → watchdog → policy → alerts) and the
// leaves stay mechanism only (no logging, no policy).
package archtest

import (
	"encoding/json"
	"os/exec"
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

func TestImportRules(t *testing.T) {
	leaves := map[string]bool{mod + "/eventfd": true, mod + "/internal/cgroupfs": true, mod + "/internal/procfs": true}
	forbidden := map[string][]string{
		mod + "/watchdog": {mod + "/policy", mod + "/cmd/", mod + "/systemd"},
		mod + "/policy":   {mod + "/cmd/"},
		mod + "/systemd":  {mod + "/watchdog", mod + "/policy", mod + "/cmd/"},
	}
	seen := 0
	for _, p := range listPackages(t) {
		if leaves[p.ImportPath] {
			seen++
			for _, imp := range p.Imports {
				if !isStd(imp) && imp != "golang.org/x/sys/unix" {
					t.Errorf("%s imports %s: leaves may use only the standard library and golang.org/x/sys/unix", p.ImportPath, imp)
				}
			}
		}
		for _, bad := range forbidden[p.ImportPath] {
			for _, imp := range p.Imports {
				if strings.HasPrefix(imp, bad) {
					t.Errorf("%s imports %s: data flows kernel → eventfd → watchdog → policy, never back", p.ImportPath, imp)
				}
			}
		}
	}
	if seen != len(leaves) {
		t.Fatalf("found %d of %d leaf packages: did one move?", seen, len(leaves))
	}
}
