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

// TestLXCInSystemd installs the .deb into Debian 12 with systemd as PID 1
// and lxc 5, and checks in the guest (lxcpayload/run.sh), against two real
// privileged LXC containers created at image-build time:
//   - web1 (lxc-start; lxc.cgroup2.memory.max = 48M, lxc.proc.oom_score_adj =
//     -1000) with a memory toucher added by lxc-attach that sets itself to
//     -1000 (in lxc.payload.web1/.lxc, a child without memory files): a real
//     OOM loop. oomwatch, started by systemd, opens event=incident
//     verdict=loop for /lxc.payload.web1, resets the attached task (reset-adj,
//     verified), the kernel kills it, the container keeps running with its
//     init untouched; the alert documents and incidents.jsonl name
//     container web1.
//   - web2 (lxc@web2.service; no -1000): the kernel kills the toucher by
//     itself; no incident, no action; the container keeps running.
func TestLXCInSystemd(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM")
	}
	if err := CheckHost(); err != nil {
		testtier.Require(t, testtier.VM, err.Error())
	}
	ctx := context.Background()
	t0 := time.Now()
	img, err := EnsureImage(ctx, LXC, func(s string) { t.Log(s) })
	if err != nil {
		testtier.Require(t, testtier.VM, "no LXC systemd VM image: "+err.Error()+" (run test/sdvm/ensure-image.sh lxc as root)")
	}
	t.Logf("image %s (kernel %s) ready in %v; build times: %s", img.Dir, img.Release, time.Since(t0).Round(time.Millisecond), img.Times)

	top := filepath.Join(Dir(), "..", "..")
	work := t.TempDir()
	payload := filepath.Join(work, "payload")
	if err := os.MkdirAll(payload, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := goBuild(t, work, "oomwatch", "github.com/oomwatch/oomwatch/cmd/oomwatch", "-s -w -X main.version=0.0~sdvmlxc")
	deb := buildDeb(t, top, bin, payload)
	t.Logf("package %s", filepath.Base(deb))
	run, err := os.ReadFile(filepath.Join(Dir(), "lxcpayload", "run.sh"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(payload, "run.sh"), run, 0o755); err != nil {
		t.Fatal(err)
	}

	out := filepath.Join(work, "vm")
	if d := os.Getenv("OOMWATCH_SDVM_OUT"); d != "" {
		out = d
	}
	tq := time.Now()
	res, err := Run(ctx, img, payload, out, 6*time.Minute)
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
}
