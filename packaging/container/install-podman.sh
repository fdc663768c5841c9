#!/bin/bash
# Install what the sidecar image and its host test need on Debian 12
# (packaging/container/README.md): podman, buildah and runc.
#
#   packaging/container/install-podman.sh
#
# Idempotent; needs root. Nothing in /etc is changed: the runtime (runc: crun
# 1.8 refuses hybrid cgroup hosts) and the ulimits (rootful podman asks for
# 1048576 open files and processes, above a container host's hard limit) are
# given per command, or through packaging/container/containers.conf with
# CONTAINERS_CONF=.
set -euo pipefail
need=()
for t in podman:podman buildah:buildah runc:runc; do
	command -v "${t%%:*}" >/dev/null || need+=("${t#*:}")
done
if [ ${#need[@]} -eq 0 ]; then
	echo "install-podman.sh: podman, buildah and runc are installed" >&2
	exit 0
fi
[ "$(id -u)" = 0 ] || { echo "install-podman.sh: installing ${need[*]} needs root" >&2; exit 1; }
echo "install-podman.sh: installing ${need[*]}" >&2
apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman buildah runc >&2
podman --version >&2
