#!/bin/bash
# Guest side of `make bench-peers` (test/peerbench/benchpeers): one boot
# of the peers image (Debian 12, systemd PID 1, cgroup2, lxc 5, earlyoom and
# systemd-oomd installed and disabled) with one peer. cwd = the payload:
# peer.env (PEER RUNS LXC_RUNS CAP), peerprobe, hog, oomwatch_*.deb.
# Starts the peer, then runs the incident RUNS times in a transient unit
# and LXC_RUNS times in the LXC container web1; peerprobe prints one
# PEERRUN line per run. PEERNOTE lines say what could not be set up.
export SYSTEMD_COLORS=0 SYSTEMD_URLIFY=0 SYSTEMD_PAGER= SYSTEMD_LESS= TERM=dumb
. ./peer.env
mark() { echo "TIME $1 $(cut -d' ' -f1 /proc/uptime)"; }
note() { echo "PEERNOTE $*"; }
install -m 0755 hog peerprobe /usr/local/bin/
mkdir -p /run/peers /var/lib/peers
mark start
echo "== peer $PEER, kernel $(uname -r), $(stat -fc %T /sys/fs/cgroup), systemd $(systemctl --version | head -1 | cut -d' ' -f2)"

# ---------------------------------------------------------------- the peer
UNITS=
OOMD_PROPS=()
case $PEER in
kernel) ;;
earlyoom)
	echo "earlyoom $(dpkg-query -W -f='${Version}' earlyoom); /etc/default/earlyoom:"
	grep -v '^#' /etc/default/earlyoom | grep .
	systemctl start earlyoom.service || note "earlyoom did not start"
	UNITS=earlyoom.service
	;;
oomd-tight | oomd-default)
	echo "systemd-oomd $(dpkg-query -W -f='${Version}' systemd-oomd)"
	OOMD_PROPS=(-p ManagedOOMMemoryPressure=kill)
	if [ "$PEER" = oomd-tight ]; then
		mkdir -p /etc/systemd/oomd.conf.d
		printf '[OOM]\nDefaultMemoryPressureDurationSec=1s\n' >/etc/systemd/oomd.conf.d/bench.conf
		OOMD_PROPS+=(-p ManagedOOMMemoryPressureLimit=0.01%)
	fi
	systemctl start systemd-oomd.service || note "systemd-oomd did not start"
	# the runner itself is never a candidate
	systemctl set-property --runtime vmtest.service ManagedOOMPreference=omit
	UNITS=systemd-oomd.service
	;;
oomwatch)
	dpkg -i ./oomwatch_*.deb >/tmp/dpkg.out 2>&1 || { cat /tmp/dpkg.out; note "dpkg -i oomwatch failed"; }
	for _ in $(seq 60); do systemctl show -p StatusText --value oomwatch.service | grep -q watching && break; sleep 0.5; done
	systemctl is-active oomwatch.service
	UNITS=oomwatch.service
	;;
*) note "unknown peer $PEER"; exit 2 ;;
esac
systemctl is-active earlyoom.service systemd-oomd.service oomwatch.service 2>/dev/null | tr '\n' ' '; echo "(earlyoom systemd-oomd oomwatch)"
mark peer-started

# fresh_hog PATH: a new copy of the hog whose page cache is not yet read, so
# that the container reads its binary itself and the pages are charged to
# its cgroup, as a container's own files are: reclaim in the loop then
# finds file pages to scan (systemd-oomd acts only "with reclaim activity")
fresh_hog() {
	rm -f "$1"
	cp /usr/local/bin/hog "$1"
	sync
	echo 3 >/proc/sys/vm/drop_caches
}

# gap VARIANT: the pause after a run, so that every run finds its peer as
# a first incident would: systemd-oomd does nothing for 15 s after a kill;
# oomwatch starts no ladder in a cgroup within its cooldown (30 s) of the
# last one there, which matters for the LXC runs (always the same cgroup;
# each stand-in run has its own unit)
gap() {
	case $PEER/$1 in
	oomd-*) sleep 16 ;;
	oomwatch/lxc) sleep 32 ;;
	*) sleep 2 ;;
	esac
}

# ---------------------------------------------------------------- stand-in
for i in $(seq "$RUNS"); do
	u=peer-standin-$i
	echo "== stand-in run $i: $u.service"
	fresh_hog /var/lib/peers/hog
	peerprobe -peer "$PEER" -variant standin -n "$i" -cgroup "/system.slice/$u.service" \
		-init-comm sh -rc-file "/run/peers/rc.$i" -running "systemctl is-active -q $u.service" \
		-units "$UNITS" -cap "${CAP}s" -- \
		systemd-run --quiet --unit="$u" -p MemoryMax=48M -p MemorySwapMax=0 -p OOMPolicy=continue \
		-p OOMScoreAdjust=-1000 "${OOMD_PROPS[@]}" \
		/bin/sh -c "/var/lib/peers/hog -mb 64; echo \$? >/run/peers/rc.$i; exec sleep infinity"
	[ "$i" = 1 ] && case $PEER in oomd-*) oomctl 2>&1 | head -30 ;; esac
	systemctl show -p Result,ActiveState "$u.service" | tr '\n' ' '; echo
	systemctl kill -s KILL "$u.service" 2>/dev/null
	systemctl stop "$u.service" 2>/dev/null
	systemctl reset-failed "$u.service" 2>/dev/null
	mark "standin-$i"
	gap standin
done

# ---------------------------------------------------------------- LXC
if [ "$LXC_RUNS" -gt 0 ]; then
	case $PEER in
	oomd-*)
		# the container's cgroup lxc.payload.web1 belongs to no unit: the only
		# unit above it is the root slice
		lim=()
		[ "$PEER" = oomd-tight ] && lim=(ManagedOOMMemoryPressureLimit=0.01%)
		if ! systemctl set-property --runtime -- -.slice ManagedOOMMemoryPressure=kill "${lim[@]}" 2>/tmp/sp.err; then
			note "lxc $PEER: systemctl set-property -.slice ManagedOOMMemoryPressure=kill refused: $(tr '\n' ' ' </tmp/sp.err)"
		fi
		sleep 2
		oomctl 2>&1 | head -20
		;;
	esac
	start_web1() {
		lxc-start -n web1 && lxc-wait -n web1 -s RUNNING -t 30 || note "lxc-start web1 failed"
		init=$(lxc-info -n web1 -pH)
		echo "web1 init $init adj $(cat /proc/$init/oom_score_adj) memory.max $(cat /sys/fs/cgroup/lxc.payload.web1/memory.max)"
	}
	start_web1
	for i in $(seq "$LXC_RUNS"); do
		echo "== lxc run $i: web1 (init $init)"
		fresh_hog /var/lib/lxc/web1/rootfs/hog
		peerprobe -peer "$PEER" -variant lxc -n "$i" -cgroup /lxc.payload.web1 -init-pid "$init" \
			-running '[ "$(lxc-info -n web1 -sH)" = RUNNING ]' -units "$UNITS" -cap "${CAP}s" -- \
			lxc-attach -n web1 -- /hog -adj -1000 -mb 64
		if [ "$(lxc-info -n web1 -sH)" != RUNNING ] || [ "$(lxc-info -n web1 -pH)" != "$init" ]; then
			echo "web1 is gone: restarting it"
			lxc-stop -n web1 -k 2>/dev/null
			start_web1
		fi
		mark "lxc-$i"
		gap lxc
	done
	lxc-stop -n web1 -k
fi
mark done
exit 0
