package sdvm

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/oomwatch/oomwatch/test/testtier"
)

// guestTest is one systemd-VM test: which image variant it boots, the
// payload directory of this package whose run.sh runs in the guest (with
// lib.sh, the shared shell helpers, beside it), the static helpers built
// into the payload, the .deb's version and how long the VM may take.
type guestTest struct {
	variant string
	payload string   // lxcpayload, ctrpayload, …
	helpers []string // import paths of binaries for the payload (hog, sdctl)
	version string   // main.version of the oomwatch in the .deb
	timeout time.Duration
}

// run builds the payload (the .deb, the helpers, run.sh and lib.sh), boots
// the variant's image with it, fails t on every FAIL: line of the guest, a
// non-zero exit or a VM that does not finish, and returns what the VM
// produced. $OOMWATCH_SDVM_OUT keeps the console, journal, … for a look.
func (g guestTest) run(t *testing.T) Result {
	t.Helper()
	if testing.Short() {
		t.Skip("boots a VM")
	}
	if err := CheckHost(); err != nil {
		testtier.Require(t, testtier.VM, err.Error())
	}
	ctx := context.Background()
	t0 := time.Now()
	img, err := EnsureImage(ctx, g.variant, func(s string) { t.Log(s) })
	if err != nil {
		testtier.Require(t, testtier.VM, "no "+g.variant+" systemd VM image: "+err.Error()+" (run test/sdvm/ensure-image.sh "+g.variant+" as root)")
	}
	t.Logf("image %s (kernel %s) ready in %v; build times: %s", img.Dir, img.Release, time.Since(t0).Round(time.Millisecond), img.Times)

	top := filepath.Join(Dir(), "..", "..")
	work := t.TempDir()
	payload := filepath.Join(work, "payload")
	if err := os.MkdirAll(payload, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := goBuild(t, work, "oomwatch", "github.com/oomwatch/oomwatch/cmd/oomwatch", "-s -w -X main.version="+g.version)
	for _, pkg := range g.helpers {
		goBuild(t, payload, filepath.Base(pkg), pkg, "-s -w")
	}
	deb := buildDeb(t, top, bin, payload)
	t.Logf("package %s", filepath.Base(deb))
	for _, f := range []string{filepath.Join(g.payload, "run.sh"), "lib.sh"} {
		b, err := os.ReadFile(filepath.Join(Dir(), f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(payload, filepath.Base(f)), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}

	out := filepath.Join(work, "vm")
	if d := os.Getenv("OOMWATCH_SDVM_OUT"); d != "" {
		out = d
	}
	tq := time.Now()
	res, err := Run(ctx, img, payload, out, g.timeout)
	t.Logf("guest output:\n%s", res.Output)
	for _, l := range strings.Split(res.Output, "\n") {
		if strings.HasPrefix(l, "FAIL: ") {
			t.Error(l)
		}
	}
	if err != nil || res.ExitCode != 0 {
		if c, rerr := os.ReadFile(res.Console); rerr == nil {
			t.Logf("console (last 4 KB):\n%s", tail(string(c), 4096))
		}
		if j, rerr := os.ReadFile(filepath.Join(res.ResultsDir, "journal.txt")); rerr == nil {
			t.Logf("guest journal, oomwatch lines:\n%s", tail(grep(string(j), "oomwatch"), 16384))
		}
		t.Fatalf("VM run: exit %d, %v", res.ExitCode, err)
	}
	t.Logf("accel %s: waited for the VM lock and ran in %v; qemu start→poweroff %v, boot (system running) %v, steps (guest uptime s): %s",
		Accel(), time.Since(tq).Round(100*time.Millisecond), res.Elapsed.Round(100*time.Millisecond), res.Boot.Round(100*time.Millisecond), marks(res.Marks))
	return res
}
