#!/bin/bash
# Build the oomwatch OCI image FROM scratch: the static binary, the default
# config and CA certificates (HTTPS alert sinks), nothing else. No registry,
# no Dockerfile, no Docker engine: buildah writes the layer itself and
# runs nothing (no buildah run, so no network namespace or iptables changes;
# see packaging/container/README.md).
#
#   packaging/container/build-image.sh OUTDIR
#
# Leaves the image in the local containers-storage as $IMAGE (podman run
# can use it at once) and writes OUTDIR/oomwatch_<tag>.oci.tar, an OCI
# archive to copy to other hosts (podman load -i, skopeo copy
# oci-archive:..., ctr -n k8s.io images import). The last two lines on
# stdout are the image name and the archive's path.
#
# Environment:
#   VERSION            version stamped into the binary (default: git describe)
#   IMAGE              image name (default localhost/oomwatch:<VERSION as a tag>)
#   OOMWATCH_BIN       put this binary in the image instead of building one (must be static)
#   GO                 go command (default: go)
#   SOURCE_DATE_EPOCH  image creation time (default: last commit) for repeatable builds
# Needs buildah (packaging/container/install-podman.sh) and root, or a
# rootless buildah set-up.
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
OUTDIR=$1
D=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$D/../.." && pwd)
GO=${GO:-go}
log() { echo "build-image.sh: $*" >&2; }
command -v buildah >/dev/null || { log "buildah not found: run packaging/container/install-podman.sh (apt-get install buildah)"; exit 1; }

VERSION=${VERSION:-$(git -C "$TOP" describe --tags --always --dirty 2>/dev/null || echo dev)}
# an image tag is [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
TAG=$(printf '%s' "${VERSION#v}" | sed 's/[^A-Za-z0-9_.-]/_/g' | cut -c1-128)
case $TAG in [A-Za-z0-9_]*) ;; *) TAG="v$TAG" ;; esac
IMAGE=${IMAGE:-localhost/oomwatch:$TAG}
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$TOP" log -1 --format=%ct 2>/dev/null || date +%s)}
mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
ARCHIVE=$OUTDIR/oomwatch_$TAG.oci.tar

STAGE=$(mktemp -d "${TMPDIR:-/tmp}/oomwatch-image.XXXXXX")
ctr=
cleanup() {
	[ -z "$ctr" ] || buildah rm "$ctr" >/dev/null 2>&1 || true
	rm -rf "$STAGE"
}
trap cleanup EXIT
R=$STAGE/rootfs
mkdir -p "$R/usr/bin" "$R/etc/oomwatch" "$R/var/lib/oomwatch" "$R/run/oomwatch" "$R/tmp" "$R/etc/ssl/certs"
chmod 0755 "$R" "$R/usr" "$R/usr/bin" "$R/etc" "$R/etc/oomwatch" "$R/var" "$R/var/lib" "$R/run" "$R/etc/ssl" "$R/etc/ssl/certs"
chmod 0700 "$R/var/lib/oomwatch" "$R/run/oomwatch"
chmod 1777 "$R/tmp"

# --- binary: static, or it cannot run FROM scratch ------------------------
if [ -n "${OOMWATCH_BIN:-}" ]; then
	install -m 0755 "$OOMWATCH_BIN" "$R/usr/bin/oomwatch"
else
	log "go build ./cmd/oomwatch (CGO_ENABLED=0, version $VERSION)"
	(cd "$TOP" && CGO_ENABLED=0 "$GO" build -trimpath -ldflags "-s -w -X main.version=$VERSION" \
		-o "$R/usr/bin/oomwatch" ./cmd/oomwatch)
fi
if readelf -lW "$R/usr/bin/oomwatch" 2>/dev/null | grep -q INTERP; then
	log "the binary is dynamically linked; build it with CGO_ENABLED=0"
	exit 1
fi

# --- default config: what `oomwatch config --defaults` prints -------------
if ! "$R/usr/bin/oomwatch" config --defaults >"$R/etc/oomwatch/oomwatch.yaml" 2>/dev/null || [ ! -s "$R/etc/oomwatch/oomwatch.yaml" ]; then
	log "oomwatch config --defaults failed: shipping internal/config/defaults.yaml"
	cp "$TOP/internal/config/defaults.yaml" "$R/etc/oomwatch/oomwatch.yaml"
fi
# oomwatch running as root refuses a config that group or others can write
chmod 0640 "$R/etc/oomwatch/oomwatch.yaml"
"$R/usr/bin/oomwatch" check-config "$R/etc/oomwatch/oomwatch.yaml" >/dev/null 2>&1 ||
	log "warning: check-config did not accept the default config"

# --- CA certificates for webhook, Alertmanager and PagerDuty over HTTPS ----
if [ -s /etc/ssl/certs/ca-certificates.crt ]; then
	install -m 0644 /etc/ssl/certs/ca-certificates.crt "$R/etc/ssl/certs/ca-certificates.crt"
else
	log "warning: /etc/ssl/certs/ca-certificates.crt missing (apt-get install ca-certificates): HTTPS alert sinks will need a mounted CA bundle"
fi
find "$R" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

# --- the image --------------------------------------------------------------
ctr=$(buildah from scratch)
buildah copy --chown 0:0 "$ctr" "$R/" / >/dev/null
buildah config \
	--entrypoint '["/usr/bin/oomwatch"]' --cmd run \
	--env PATH=/usr/bin \
	--workingdir / \
	--stop-signal SIGTERM \
	--volume /var/lib/oomwatch \
	--created-by "packaging/container/build-image.sh (buildah from scratch)" \
	--label org.opencontainers.image.title=oomwatch \
	--label "org.opencontainers.image.description=Detects and breaks memory-cgroup OOM loops. Run privileged with the host's PID and cgroup namespaces and /sys/fs/cgroup mounted read-write." \
	--label org.opencontainers.image.version="$VERSION" \
	--label org.opencontainers.image.source=https://github.com/oomwatch/oomwatch \
	--label org.opencontainers.image.revision="$(git -C "$TOP" rev-parse HEAD 2>/dev/null || echo unknown)" \
	"$ctr"
buildah commit --quiet --rm --format oci --timestamp "$SOURCE_DATE_EPOCH" "$ctr" "$IMAGE" >/dev/null
ctr=
rm -f "$ARCHIVE"
buildah push --quiet "$IMAGE" "oci-archive:$ARCHIVE:$IMAGE" >/dev/null
log "$IMAGE ($(buildah images --format '{{.Size}}' "$IMAGE" | head -1)), archive $(du -h "$ARCHIVE" | cut -f1)"
echo "$IMAGE"
echo "$ARCHIVE"
