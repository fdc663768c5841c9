#!/bin/bash
# The LXC variant of the systemd-VM image (/work/shared/LXC-SIDECAR.md,
# part B): build-image.sh's Debian 12 + systemd rootfs with lxc and
# busybox-static added, customize.sh's harness, then lxc-customize.sh (LXC
# without network or AppArmor, two privileged busybox containers created at
# build time). Needs root.
#
#   lxc-build-image.sh OUTDIR KPKG
#
# Same outputs as build-image.sh: OUTDIR/root.img, vmlinuz, release, times.
# (A copy of build-image.sh with a longer --include and one more step; if
# build-image.sh took EXTRA_INCLUDE and a post-customize hook, this file
# could shrink to a call of it.)
set -euo pipefail
OUT=$1 KPKG=$2
D=$(cd "$(dirname "$0")" && pwd)
MIRROR=${MIRROR:-$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
mkdir -p "$OUT"
W=$(mktemp -d "$OUT/.build.XXXXXX")
trap 'rm -rf "$W"' EXIT
t0=$(date +%s)

mkdir -p "$W/kernel"
chmod 755 "$W" "$W/kernel"
(cd "$W/kernel" && apt-get download -qq "$KPKG" 2> >(grep -v 'unsandboxed as root' >&2) && dpkg -x ./*.deb x)
KVER=$(ls "$W/kernel/x/lib/modules")
t1=$(date +%s)

# lxc's Depends come along (liblxc1, dnsmasq-base, iproute2, nftables, ...);
# minbase installs no Recommends (no apparmor, lxcfs, lxc-templates, uidmap)
debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,udev,kmod,procps,lxc,busybox-static \
	bookworm "$W/rootfs" "$MIRROR" >"$W/debootstrap.log" 2>&1 || { tail -20 "$W/debootstrap.log" >&2; exit 1; }
t2=$(date +%s)

"$D/customize.sh" "$W/rootfs" "$W/kernel/x" "$KVER"
"$D/lxc-customize.sh" "$W/rootfs"
mkfs.ext4 -q -F -L root -d "$W/rootfs" "$W/root.img" 1G
t3=$(date +%s)

cp "$W"/kernel/x/boot/vmlinuz-* "$W/vmlinuz"
echo "$KVER" >"$W/release"
mv "$W/root.img" "$W/vmlinuz" "$W/release" "$OUT/"
echo "kernel=$((t1 - t0))s debootstrap=$((t2 - t1))s customize+mkfs=$((t3 - t2))s total=$((t3 - t0))s" | tee "$OUT/times" >&2
