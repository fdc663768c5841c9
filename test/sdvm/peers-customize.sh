#!/bin/bash
# The peers image variant (make bench-peers), on top of customize.sh: the
# lxc variant's containers, and earlyoom and systemd-oomd installed but
# disabled, so that each boot starts only the peer it measures.
# usage: peers-customize.sh ROOTFS
# runs: lxc-customize.sh
set -euo pipefail
R=$1
D=$(cd "$(dirname "$0")" && pwd)

"$D/lxc-customize.sh" "$R"
for u in earlyoom.service systemd-oomd.service systemd-oomd.socket; do
	if [ -e "$R/lib/systemd/system/$u" ]; then
		chroot "$R" systemctl disable "$u" 2>/dev/null
	fi
done
if chroot "$R" systemctl is-enabled -q earlyoom.service systemd-oomd.service 2>/dev/null; then
	echo "peers-customize.sh: earlyoom or systemd-oomd still enabled" >&2
	exit 1
fi
[ -x "$R/usr/bin/earlyoom" ] && [ -x "$R/lib/systemd/systemd-oomd" ] || { echo "peers-customize.sh: earlyoom or systemd-oomd missing" >&2; exit 1; }
