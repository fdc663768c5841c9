#!/bin/bash
# Print the Debian package version for an upstream VERSION.
#
#   packaging/deb-version.sh VERSION [GITDIR]
#
# VERSION is what `git describe --tags --always --dirty` prints (the
# Makefile's VERSION), or any version string. Package versions must rise
# with every commit, or dpkg and apt treat an upgrade as a downgrade, so:
#
#   v1.2.3                 1.2.3-1                  a release tag
#   v1.3.0-rc1             1.3.0~rc1-1              a pre-release sorts before 1.3.0
#   v1.2.3-4-gabc1234      1.2.3+git<T>.<N>.abc1234-1   commits after a tag
#   abc1234                0.0~git<T>.<N>.abc1234-1     no tag yet
#   ...-dirty              ...+dirty-1              uncommitted changes on top
#   dev                    0.0~dev-1                anything else not starting with a digit
#
# T is the commit's committer time in UTC (YYYYMMDDHHMMSS) and N the number
# of commits in its history (git rev-list --count): the time orders commits,
# N orders commits made in the same second (a rebase or a scripted merge
# gives many), the hash names the commit. Both come from the repository at
# GITDIR (default: this checkout). A version that already has a Debian
# revision (1.2.3-2) is kept as it is.
set -euo pipefail
[ $# -ge 1 ] && [ $# -le 2 ] || { echo "usage: $0 VERSION [GITDIR]" >&2; exit 2; }
V=${1#v}
GITDIR=${2:-$(cd "$(dirname "$0")/.." && pwd)}

# snapshot HASH: <T>.<N>.<hash> of that commit
snapshot() {
	local t n
	if ! t=$(TZ=UTC git -C "$GITDIR" log -1 --format=%cd --date=format-local:%Y%m%d%H%M%S "$1^{commit}" 2>/dev/null) ||
		! n=$(git -C "$GITDIR" rev-list --count "$1^{commit}" 2>/dev/null); then
		echo "deb-version.sh: commit $1 not found in $GITDIR: cannot date the snapshot" >&2
		exit 1
	fi
	printf '%s.%s.%s' "$t" "$n" "$1"
}

dirty=
if [[ $V == *-dirty ]]; then dirty=+dirty; V=${V%-dirty}; fi
if [[ $V =~ ^[0-9a-f]{7,40}$ ]]; then
	# a bare commit hash: no tag in its history, even when it starts with a digit
	V="0.0~git$(snapshot "$V")"
elif [[ $V =~ ^(.+)-([0-9]+)-g([0-9a-f]{7,40})$ ]]; then
	base=${BASH_REMATCH[1]} hash=${BASH_REMATCH[3]}
	V="${base/-/\~}+git$(snapshot "$hash")"
elif [[ $V =~ ^[0-9][0-9.]*-[A-Za-z][A-Za-z0-9.]*$ ]]; then
	V=${V/-/\~} # v1.3.0-rc1: a pre-release, before 1.3.0
fi
V=$(printf '%s' "$V$dirty" | sed 's/[^A-Za-z0-9.+~-]/~/g')
case $V in [0-9]*) ;; *) V="0.0~$V" ;; esac
case $V in *-*) ;; *) V="$V-1" ;; esac
printf '%s\n' "$V"
