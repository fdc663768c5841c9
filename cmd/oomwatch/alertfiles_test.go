package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/oomwatch/oomwatch/test/testtier"
)

// Running as root, a hook others can rewrite is refused like a config file
// others can rewrite: run exits 78 and check-config says why, naming the
// sink, the field and the file.
func TestUnsafeHookRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		testtier.Require(t, testtier.Host, "needs root: the files a config names are checked only when running as root")
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	hook := filepath.Join(dir, "page")
	if err := os.WriteFile(hook, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	p := writeConfig(t, "alerts:\n  exec:\n    - name: page\n      command: [\""+hook+"\"]\n")
	if code, out, errs := call("check-config", p); code != 0 {
		t.Fatalf("check-config of a safe hook: exit %d, %q %q", code, out, errs)
	}
	if err := os.Chmod(hook, 0o777); err != nil {
		t.Fatal(err)
	}
	want := p + ":4:16: alerts.exec[0] (page): command[0]: " + hook + ": the file is writable by group or other (mode 0777): oomwatch runs as root and must not take orders from other users — run chmod go-w " + hook
	if code, _, errs := call("check-config", p); code != exitConfig || !strings.Contains(errs, want) {
		t.Fatalf("check-config: exit %d, %q\nwant %d and %s", code, errs, exitConfig, want) // run would start
	}
	code, _, errs := call("run", "--config", p, "--cgroup-root", fakeTree(t), "--proc-root", fakeProcs(t), "--status-socket", "", "--metrics-listen", "")
	if code != exitConfig || !strings.Contains(errs, want) {
		t.Errorf("run: exit %d, %q\nwant %d and %s", code, errs, exitConfig, want)
	}
}
