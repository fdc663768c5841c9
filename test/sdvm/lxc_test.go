package sdvm

import (
	"testing"
	"time"
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
	guestTest{variant: LXC, payload: "lxcpayload", version: "0.0~sdvmlxc", timeout: 6 * time.Minute}.run(t)
}
