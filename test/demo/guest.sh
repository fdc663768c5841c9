# oomwatch demo, guest side (busybox sh, PID 1's child in the demo VM).
# Re-invoked as "sh /vmtest.sh ROLE" for the processes of the story:
#   sshd -> login shell (sh) -> lxc-start -> init (in lxc/web1) -> java
# Lines the host reformats or reads: "LOG <json>" (an oomwatch log line),
# "DEMO_RESULT k=v ..." and "DEMO_FAIL why".
set -u
SELF=/vmtest.sh
MODE=${VMTEST_MODE:-v2}
if [ "$MODE" = v1 ]; then MEM=/sys/fs/cgroup/memory; else MEM=/sys/fs/cgroup; fi
CG=$MEM/lxc/web1
LIMIT=20M
RUN=/run/demo
LOG=$RUN/oomwatch.log

name() { printf %s "$1" >/proc/self/comm; }

# ---- the processes of the story --------------------------------------------
role_sshd() {
	name sshd
	# openssh oom_adjust_restore() bug: the -17 meant for the listener stays on
	# the session, and every child inherits it (oom_adj -17 = oom_score_adj -1000)
	echo -17 >/proc/self/oom_adj
	sh $SELF login &
	wait
}
role_login() { # the admin's login shell: starts the container
	sh $SELF lxc-start &
	wait
}
role_lxcstart() {
	name lxc-start
	# v2: enable the memory controller for lxc's children before creating
	# web1, as LXC and systemd do. oomwatch treats a v2 cgroup it first sees
	# without memory.events as having no memory controller for good.
	mkdir $MEM/lxc
	[ "$MODE" = v2 ] && echo +memory >$MEM/lxc/cgroup.subtree_control
	mkdir $CG
	if [ "$MODE" = v1 ]; then
		echo $LIMIT >$CG/memory.limit_in_bytes
		[ -e $CG/memory.memsw.limit_in_bytes ] && echo $LIMIT >$CG/memory.memsw.limit_in_bytes
	else
		echo $LIMIT >$CG/memory.max
		[ -e $CG/memory.swap.max ] && echo 0 >$CG/memory.swap.max
	fi
	sh $SELF init &
	wait
}
role_init() { # the container's init
	name init
	echo $$ >$CG/cgroup.procs
	sh $SELF java &
	wait
}
role_java() {
	name java
	echo $$ >$RUN/java.pid
	read -r _ <$RUN/go # the JVM starts growing its heap when the demo says so
	exec /bin/hog -comm java -mb 64
}

case "${1:-main}" in
sshd) role_sshd; exit ;;
login) role_login; exit ;;
lxc-start) role_lxcstart; exit ;;
init) role_init; exit ;;
java) role_java; exit ;;
esac

