#!/bin/bash
# Make sure the LXC variant of the systemd-VM image is cached; print its
# directory. Like ensure-image.sh, but its own cache directory
# (${OOMWATCH_VM_CACHE:-/var/tmp/oomwatch-vm}/sdvm-lxc/<key>, key = hash of
# lxc-build-image.sh, customize.sh, lxc-customize.sh and the kernel package),
# so neither script's clean-up of old keys removes the other's image.
set -euo pipefail
D=$(cd "$(dirname "$0")" && pwd)
CACHE=${OOMWATCH_VM_CACHE:-/var/tmp/oomwatch-vm}/sdvm-lxc
KPKG=${OOMWATCH_SDVM_KPKG:-linux-image-6.1.0-56-cloud-amd64}
log() { echo "lxc-ensure-image.sh: $*" >&2; }

key=$(cat "$D/lxc-build-image.sh" "$D/customize.sh" "$D/lxc-customize.sh" <(echo "$KPKG") | sha256sum | cut -c1-16)
dir=$CACHE/$key
if [ -s "$dir/root.img.zst" ] && [ -s "$dir/vmlinuz" ]; then
	echo "$dir"
	exit 0
fi
[ "$(id -u)" = 0 ] || { log "image $dir missing and building it needs root"; exit 1; }

need=()
for t in debootstrap:debootstrap zstd:zstd qemu-system-x86_64:qemu-system-x86 mkfs.ext4:e2fsprogs; do
	command -v "${t%%:*}" >/dev/null || need+=("${t#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
	log "installing ${need[*]}"
	apt-get update -qq >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
fi
if ! apt-cache show "$KPKG" >/dev/null 2>&1; then
	apt-get update -qq >&2
	if ! apt-cache show "$KPKG" >/dev/null 2>&1; then
		KPKG=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-6/{print $2; exit}')
		log "kernel package not available, using $KPKG"
	fi
fi

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9
if [ -s "$dir/root.img.zst" ]; then echo "$dir"; exit 0; fi
log "building $dir (debootstrap bookworm + lxc + busybox-static + $KPKG, ~1 min)"
rm -rf "$dir.new"
"$D/lxc-build-image.sh" "$dir.new" "$KPKG" >&2
zstd -q -T0 -3 --rm "$dir.new/root.img" -o "$dir.new/root.img.zst"
find "$CACHE" -mindepth 1 -maxdepth 1 -type d ! -name "$key.new" -exec rm -rf {} +
mv "$dir.new" "$dir"
du -sh "$dir" >&2
echo "$dir"
