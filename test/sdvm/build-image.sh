#!/bin/bash
# Build a Debian 12 root filesystem with systemd as PID 1 and the vmtest
# runner baked in, plus the cloud kernel that boots it without an initramfs.
# Needs root (debootstrap, chroot).
#
#   build-image.sh OUTDIR KPKG [VARIANT]
#
# VARIANT (default base) adds packages to debootstrap's --include and runs
# VARIANT-customize.sh ROOTFS after customize.sh:
#   base  systemd, dbus, udev, kmod, procps
#   lxc   + lxc and busybox-static; lxc-customize.sh creates the containers
#   containers  + docker.io, podman and busybox-static (a 2G root);
#         containers-customize.sh sets both runtimes up for a guest without
#         network (the container image is imported by the test's payload)
#   peers + lxc, busybox-static, earlyoom and systemd-oomd (the peers of
#         make bench-peers); peers-customize.sh creates the lxc containers
#         and leaves both OOM daemons disabled
#
# Leaves OUTDIR/root.img (ext4, sparse), OUTDIR/vmlinuz, OUTDIR/release
# (kernel release) and OUTDIR/times.
set -euo pipefail
OUT=$1 KPKG=$2 VARIANT=${3:-base}
D=$(cd "$(dirname "$0")" && pwd)
INCLUDE=systemd,systemd-sysv,dbus,udev,kmod,procps
SIZE=1G
case $VARIANT in
base) ;;
# lxc's Depends come along (liblxc1, dnsmasq-base, iproute2, nftables, ...);
# minbase installs no Recommends (no apparmor, lxcfs, lxc-templates, uidmap)
lxc) INCLUDE+=,lxc,busybox-static ;;
# docker.io pulls containerd, runc, tini, iptables; podman conmon,
# containers-common (which needs a network stack: the CNI plugins, the
# smaller one) and crun; no Recommends (no apparmor,
# slirp4netns, uidmap, buildah)
containers) INCLUDE+=,docker.io,podman,crun,containernetworking-plugins,busybox-static SIZE=2G ;;
# 2G: room for the two daemons next to lxc's dependencies
peers) INCLUDE+=,lxc,busybox-static,earlyoom,systemd-oomd SIZE=2G ;;
*) echo "build-image.sh: unknown variant $VARIANT" >&2; exit 2 ;;
esac
MIRROR=${MIRROR:-$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
mkdir -p "$OUT"
W=$(mktemp -d "$OUT/.build.XXXXXX")
trap 'rm -rf "$W"' EXIT
t0=$(date +%s)

# 1. kernel: download + unpack, never installed (no initramfs needed: NVMe + ext4 are built in)
mkdir -p "$W/kernel"
chmod 755 "$W" "$W/kernel" # apt-get download drops privileges to _apt when it can
(cd "$W/kernel" && apt-get download -qq "$KPKG" 2> >(grep -v 'unsandboxed as root' >&2) && dpkg -x ./*.deb x)
KVER=$(ls "$W/kernel/x/lib/modules")
t1=$(date +%s)

# 2. rootfs
debootstrap --variant=minbase --include="$INCLUDE" \
	bookworm "$W/rootfs" "$MIRROR" >"$W/debootstrap.log" 2>&1 || { tail -20 "$W/debootstrap.log" >&2; exit 1; }
t2=$(date +%s)

# 3. customise + harness (+ the variant's own step), 4. ext4 image straight from the directory
"$D/customize.sh" "$W/rootfs" "$W/kernel/x" "$KVER"
if [ "$VARIANT" != base ]; then
	"$D/$VARIANT-customize.sh" "$W/rootfs"
fi
mkfs.ext4 -q -F -L root -d "$W/rootfs" "$W/root.img" "$SIZE"
t3=$(date +%s)

cp "$W"/kernel/x/boot/vmlinuz-* "$W/vmlinuz"
echo "$KVER" >"$W/release"
mv "$W/root.img" "$W/vmlinuz" "$W/release" "$OUT/"
echo "variant=$VARIANT kernel=$((t1 - t0))s debootstrap=$((t2 - t1))s customize+mkfs=$((t3 - t2))s total=$((t3 - t0))s" | tee "$OUT/times" >&2