# ---- the narration -----------------------------------------------------------
say() { echo; echo "==> $*"; }
info() { echo "    $*"; }
logs() { grep "$1" $LOG | sed 's/^/LOG /'; }
fail() {
	echo "DEMO_FAIL $*"
	echo "--- oomwatch log ($LOG):"
	cat $LOG
	echo "--- kernel log (OOM lines, last 15):"
	dmesg | grep -E 'oom|Killed|killable|Huh' | tail -n 15
	[ -n "${CG_DONE:-}" ] && { echo "--- $CG:"; counters_raw; }
	exit 1
}
# wait_for SECONDS CONDITION...: 1 on timeout
wait_for() {
	_n=$(($1 * 10)); shift
	until "$@"; do
		_n=$((_n - 1))
		[ $_n -gt 0 ] || return 1
		sleep 0.1
	done
}
has_log() { grep -q "$1" $LOG; }
oomwatch_alive() { kill -0 $OW 2>/dev/null || fail "oomwatch exited"; }
# ooms kills: the kernel's own counters for lxc/web1
counters() {
	if [ "$MODE" = v1 ]; then
		f=$(cat $CG/memory.failcnt)
		[ -e $CG/memory.memsw.failcnt ] && f=$((f + $(cat $CG/memory.memsw.failcnt)))
		echo "$f $(awk '$1 == "oom_kill" {print $2}' $CG/memory.oom_control)"
	else
		awk '$1 == "oom" {o = $2} $1 == "oom_kill" {k = $2} END {print o, k}' $CG/memory.events
	fi
}
counters_raw() {
	if [ "$MODE" = v1 ]; then
		for f in memory.failcnt memory.memsw.failcnt; do [ -e $CG/$f ] && echo "$f $(cat $CG/$f)"; done
		cat $CG/memory.oom_control
	else
		cat $CG/memory.events
	fi
}
if [ "$MODE" = v1 ]; then OOMNAME="memsw.failcnt"; else OOMNAME="memory.events oom"; fi
nokill() { dmesg | grep -c 'no killable processes'; }
memcg_of() { awk -F: '$2 ~ /(^|,)memory(,|$)/ {print $3; f = 1; exit} $1 == "0" {d = $3} END {if (!f) print d}' /proc/$1/cgroup; }
java_in_cg() { grep -qx "$JAVA" $CG/cgroup.procs 2>/dev/null; }
java_out() { ! java_in_cg; }

mkdir -p $RUN
mkfifo $RUN/go

say "Kernel $(uname -r), cgroup $MODE, no swap. Starting the daemon: oomwatch run &"
/bin/oomwatch run --log-level ${DEMO_LOG_LEVEL:-info} 2>$LOG &
OW=$!
wait_for 20 has_log '"event":"ready"' || fail "no ready line from oomwatch in 20s"
logs '"event":"ready"'

say "sshd sets its legacy oom_adj to -17 (openssh oom_adjust_restore bug); a login starts a container"
sh $SELF sshd &
wait_for 10 test -s $RUN/java.pid || fail "java did not start"
JAVA=$(cat $RUN/java.pid)
CG_DONE=1
info "lxc/web1 memory limit: $LIMIT (the original: 3000M). The process tree, everything inherited -17:"
chain=""
p=$JAVA
while [ "$p" -gt 1 ]; do
	chain="$p $chain"
	p=$(awk '{print $4}' /proc/$p/stat)
done
info "  PID COMM        oom_adj oom_score_adj  memory cgroup"
for p in $chain; do
	info "$(printf '%5s %-11s %7s %13s  %s' $p "$(cat /proc/$p/comm)" "$(cat /proc/$p/oom_adj)" "$(cat /proc/$p/oom_score_adj)" "$(memcg_of $p)")"
done

say "oomwatch scan, before any OOM (exit status 2 = an OOM would loop somewhere)"
/bin/oomwatch scan 2>&1 | sed -e '/^$/d' -e 's/^/    /'
rc=$(/bin/oomwatch scan >/dev/null 2>&1; echo $?)
info "exit status: $rc"
[ "$rc" = 2 ] || fail "oomwatch scan exited $rc, want 2"

say "java starts allocating 64M in its 20M cgroup; the kernel OOMs, finds nothing killable, retries:"
echo go >$RUN/go
start=$(cut -d' ' -f1 /proc/uptime)
i=0
while :; do
	sleep 0.2
	if java_in_cg; then state="java looping at the limit"; else state="java gone"; fi
	set -- $(counters)
	ooms=$1 kills=$2 nk=$(nokill)
	now=$(cut -d' ' -f1 /proc/uptime)
	i=$((i + 1))
	[ $i -le 10 ] && info "$(awk -v a=$start -v b=$now 'BEGIN {printf "+%.1fs", b - a}')  'no killable processes': $nk  $OOMNAME: $ooms  oom_kill: $kills  ($state)"
	[ "$kills" -ge 1 ] && ! java_in_cg && break
	awk -v a=$start -v b=$now 'BEGIN {exit !(b - a > 30)}' && fail "the loop was not broken within 30s"
	oomwatch_alive
