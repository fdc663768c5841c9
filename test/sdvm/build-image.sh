#!/bin/bash
# Build a Debian 12 root filesystem with systemd as PID 1 and the vmtest
# runner baked in (see /work/shared/SYSTEMD-VM.md), plus the cloud kernel
# that boots it without an initramfs. Needs root (debootstrap, chroot).
#
#   build-image.sh OUTDIR KPKG
#
# Leaves OUTDIR/root.img (ext4, 1 GiB sparse), OUTDIR/vmlinuz,
# OUTDIR/release (kernel release) and OUTDIR/times.
set -euo pipefail
OUT=$1 KPKG=$2
D=$(cd "$(dirname "$0")" && pwd)
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
debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,udev,kmod,procps \
	bookworm "$W/rootfs" "$MIRROR" >"$W/debootstrap.log" 2>&1 || { tail -20 "$W/debootstrap.log" >&2; exit 1; }
t2=$(date +%s)

# 3. customise + harness, 4. ext4 image straight from the directory
"$D/customize.sh" "$W/rootfs" "$W/kernel/x" "$KVER"
mkfs.ext4 -q -F -L root -d "$W/rootfs" "$W/root.img" 1G
t3=$(date +%s)

cp "$W"/kernel/x/boot/vmlinuz-* "$W/vmlinuz"
echo "$KVER" >"$W/release"
mv "$W/root.img" "$W/vmlinuz" "$W/release" "$OUT/"
echo "kernel=$((t1 - t0))s debootstrap=$((t2 - t1))s customize+mkfs=$((t3 - t2))s total=$((t3 - t0))s" | tee "$OUT/times" >&2
