#!/bin/bash
# Build the oomwatch .deb.
#
#   packaging/build-deb.sh VERSION OUTDIR
#
# VERSION is the upstream version (the Makefile's `git describe --tags
# --always --dirty`); deb-version.sh turns it into a Debian version that
# rises with every commit: 1.2.3-1 for a tag, 0.0~git<UTC time>.<commits>.<hash>-1
# before the first tag, 1.2.3+git<UTC time>.<commits>.<hash>-1 after one (the
# "-1": the package is not native, it ships changelog.Debian.gz).
# The last line on stdout is the path of the .deb: OUTDIR/oomwatch_<debversion>_amd64.deb.
#
# Environment:
#   PACKAGER=nfpm|dpkg-deb  default nfpm (v2.45.2 through `go run`), falling back
#                           to dpkg-deb when nfpm cannot be fetched or built
#   OOMWATCH_BIN=PATH       ship this binary instead of building one (must be static)
#   OOMWATCH_MAINTAINER     Maintainer: field and changelog signature
#   SOURCE_DATE_EPOCH       changelog date (default: last commit, else now)
#   GO                      go command (default: go)
set -euo pipefail

[ $# -eq 2 ] || { echo "usage: $0 VERSION OUTDIR" >&2; exit 2; }
VERSION=$1 OUTDIR=$2
PKGDIR=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$PKGDIR/.." && pwd)
GO=${GO:-go}
PACKAGER=${PACKAGER:-nfpm}
NFPM=github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2
MAINTAINER=${OOMWATCH_MAINTAINER:-oomwatch maintainers <oomwatch@users.noreply.github.com>}
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$TOP" log -1 --format=%ct 2>/dev/null || date +%s)}

log() { echo "build-deb.sh: $*" >&2; }

# --- Debian version -------------------------------------------------------
DEBVERSION=$("$PKGDIR/deb-version.sh" "$VERSION" "$TOP")
mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
DEB=$OUTDIR/oomwatch_${DEBVERSION}_amd64.deb

STAGE=$(mktemp -d "${TMPDIR:-/tmp}/oomwatch-deb.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
R=$STAGE/root
mkdir -p "$R/usr/bin" "$R/lib/systemd/system" "$R/etc/oomwatch" "$R/usr/share/man/man8" \
	"$R/usr/share/doc/oomwatch" "$R/usr/share/lintian/overrides" "$STAGE/scripts"

# --- binary ---------------------------------------------------------------
if [ -n "${OOMWATCH_BIN:-}" ]; then
	install -m 0755 "$OOMWATCH_BIN" "$R/usr/bin/oomwatch"
else
	log "go build ./cmd/oomwatch (static)"
	(cd "$TOP" && CGO_ENABLED=0 "$GO" build -trimpath -ldflags "-s -w -X main.version=$VERSION" \
		-o "$R/usr/bin/oomwatch" ./cmd/oomwatch)
fi
if readelf -lW "$R/usr/bin/oomwatch" 2>/dev/null | grep -q 'INTERP'; then
	log "$R/usr/bin/oomwatch is dynamically linked; build it with CGO_ENABLED=0"
	exit 1
fi

# --- unit, config, man page, doc -----------------------------------------
install -m 0644 "$TOP/systemd/oomwatch.service" "$R/lib/systemd/system/oomwatch.service"
# the default config: what the binary itself prints, else the embedded source
if "$R/usr/bin/oomwatch" config --defaults >"$STAGE/config.yaml" 2>/dev/null && [ -s "$STAGE/config.yaml" ]; then
	:
elif [ -s "$TOP/internal/config/defaults.yaml" ]; then
	log "oomwatch config --defaults not available: shipping internal/config/defaults.yaml"
	cp "$TOP/internal/config/defaults.yaml" "$STAGE/config.yaml"
else
	log "no default config: shipping a commented placeholder"
	printf '# oomwatch configuration. Every key is optional: oomwatch runs with\n# built-in defaults. See oomwatch(8).\n' >"$STAGE/config.yaml"
fi
install -m 0640 "$STAGE/config.yaml" "$R/etc/oomwatch/oomwatch.yaml"
gzip -9n <"$PKGDIR/oomwatch.8" >"$R/usr/share/man/man8/oomwatch.8.gz"
chmod 0644 "$R/usr/share/man/man8/oomwatch.8.gz"

# copyright (DEP-5), naming the Go modules linked into the binary
mods=$("$GO" version -m "$R/usr/bin/oomwatch" 2>/dev/null | awk '$1 == "dep" {print " " $2 " " $3}' || true)
[ -n "$mods" ] || mods=" (module list unavailable: see go.mod)"
while IFS= read -r line; do
	if [ "$line" = "@GO_MODULES@" ]; then printf '%s\n' "$mods"; else printf '%s\n' "$line"; fi
done <"$PKGDIR/debian/copyright" >"$R/usr/share/doc/oomwatch/copyright"
chmod 0644 "$R/usr/share/doc/oomwatch/copyright"

{
	printf 'oomwatch (%s) unstable; urgency=medium\n\n' "$DEBVERSION"
	printf '  * Upstream version %s.\n\n' "$VERSION"
	printf ' -- %s  %s\n' "$MAINTAINER" "$(LC_ALL=C date -u -R -d "@$SOURCE_DATE_EPOCH")"
} | gzip -9n >"$R/usr/share/doc/oomwatch/changelog.Debian.gz"
chmod 0644 "$R/usr/share/doc/oomwatch/changelog.Debian.gz"

install -m 0644 "$PKGDIR/debian/lintian-overrides" "$R/usr/share/lintian/overrides/oomwatch"
install -m 0755 "$PKGDIR/debian/postinst" "$PKGDIR/debian/prerm" "$PKGDIR/debian/postrm" "$STAGE/scripts/"

# --- package --------------------------------------------------------------
rm -f "$DEB"
build_nfpm() {
	cp "$PKGDIR/nfpm.yaml" "$STAGE/nfpm.yaml"
	(cd "$STAGE" && OOMWATCH_DEB_VERSION=$DEBVERSION OOMWATCH_MAINTAINER=$MAINTAINER \
		"$GO" run "$NFPM" pkg --config nfpm.yaml --packager deb --target "$DEB" >&2)
}

build_dpkg_deb() {
	local D=$R/DEBIAN
	mkdir -p "$D"
	install -m 0755 "$STAGE"/scripts/* "$D/"
	echo /etc/oomwatch/oomwatch.yaml >"$D/conffiles"
	(cd "$R" && find . -path ./DEBIAN -prune -o -type f -printf '%P\n' | LC_ALL=C sort | xargs md5sum) >"$D/md5sums"
	local size
	size=$(du -sk --exclude=DEBIAN "$R" | cut -f1)
	{
		echo "Package: oomwatch"
		echo "Version: $DEBVERSION"
		echo "Section: admin"
		echo "Priority: optional"
		echo "Architecture: amd64"
		echo "Maintainer: $MAINTAINER"
		echo "Installed-Size: $size"
		echo "Depends: init-system-helpers (>= 1.54~)"
		echo "Homepage: https://github.com/oomwatch/oomwatch"
		# the description, from nfpm.yaml: one source for both packagers
		awk '/^description: \|-/{on=1; next} on && /^  /{sub(/^  /, ""); print; next} on{exit}' "$PKGDIR/nfpm.yaml" |
			awk 'NR==1{print "Description: " $0; next} {print " " $0}'
	} >"$D/control"
	chmod 0644 "$D/control" "$D/conffiles" "$D/md5sums"
	dpkg-deb --root-owner-group -Zxz --build "$R" "$DEB" >&2
}

case $PACKAGER in
nfpm)
	if ! build_nfpm; then
		log "nfpm ($NFPM) failed; falling back to dpkg-deb"
		rm -f "$DEB"
		build_dpkg_deb
	fi
	;;
dpkg-deb) build_dpkg_deb ;;
*) log "PACKAGER=$PACKAGER: want nfpm or dpkg-deb"; exit 2 ;;
esac
echo "$DEB"