done

say "oomwatch's log for the incident"
wait_for 15 has_log '"event":"ladder_done"' || fail "no ladder_done in the log 15s after the kill"
logs '"event":"incident"'
logs '"event":"action"'
logs '"event":"ladder_done"'

say "The kernel's side"
dmesg | grep -m1 'invoked oom-killer' | sed 's/^/    /'
dmesg | grep -m1 'no killable processes' | sed 's/^/    /'
dmesg | grep 'Killed process' | sed 's/^/    /'
# first OOM and the kill, kernel timestamps
set -- $(dmesg | awk -F'[][]' '/invoked oom-killer/ && !f {f = $2} /Killed process/ {k = $2} END {print f + 0, k + 0}')
first=$1 kill=$2
loop=$(awk -v f=$first -v k=$kill 'BEGIN {if (f > 0 && k > 0) printf "%.2f", k - f}')

say "Afterwards (1s apart): OOMs stopped?"
set -- $(counters); o1=$1 k1=$2 n1=$(nokill)
sleep 1
set -- $(counters); o2=$1 k2=$2 n2=$(nokill)
info "$OOMNAME: $o1 -> $o2   oom_kill: $k1 -> $k2   'no killable processes': $n1 -> $n2"
counters_raw | grep -E '^(oom|under_oom)' | tr '\n' ' ' | sed -e 's/^/    /' -e 's/ $/\n/'
wait_for 6 has_log '"event":"resolved"'
logs '"event":"resolved"'
oomwatch_alive

killed=$(dmesg | grep -c 'Killed process.*(java)')
verdict=$(grep '"event":"incident"' $LOG | grep -o '"verdict":"[a-z]*"' | head -n1 | cut -d'"' -f4)
origin=$(grep '"event":"incident"' $LOG | grep -o '"origin_comm":"[^"]*"' | head -n1 | cut -d'"' -f4)
reset=$(grep '"event":"action"' $LOG | grep '"action":"reset-adj"' | grep -c '"verified":true')
echo "DEMO_RESULT mode=$MODE kernel=$(uname -r) verdict=$verdict origin=$origin reset_verified=$reset java_killed=$killed oom_kill=$k2 nokill_lines=$n2 ooms=$o2 stopped=$([ "$o1" = "$o2" ] && [ "$n1" = "$n2" ] && echo 1 || echo 0) loop_s=$loop go_at=$start first_oom_at=$first"
[ "$killed" -ge 1 ] || fail "no 'Killed process ... (java)' in the kernel log"
[ "$k2" = 1 ] || fail "oom_kill is $k2, want 1"
[ "$o1" = "$o2" ] || fail "OOMs still counting: $o1 -> $o2"
[ "$verdict" = loop ] || fail "incident verdict '$verdict', want loop"
[ "$origin" = sshd ] || fail "incident origin '$origin', want sshd"
[ "$reset" -ge 1 ] || fail "no verified reset-adj action"
if [ -n "${DEMO_DEBUG:-}" ]; then
	echo "--- DEBUG: uptime at go: $start"
	echo "--- DEBUG: oomwatch log:"; cat $LOG
	echo "--- DEBUG: 'no killable' lines per 100ms since the first OOM:"
	dmesg | awk -F'[][]' '/no killable/ {t = $2 + 0; if (!f) f = t; b[int((t - f) * 10)]++; if (int((t - f) * 10) > m) m = int((t - f) * 10)} END {for (i = 0; i <= m; i++) printf "%d ", b[i]; print ""}'
	echo "--- DEBUG: kernel OOM lines (first 5, last 5):"
	dmesg | grep -E 'invoked oom-killer|Killed process|no killable' | head -n 5
	dmesg | grep -E 'invoked oom-killer|Killed process|no killable' | tail -n 5
fi
kill $OW
exit 0
