#!/bin/bash
# The containers image variant, on top of customize.sh: Docker (docker.io
# 20.10) and Podman 4.3 as root, set up for a guest without network. No
# container image is baked in: the test's payload imports one (busybox and
# the test hog) into each runtime.
#   dockerd: no bridge, no iptables rules; cgroup driver its default
#            (systemd on cgroup v2), the test switches it
#   podman:  no network backend needed (containers run with --network none);
#            its events go to a file, not the journal the test searches
# usage: containers-customize.sh ROOTFS
set -euo pipefail
R=$1

mkdir -p "$R/etc/docker"
cat >"$R/etc/docker/daemon.json" <<'JSON'
{
  "bridge": "none",
  "iptables": false,
  "ip6tables": false,
  "ip-masq": false,
  "userland-proxy": false
}
JSON
mkdir -p "$R/etc/containers/containers.conf.d"
cat >"$R/etc/containers/containers.conf.d/vmtest.conf" <<'CONF'
[containers]
netns = "none"

[engine]
events_logger = "file"
CONF

# a looping container floods the kernel log (one OOM dump per retry): the
# runner saves only the journal's tail
sed -i 's/journalctl -b --no-pager -o short-monotonic/journalctl -b --no-pager -n 5000 -o short-monotonic/' \
	"$R/usr/local/sbin/vmtest-runner"
grep -q -- '-n 5000' "$R/usr/local/sbin/vmtest-runner" || { echo "containers-customize.sh: runner journal line not found" >&2; exit 1; }
