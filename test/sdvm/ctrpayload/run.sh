#!/bin/bash
# Guest side of test/sdvm's TestContainersInSystemd:
# Debian 12, systemd PID 1, cgroup2, docker.io 20.10 and podman 4.3
# (containers-customize.sh). cwd = the payload (oomwatch_*.deb, hog). For
# Docker with its systemd and its cgroupfs cgroup driver, and Podman with
# --cgroup-manager=systemd and cgroupfs: a container started with
# --memory 48m --memory-swap 48m --oom-score-adj -1000 whose hog fills it (a
# real OOM loop) is named by oomwatch's incident, alert and status as
# docker ps / podman ps show it, the loop is broken, the container keeps its
# init; a control container started normally gets no incident and no action.
# Prints PASS:/FAIL: lines and TIME marks; exit 0 only if nothing failed.
. ./lib.sh
ALERTS=/var/lib/oomwatch/alerts.jsonl
mev() { awk -v k="$2" '$1 == k {print $2}' "/sys/fs/cgroup$1/memory.events" 2>/dev/null; }
# the cgroup of a pid (cgroup2), and the nearest one at or above it with a
# memory limit: where the container's OOMs are charged
cgof() { sed -n 's/^0:://p' "/proc/$1/cgroup"; }
limited() {
	local c=$1
	while [ -n "$c" ] && [ "$c" != / ]; do
		[ "$(cat "/sys/fs/cgroup$c/memory.max" 2>/dev/null)" = 50331648 ] && { echo "$c"; return; }
		c=${c%/*}
	done
}
# the containers' command: the hog (a child of init, so at init's adj) fills
# the cgroup; init waits. Nothing is written while it loops.
CMD='/hog -mb 200 & while :; do sleep 3600; done'

mark start
echo "== $(docker --version), $(podman --version), kernel $(uname -r), $(stat -fc %T /sys/fs/cgroup)"

# ---------------------------------------------------------------- install
install_with_capture
mark installed

# ---------------------------------------------------------------- the image
# busybox and the hog, imported into both runtimes (no registry: no network)
mkdir -p /tmp/box/bin /tmp/box/tmp
cp /bin/busybox /tmp/box/bin/
for a in sh sleep cat; do ln -s busybox /tmp/box/bin/$a; done
install -m 755 ./hog /tmp/box/hog
tar -C /tmp/box -cf /tmp/box.tar .
check "docker active" 'systemctl is-active -q docker.service || systemctl start docker.service'
check "docker import hogbox" 'docker import /tmp/box.tar hogbox:1 >/dev/null' || { echo "overall fail=1"; exit 1; }
check "podman import hogbox" 'podman import -q /tmp/box.tar localhost/hogbox:1 >/dev/null' || { echo "overall fail=1"; exit 1; }
mark imported

# ctr RUNTIME MODE ARGS...: docker, or podman with that cgroup manager
ctr() {
	local rt=$1 mode=$2
	shift 2
	if [ "$rt" = docker ]; then docker "$@"; else podman --cgroup-manager="$mode" "$@"; fi
}
# docker run's own options: the guest kernel has AppArmor on, the image no
# apparmor_parser to load Docker's default profile with
dockeropts() { [ "$1" = docker ] && echo "--security-opt apparmor=unconfined"; }
image() { if [ "$1" = docker ]; then echo hogbox:1; else echo localhost/hogbox:1; fi; }

# loop RUNTIME MODE NAME: the -1000 container
loop() {
	local rt=$1 mode=$2 name=$3 id short pid cg lim label
	echo "== $rt ($mode): $name, --oom-score-adj -1000, a real OOM loop"
	check "$rt run $name" 'ctr $rt $mode run -d --name $name $(dockeropts $rt) --network none --memory 48m --memory-swap 48m --oom-score-adj -1000 $(image $rt) /bin/sh -c "$CMD" >/dev/null' || return
	id=$(ctr $rt $mode inspect -f '{{.Id}}' $name)
	short=${id:0:12}
	pid=$(ctr $rt $mode inspect -f '{{.State.Pid}}' $name)
	cg=$(cgof "$pid")
	lim=$(limited "$cg")
	label="$name $short"
	LOOPS+=" $lim"
	echo "  ps: $(ctr $rt $mode ps --filter name=$name --format '{{.ID}} {{.Names}}'); init pid $pid in $cg, limit on $lim"
	check "$rt ps shows $short $name" '[ "$(ctr $rt $mode ps --filter name=$name --format "{{.ID}} {{.Names}}")" = "$short $name" ]'
	check "init oom_score_adj -1000, limit 48M found" '[ "$(cat /proc/$pid/oom_score_adj)" = -1000 ] && [ -n "$lim" ]'
	mark "$rt-$mode-running"
	wait_for "journal: event=incident verdict=loop cgroup=$lim" 60 'owev incident $lim | grep -q "\"verdict\":\"loop\""' || return
	mark "$rt-$mode-detected"
	owev incident "$lim" | head -1 | cut -c1-400
	check "the incident names container $name, id $short" \
		'owev incident $lim | grep "\"container\":\"$short\"" | grep -q "\"container_name\":\"$name\""'
	wait_for "journal: event=action reset-adj verified on $lim" 60 \
		'owev action $lim | grep "\"action\":\"reset-adj\"" | grep -q "\"verified\":true"'
	check "the reset task was the hog, not init $pid" \
		'owev action $lim | grep "\"action\":\"reset-adj\"" | grep "\"comm\":\"hog\"" | grep -vq "\"pid\":$pid,"'
	wait_for "the kernel killed the hog (oom_kill >= 1)" 30 '[ "$(mev $lim oom_kill)" -ge 1 ]'
	mark "$rt-$mode-broken"
	echo "  $lim memory.events: $(tr '\n' ' ' </sys/fs/cgroup$lim/memory.events)"
	check "$name still running, same init ($pid) at -1000" \
		'[ "$(ctr $rt $mode inspect -f "{{.State.Running}} {{.State.Pid}}" $name)" = "true $pid" ] && [ "$(cat /proc/$pid/oom_score_adj)" = -1000 ]'
	wait_for "alert detected: container $short, container_name $name" 30 \
		'grep "\"type\":\"detected\"" $ALERTS 2>/dev/null | grep "\"container\":\"$short\"" | grep -q "\"container_name\":\"$name\""'
	wait_for "alert remediated: container_name $name" 30 \
		'grep "\"type\":\"remediated\"" $ALERTS 2>/dev/null | grep -q "\"container_name\":\"$name\""'
	check "incidents.jsonl names $name ($short)" \
		'grep "\"container\":\"$short\"" /var/lib/oomwatch/incidents.jsonl | grep -q "\"container_name\":\"$name\""'
	oomwatch status >"$RES/status-$name.txt" 2>&1
	check "oomwatch status shows \"$label\"" 'grep -qF "($label)" "$RES/status-$name.txt"'
	grep -F "($label)" "$RES/status-$name.txt" | head -2
	mark "$rt-$mode-loop-done"
}

# control RUNTIME MODE NAME: started normally; the kernel kills the hog itself
control() {
	local rt=$1 mode=$2 name=$3 pid cg lim
	echo "== $rt ($mode): $name, started normally (the control)"
	check "$rt run $name" 'ctr $rt $mode run -d --name $name $(dockeropts $rt) --network none --memory 48m --memory-swap 48m $(image $rt) /bin/sh -c "$CMD" >/dev/null' || return
	pid=$(ctr $rt $mode inspect -f '{{.State.Pid}}' $name)
	cg=$(cgof "$pid")
	lim=$(limited "$cg")
	echo "  init pid $pid adj $(cat /proc/$pid/oom_score_adj) in $cg, limit on $lim"
	check "init not at -1000, limit 48M found" '[ "$(cat /proc/$pid/oom_score_adj)" != -1000 ] && [ -n "$lim" ]'
	wait_for "the kernel killed the hog by itself (oom_kill >= 1)" 60 '[ "$(mev $lim oom_kill)" -ge 1 ]'
	sleep 3 # three windows: an incident would be open by now
	check "no incident for $lim" '! owev incident $lim | grep -q .'
	check "no action for $lim" '! owev action $lim | grep -q .'
	check "$name still running, same init" '[ "$(ctr $rt $mode inspect -f "{{.State.Running}} {{.State.Pid}}" $name)" = "true $pid" ]'
	mark "$rt-$mode-control-done"
}

# ---------------------------------------------------------------- Docker
LOOPS=
check "docker: cgroup driver systemd (its default on cgroup v2)" '[ "$(docker info -f "{{.CgroupDriver}}")" = systemd ]'
loop docker systemd web-sd
control docker systemd ctl-sd
docker rm -f web-sd ctl-sd >/dev/null

sed -i 's/^{/{"exec-opts": ["native.cgroupdriver=cgroupfs"],/' /etc/docker/daemon.json
check "dockerd restarted with exec-opts native.cgroupdriver=cgroupfs" 'systemctl restart docker.service && [ "$(docker info -f "{{.CgroupDriver}}")" = cgroupfs ]'
mark docker-restarted
loop docker cgroupfs web-fs
control docker cgroupfs ctl-fs
docker rm -f web-fs ctl-fs >/dev/null

# ---------------------------------------------------------------- Podman
loop podman systemd pweb-sd
control podman systemd pctl-sd
podman --cgroup-manager=systemd rm -f -t 0 pweb-sd pctl-sd >/dev/null
loop podman cgroupfs pweb-fs
control podman cgroupfs pctl-fs
podman --cgroup-manager=cgroupfs rm -f -t 0 pweb-fs pctl-fs >/dev/null

# ---------------------------------------------------------------- wrap up
cp $ALERTS /var/lib/oomwatch/incidents.jsonl "$RES/" 2>/dev/null
check "oomwatch active, not restarted" 'systemctl is-active -q oomwatch.service && [ "$(show oomwatch.service NRestarts)" = 0 ]'
acted=$(owlog | grep '"event":"action"' | sed -n 's/.*"cgroup":"\([^"]*\)".*/\1/p' | sort -u | tr '\n' ' ')
echo "  acted on: $acted; loop containers:$LOOPS"
check "every action was on a loop container's cgroup" '( for c in $acted; do case " $LOOPS " in *" $c "*) ;; *) exit 1 ;; esac; done )'
mark done
systemctl --failed --no-pager --plain | head -5
echo "overall fail=$fail"
exit $fail
