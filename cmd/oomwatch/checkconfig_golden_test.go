package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Every file in testdata/check-config gives check-config's exit code,
// stdout and stderr of its golden .out file, the file's path shown as FILE
// (go test ./cmd/oomwatch -run TestCheckConfigGolden -update rewrites them).
func TestCheckConfigGolden(t *testing.T) {
	inputs, err := filepath.Glob(filepath.Join("testdata", "check-config", "*.yaml"))
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no inputs: %v", err)
	}
	for _, in := range inputs {
		body, err := os.ReadFile(in)
		if err != nil {
			t.Fatal(err)
		}
		// A copy in a private directory: the checkout's owner and modes
		// are not the test's business.
		p := writeConfig(t, string(body))
		code, out, errs := call("check-config", p)
		got := strings.ReplaceAll(fmt.Sprintf("exit %d\n--- stdout\n%s--- stderr\n%s", code, out, errs), p, "FILE")
		golden := strings.TrimSuffix(in, ".yaml") + ".out"
		if *update {
			if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatalf("%v (run with -update to create it)", err)
		}
		if got != string(want) {
			t.Errorf("check-config %s differs from %s (run with -update if the change is meant):\n%s", in, golden, got)
		}
	}
}
