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

// TestContainersInSystemd installs the .deb into Debian 12 with systemd as
// PID 1, docker.io 20.10 and podman 4.3 (the containers image variant), and
// checks in the guest (ctrpayload/run.sh), on cgroup v2, for Docker with its
// systemd and its cgroupfs cgroup driver and for Podman with
// --cgroup-manager=systemd and cgroupfs, with an image of busybox and the
// hog imported from a tar (the guest has no network):
//   - a container run with --memory 48m --memory-swap 48m
//     --oom-score-adj -1000 whose hog fills it: a real OOM loop. oomwatch
//     (its defaults, plus an exec sink capturing the alert documents) opens
//     event=incident verdict=loop for the container's cgroup, resets the hog
//     (reset-adj, verified), the kernel kills it, the container keeps running
//     with the same init at -1000; the incident, the alert documents,
//     incidents.jsonl and oomwatch status name it as docker ps / podman ps
//     do: container (short id) and container_name.
//   - a control container run without -1000: the kernel kills the hog by
//     itself; no incident, no action; the container keeps running.
//
// Docker's containers run with --security-opt apparmor=unconfined: the
// guest kernel has AppArmor on and the image has no apparmor_parser.
func TestContainersInSystemd(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM")
	}
	if err := CheckHost(); err != nil {
		testtier.Require(t, testtier.VM, err.Error())
	}
	ctx := context.Background()
	t0 := time.Now()
	img, err := EnsureImage(ctx, Containers, func(s string) { t.Log(s) })
	if err != nil {
		testtier.Require(t, testtier.VM, "no containers systemd VM image: "+err.Error()+" (run test/sdvm/ensure-image.sh containers as root)")
	}
	t.Logf("image %s (kernel %s) ready in %v; build times: %s", img.Dir, img.Release, time.Since(t0).Round(time.Millisecond), img.Times)

	top := filepath.Join(Dir(), "..", "..")
	work := t.TempDir()
	payload := filepath.Join(work, "payload")
	if err := os.MkdirAll(payload, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := goBuild(t, work, "oomwatch", "github.com/oomwatch/oomwatch/cmd/oomwatch", "-s -w -X main.version=0.0~sdvmctr")
	goBuild(t, payload, "hog", "github.com/oomwatch/oomwatch/test/testbin/hog", "-s -w")
	deb := buildDeb(t, top, bin, payload)
	t.Logf("package %s", filepath.Base(deb))
	run, err := os.ReadFile(filepath.Join(Dir(), "ctrpayload", "run.sh"))
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
	res, err := Run(ctx, img, payload, out, 10*time.Minute)
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
