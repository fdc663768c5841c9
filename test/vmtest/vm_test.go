package vmtest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/oomwatch/oomwatch/test/testtier"
)

// Environment knobs of the host test:
//
//	OOMWATCH_VM_COMBOS=6.12-v2,6.1-v1  run only these combinations (default: all of Combos)
//	OOMWATCH_VM_RUN=TestLoop           -test.run for the guest binary
//	OOMWATCH_VM_CONSOLE=1              stream every VM's serial console to stderr
//	OOMWATCH_VM_APPEND="loglevel=7"    extra kernel command line (later words win)
//	OOMWATCH_VM_NO_DAEMON=1            harness development only: run without /bin/oomwatch
//	                                   (skips cmd/oomwatch; guest daemon scenarios then skip)
const (
	guestDaemon = "/bin/oomwatch"
	guestHog    = "/bin/hog"
	guestTests  = "/bin/guest.test"
)

func TestVM(t *testing.T) {
	if testing.Short() {
		t.Skip("VM tier skipped in -short mode")
	}
	if err := CheckHost(); err != nil {
		testtier.Require(t, testtier.VM, err.Error())
	}
	kernels, err := Kernels()
	if err != nil {
		testtier.Require(t, testtier.VM, err.Error())
	}
	byName := map[string]Kernel{}
	for _, k := range kernels {
		byName[k.Name] = k
	}

	root := moduleRoot(t)
	bin := t.TempDir()
	t0 := time.Now()
	files := map[string]string{
		guestTests: goBuild(t, root, filepath.Join(bin, "guest.test"), "test", "-c", "-tags", "vmguest", "./test/vmtest/guest"),
		guestHog:   goBuild(t, root, filepath.Join(bin, "hog"), "build", "./test/testbin/hog"),
	}
	env := map[string]string{"OOMWATCH_VM_HOG": guestHog}
	noDaemon := os.Getenv("OOMWATCH_VM_NO_DAEMON") == "1"
	if noDaemon {
		t.Logf("OOMWATCH_VM_NO_DAEMON=1: running without %s (development only)", guestDaemon)
	} else {
		files[guestDaemon] = goBuild(t, root, filepath.Join(bin, "oomwatch"), "build", "./cmd/oomwatch")
		env["OOMWATCH_VM_DAEMON"] = guestDaemon
	}
	t.Logf("built guest binaries in %v", time.Since(t0).Round(time.Millisecond))

	combos := Combos
	if s := os.Getenv("OOMWATCH_VM_COMBOS"); s != "" {
		combos = nil
		for _, c := range Combos {
			if strings.Contains(","+s+",", ","+c.String()+",") {
				combos = append(combos, c)
			}
		}
		if len(combos) == 0 {
			t.Fatalf("OOMWATCH_VM_COMBOS=%q matches none of %v", s, Combos)
		}
	}
	guestArgs := "-test.v -test.count=1 -test.timeout=150s"
	if r := os.Getenv("OOMWATCH_VM_RUN"); r != "" {
		guestArgs += " -test.run " + shellQuote(r)
	}

	for _, c := range combos {
		t.Run(c.String(), func(t *testing.T) {
			k, ok := byName[c.Kernel]
			if !ok {
				testtier.Require(t, testtier.VM, "kernel "+c.Kernel+" not in cache; run test/vmtest/fetch.sh")
			}
			e := map[string]string{"OOMWATCH_VM_MODE": string(c.Mode), "OOMWATCH_VM_KERNEL": c.Kernel}
			for k, v := range env {
				e[k] = v
			}
			b := Boot{
				Kernel: k, Mode: c.Mode, Files: files, Env: e,
				Cmd:     guestTests + " " + guestArgs,
				Timeout: 3 * time.Minute,
				Append:  os.Getenv("OOMWATCH_VM_APPEND"),
			}
			if os.Getenv("OOMWATCH_VM_CONSOLE") == "1" {
				b.Log = os.Stderr
			}
			res, err := Run(context.Background(), b)
			t.Logf("%s (%s): boot %.1fs, qemu start→exit %.1fs, guest exit %d",
				c, k.Release, res.Boot.Seconds(), res.Elapsed.Seconds(), res.ExitCode)
			if err != nil {
				t.Fatal(err)
			}
			report(t, res, noDaemon)
		})
	}
}

