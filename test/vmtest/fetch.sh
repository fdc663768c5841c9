#!/bin/bash
# Fetch everything the VM test tier needs; idempotent, safe to re-run.
#   - apt packages: qemu-system-x86 busybox-static cpio (installed only if missing)
#   - Debian cloud kernels 6.1 and 6.12, downloaded with `apt-get download` and unpacked
#     with `dpkg -x` (never installed) into ${OOMWATCH_VM_CACHE:-/var/tmp/oomwatch-vm}/<name>/
# Prints "<name> <vmlinuz path>" per kernel on stdout. Needs root on Debian 12 (bookworm).
# Overrides: OOMWATCH_VM_KPKG_61, OOMWATCH_VM_KPKG_612 (exact package names).
set -euo pipefail

CACHE=${OOMWATCH_VM_CACHE:-/var/tmp/oomwatch-vm}
PKG_61=${OOMWATCH_VM_KPKG_61:-linux-image-6.1.0-56-cloud-amd64}
PKG_612=${OOMWATCH_VM_KPKG_612:-linux-image-6.12.117+deb12-cloud-amd64}
# fallbacks: newest package of the same series apt knows
RE_61='^linux-image-6\.1\.0-[0-9]+-cloud-amd64$'
RE_612='^linux-image-6\.12\.[0-9]+\+deb12-cloud-amd64$'

log() { echo "fetch.sh: $*" >&2; }

SUDO=
if [ "$(id -u)" != 0 ]; then
	command -v sudo >/dev/null && SUDO=sudo
fi

updated=0
apt_update() {
	if [ "$updated" = 0 ]; then
		log "apt-get update"
		$SUDO apt-get update -qq >&2
		updated=1
	fi
}

# 1. tools
need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
# the Go harness needs a *static* busybox (the initramfs has no libc)
[ -x /bin/busybox ] && dpkg -s busybox-static >/dev/null 2>&1 || need+=(busybox-static)
command -v cpio >/dev/null || need+=(cpio)
if [ ${#need[@]} -gt 0 ]; then
	log "installing ${need[*]}"
	apt_update
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
fi

# known PKG: does apt have a candidate for it?
known() { apt-cache show "$1" >/dev/null 2>&1; }

# pick PKG REGEX: the wanted package, or the newest of its series
pick() {
	local want=$1 re=$2 p
	if known "$want"; then echo "$want"; return; fi
	p=$(apt-cache pkgnames linux-image- 2>/dev/null | grep -E "$re" | sort -V | tail -n1 || true)
	if [ -z "$p" ]; then
		apt_update
		if known "$want"; then echo "$want"; return; fi
		p=$(apt-cache pkgnames linux-image- 2>/dev/null | grep -E "$re" | sort -V | tail -n1 || true)
	fi
	[ -n "$p" ] || { log "no package $want nor any matching $re (is bookworm + bookworm-security/updates in apt sources?)"; return 1; }
	log "$want not available, using $p"
	echo "$p"
}

# download PKG into DIR; on failure (stale lists: the mirror dropped that version) update and let the caller re-pick
download() {
	(cd "$2" && apt-get download -qq "$1" >&2 2> >(grep -v 'unsandboxed as root' >&2))
}

# fetch NAME WANT REGEX: $CACHE/NAME/{vmlinuz,config,release,package}
fetch() {
	local name=$1 want=$2 re=$3 dir=$CACHE/$1 pkg
	pkg=$(pick "$want" "$re")
	if [ -s "$dir/vmlinuz" ] && [ "$(cat "$dir/package" 2>/dev/null)" = "$pkg" ]; then
		echo "$name $dir/vmlinuz"
		return
	fi
	log "downloading $pkg"
	local tmp
	tmp=$(mktemp -d "$CACHE/.fetch-$name.XXXXXX")
	chmod 755 "$tmp" # apt-get download drops privileges to _apt when it can
	if ! download "$pkg" "$tmp"; then
		[ "$updated" = 0 ] || { rm -rf "$tmp"; return 1; }
		apt_update
		pkg=$(pick "$want" "$re")
		log "retrying with $pkg"
		download "$pkg" "$tmp" || { rm -rf "$tmp"; return 1; }
	fi
	dpkg -x "$tmp"/*.deb "$tmp/x"
	local vm cfg
	vm=$(ls "$tmp"/x/boot/vmlinuz-* | head -n1)
	cfg=$(ls "$tmp"/x/boot/config-* | head -n1)
	rm -rf "$dir.new"
	mkdir -p "$dir.new"
	cp "$vm" "$dir.new/vmlinuz"
	cp "$cfg" "$dir.new/config"
	basename "$vm" | sed 's/^vmlinuz-//' >"$dir.new/release"
	echo "$pkg" >"$dir.new/package"
	rm -rf "$dir" "$tmp"
	mv "$dir.new" "$dir"
	echo "$name $dir/vmlinuz"
}

mkdir -p "$CACHE"
fetch 6.1 "$PKG_61" "$RE_61"
fetch 6.12 "$PKG_612" "$RE_612"
