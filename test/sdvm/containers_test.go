package sdvm

import (
	"testing"
	"time"
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
	guestTest{variant: Containers, payload: "ctrpayload", version: "0.0~sdvmctr", timeout: 10 * time.Minute,
		helpers: []string{"github.com/oomwatch/oomwatch/test/testbin/hog"}}.run(t)
}