// report turns the guest's tests into subtests of t.
func report(t *testing.T, res Result, noDaemon bool) {
	t.Helper()
	if strings.Contains(res.Output, "VMTEST_SETUP_ERROR") {
		t.Errorf("guest /init setup failed:\n%s", grepLines(res.Output, "VMTEST_SETUP_ERROR"))
	}
	tests := ParseGoTest(res.Output)
	if len(tests) == 0 {
		t.Fatalf("guest ran no tests (exit %d); console tail:\n%s", res.ExitCode, tail(res.Output, 60))
	}
	failed := false
	for _, g := range tests {
		g := g
		// A scenario that declares itself not applicable to this kernel and
		// cgroup combination (v1 on a kernel without it, a benchmark outside
		// `make bench`) is not a skipped tier: list it, create no subtest.
		if g.Result == "SKIP" && strings.Contains(g.Output, "VMTEST-UNSUPPORTED: ") {
			t.Logf("not applicable here: %s: %s", g.Name, strings.TrimSpace(grepLines(g.Output, "VMTEST-UNSUPPORTED: ")))
			continue
		}
		t.Run(g.Name, func(t *testing.T) {
			switch {
			case g.Result == "PASS":
				t.Log("guest output:\n" + g.Output)
			case g.Result == "SKIP" && noDaemon && strings.Contains(g.Output, "VMTEST-NO-DAEMON: "):
				t.Skip("no daemon (OOMWATCH_VM_NO_DAEMON=1):\n" + g.Output)
			case g.Result == "SKIP":
				failed = true
				t.Errorf("guest test skipped without declaring itself unsupported (guest.Unsupported):\n%s", g.Output)
			case g.Result == "FAIL":
				failed = true
				t.Errorf("guest test failed:\n%s", g.Output)
			default:
				failed = true
				t.Errorf("guest test never finished (crash or guest timeout):\n%s\n--- console tail:\n%s", g.Output, tail(res.Output, 30))
			}
		})
	}
	if res.ExitCode != 0 && !failed {
		t.Errorf("guest test binary exited %d though no test failed; console tail:\n%s", res.ExitCode, tail(res.Output, 40))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func moduleRoot(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(out)) == "" || strings.TrimSpace(string(out)) == os.DevNull {
		t.Fatalf("cannot find the module root: go env GOMOD: %v %s", err, out)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

// goBuild runs `go <args> -o out` with CGO_ENABLED=0 (static, for the initramfs) and returns out.
func goBuild(t testing.TB, root, out string, args ...string) string {
	t.Helper()
	// -s -w: smaller initramfs, faster boot (Go tracebacks still work without symbol tables)
	full := append([]string{args[0], "-o", out, "-ldflags=-s -w"}, args[1:]...)
	cmd := exec.Command("go", full...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(full, " "), err, b)
	}
	if err := checkStatic(out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestParseGoTest(t *testing.T) {
	out := "VMTEST_START\n=== RUN   TestA\n    a_test.go:1: hi\n--- PASS: TestA (0.01s)\n=== RUN   TestB\n" +
		"[    3.1] Memory cgroup out of memory: Killed process 12 (hog)\n=== RUN   TestB/sub\n    --- FAIL: TestB/sub (0.00s)\n--- FAIL: TestB (0.10s)\n" +
		"panic: inner [recovered]\n=== RUN   TestC\n    c.go:2: VMTEST-UNSUPPORTED: no v1\n--- SKIP: TestC (0.00s)\n=== RUN   TestD\npanic: boom\nVMTEST_EXIT=2\n"
	got := ParseGoTest(out)
	want := []struct{ name, res string }{{"TestA", "PASS"}, {"TestB", "FAIL"}, {"TestC", "SKIP"}, {"TestD", ""}}
	if len(got) != len(want) {
		t.Fatalf("got %d tests: %+v", len(got), got)
	}
	for i, w := range want {
		if got[i].Name != w.name || got[i].Result != w.res {
			t.Errorf("test %d = %s/%q, want %s/%q", i, got[i].Name, got[i].Result, w.name, w.res)
		}
	}
	if !strings.Contains(got[1].Output, "Killed process 12") || !strings.Contains(got[3].Output, "panic: boom") || !strings.Contains(got[1].Output, "panic: inner") {
		t.Errorf("outputs not attributed: %q / %q", got[1].Output, got[3].Output)
	}
}
