#!/bin/bash
# Make sure a systemd-VM image variant is cached; print its directory.
#
#   ensure-image.sh [VARIANT]     (default base; see build-image.sh)
#
# Cache: ${OOMWATCH_VM_CACHE:-/var/tmp/oomwatch-vm}/sdvm-VARIANT/<key>/{root.img.zst,vmlinuz,release,times}
# key = hash of build-image.sh, customize.sh, VARIANT-customize.sh (and the
# scripts it names on "# runs:" lines) and the kernel package name, so a
# change to any of them rebuilds, and every other run only decompresses.
# Each variant has its own directory and a build removes only the old keys
# of its own kernel package, so another variant's or kernel's image stays.
# As root on Debian 12 it first installs what the tier's host side needs when
# missing: debootstrap, zstd, qemu, lintian, promtool (Debian's prometheus
# package: the alerting rules' tests) and bash-completion (the package's
# completion test). Building the image needs root.
# Env: OOMWATCH_SDVM_KPKG (kernel package).
set -euo pipefail
VARIANT=${1:-base}
D=$(cd "$(dirname "$0")" && pwd)
CACHE=${OOMWATCH_VM_CACHE:-/var/tmp/oomwatch-vm}/sdvm-$VARIANT
KPKG=${OOMWATCH_SDVM_KPKG:-linux-image-6.1.0-56-cloud-amd64}
log() { echo "ensure-image.sh $VARIANT: $*" >&2; }

if [ "$(id -u)" = 0 ]; then
	need=()
	for t in debootstrap:debootstrap zstd:zstd qemu-system-x86_64:qemu-system-x86 mkfs.ext4:e2fsprogs lintian:lintian \
		promtool:prometheus /usr/share/bash-completion/bash_completion:bash-completion; do
		case ${t%%:*} in
		/*) [ -e "${t%%:*}" ] || need+=("${t#*:}") ;;
		*) command -v "${t%%:*}" >/dev/null || need+=("${t#*:}") ;;
		esac
	done
	if [ ${#need[@]} -gt 0 ]; then
		log "installing ${need[*]}"
		apt-get update -qq >&2
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
	fi
fi

parts=("$D/build-image.sh" "$D/customize.sh")
if [ "$VARIANT" != base ]; then
	[ -f "$D/$VARIANT-customize.sh" ] || { log "no $VARIANT-customize.sh"; exit 2; }
	parts+=("$D/$VARIANT-customize.sh")
	# a variant script that runs another names it on a "# runs: FILE" line
	for dep in $(sed -n 's/^# runs: //p' "$D/$VARIANT-customize.sh"); do parts+=("$D/$dep"); done
fi
key=$(cat "${parts[@]}" <(echo "$VARIANT $KPKG") | sha256sum | cut -c1-16)
dir=$CACHE/$key
if [ -s "$dir/root.img.zst" ] && [ -s "$dir/vmlinuz" ]; then
	echo "$dir"
	exit 0
fi
[ "$(id -u)" = 0 ] || { log "image $dir missing and building it needs root"; exit 1; }

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
if [ -s "$dir/root.img.zst" ]; then echo "$dir"; exit 0; fi # built while we waited
log "building $dir (debootstrap bookworm + $KPKG, a minute or two)"
rm -rf "$dir.new"
"$D/build-image.sh" "$dir.new" "$KPKG" "$VARIANT" >&2
zstd -q -T0 -3 --rm "$dir.new/root.img" -o "$dir.new/root.img.zst"
echo "$KPKG" >"$dir.new/kpkg"
# older keys of this kernel are dead weight (~75 MB each)
for old in "$CACHE"/*/; do
	old=${old%/}
	[ "$old" = "$dir.new" ] && continue
	if [ ! -f "$old/kpkg" ] || [ "$(cat "$old/kpkg")" = "$KPKG" ]; then rm -rf "$old"; fi
done
mv "$dir.new" "$dir"
du -sh "$dir" >&2
echo "$dir"
