#!/bin/bash
# The lxc image variant, on top of customize.sh: no bridge, no
# AppArmor profile, and the test containers created at image-build time
# (lxc-create -t busybox takes 12 s under TCG but 0.3 s in a chroot here).
#   web1: memory.max 48M, lxc.proc.oom_score_adj = -1000 (init and all it
#         starts are unkillable: a real OOM loop once something fills it)
#   web2: memory.max 48M, nothing at -1000 (the negative control)
# usage: lxc-customize.sh ROOTFS
set -euo pipefail
R=$1

sed -i 's/^USE_LXC_BRIDGE=.*/USE_LXC_BRIDGE="false"/' "$R/etc/default/lxc-net"
ln -sf /dev/null "$R/etc/systemd/system/lxc-net.service"
cat >"$R/etc/lxc/default.conf" <<'CONF'
lxc.net.0.type = empty
lxc.apparmor.profile = unconfined
CONF

# lxc-create's busybox template needs /proc for nothing but tolerates its absence
for n in web1 web2; do
	chroot "$R" lxc-create -q -t busybox -n "$n" >/dev/null
	echo "lxc.cgroup2.memory.max = 48M" >>"$R/var/lib/lxc/$n/config"
done
echo "lxc.proc.oom_score_adj = -1000" >>"$R/var/lib/lxc/web1/config"

# a looping container floods the kernel log (one OOM dump per retry): the
# runner saves only the journal's tail
sed -i 's/journalctl -b --no-pager -o short-monotonic/journalctl -b --no-pager -n 5000 -o short-monotonic/' \
	"$R/usr/local/sbin/vmtest-runner"
grep -q -- '-n 5000' "$R/usr/local/sbin/vmtest-runner" || { echo "lxc-customize.sh: runner journal line not found" >&2; exit 1; }
