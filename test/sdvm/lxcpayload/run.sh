#!/bin/bash
# Guest side of test/sdvm's TestLXCInSystemd:
# Debian 12, systemd PID 1, cgroup2, lxc 5 with two privileged busybox
# containers baked into the image (lxc-customize.sh): web1 with
# lxc.proc.oom_score_adj = -1000, web2 without. cwd = the payload
# (oomwatch_*.deb). Prints PASS:/FAIL: lines and TIME marks; exit 0 only if
# nothing failed.
. ./lib.sh
# memory.events counter of a cgroup
mev() { awk -v k="$2" '$1 == k {print $2}' "/sys/fs/cgroup$1/memory.events" 2>/dev/null; }
# a user-space memory toucher (dd faults in kernel mode and just gets a short read)
HOG='exec awk "BEGIN{s=\"x\"; for(;;) s = s s}"'

mark start
echo "== lxc $(lxc-start --version), kernel $(uname -r), $(stat -fc %T /sys/fs/cgroup)"
check "containers baked into the image: web1 web2" '[ "$(lxc-ls -1 | sort | tr "\n" " ")" = "web1 web2 " ]'

# ---------------------------------------------------------------- install
install_with_capture
owlog | grep '"event":"limited_view"' && failf "start-up warned limited_view" || pass "no event=limited_view"
mark installed

# ---------------------------------------------------------------- the loop in web1
echo "== web1 (lxc-start, lxc.proc.oom_score_adj = -1000): a real OOM loop"
check "lxc-start -n web1, RUNNING" 'lxc-start -n web1 && lxc-wait -n web1 -s RUNNING -t 30'
init1=$(lxc-info -n web1 -pH)
check "web1 init $init1 in 0::/lxc.payload.web1" 'grep -qx "0::/lxc.payload.web1" /proc/$init1/cgroup'
check "web1 init oom_score_adj -1000" '[ "$(cat /proc/$init1/oom_score_adj)" = -1000 ]'
check "memory.max of lxc.payload.web1 = 48M" '[ "$(cat /sys/fs/cgroup/lxc.payload.web1/memory.max)" = 50331648 ]'
for p in $(cat /sys/fs/cgroup/lxc.payload.web1/cgroup.procs); do echo "  pid $p $(cat /proc/$p/comm) adj $(cat /proc/$p/oom_score_adj)"; done
mark web1-running
# the process added with lxc-attach inherits lxc-attach's 0 and protects itself;
# output to a file, never the tty
rm -f "$RES/attach1.rc"
( timeout 120 lxc-attach -n web1 -- sh -c "echo -1000 > /proc/self/oom_score_adj; cat /proc/self/cgroup; $HOG" </dev/null >"$RES/attach1.out" 2>&1
  echo $? >"$RES/attach1.rc" ) &
mark loop-start
wait_for "journal: event=incident verdict=loop cgroup=/lxc.payload.web1" 60 'owev incident /lxc.payload.web1 | grep -q "\"verdict\":\"loop\""'
mark loop-detected
owev incident /lxc.payload.web1 | head -1
wait_for "journal: event=action reset-adj verified on /lxc.payload.web1" 60 \
	'owev action /lxc.payload.web1 | grep "\"action\":\"reset-adj\"" | grep -q "\"verified\":true"'
owev action /lxc.payload.web1 | head -3
awk1=$(owev action /lxc.payload.web1 | grep '"action":"reset-adj"' | sed -n 's/.*"pid":\([0-9]*\).*/\1/p' | head -1)
check "the reset task was the attached awk (comm awk, pid $awk1, not the container's init $init1)" \
	'owev action /lxc.payload.web1 | grep "\"action\":\"reset-adj\"" | grep -q "\"comm\":\"awk\"" && [ -n "$awk1" ] && [ "$awk1" != "$init1" ]'
wait_for "lxc-attach ended" 30 '[ -s "$RES/attach1.rc" ]'
check "awk killed by the kernel after the reset (lxc-attach rc $(cat "$RES/attach1.rc" 2>/dev/null) = 137)" '[ "$(cat "$RES/attach1.rc")" = 137 ]'
mark loop-broken
echo "  attached task saw: $(tr '\n' ' ' <"$RES/attach1.out")"
check "the attached task ran in the .lxc child (container view 0::/.lxc; no memory files there)" \
	'grep -qx "0::/.lxc" "$RES/attach1.out" && [ -d /sys/fs/cgroup/lxc.payload.web1/.lxc ] && [ ! -e /sys/fs/cgroup/lxc.payload.web1/.lxc/memory.max ]'
echo "  lxc.payload.web1 memory.events: $(tr '\n' ' ' </sys/fs/cgroup/lxc.payload.web1/memory.events)"
check "oom_kill of lxc.payload.web1 >= 1" '[ "$(mev /lxc.payload.web1 oom_kill)" -ge 1 ]'
check "web1 still RUNNING, same init ($init1) at -1000" '[ "$(lxc-info -n web1 -sH)" = RUNNING ] && [ "$(lxc-info -n web1 -pH)" = "$init1" ] && [ "$(cat /proc/$init1/oom_score_adj)" = -1000 ]'
check "oomwatch did not freeze web1" '[ "$(cat /sys/fs/cgroup/lxc.payload.web1/cgroup.freeze)" = 0 ]'
wait_for "journal: event=ladder_done outcome=resolved" 30 'owev ladder_done /lxc.payload.web1 | grep -q "\"outcome\":\"resolved\""'
wait_for "journal: event=resolved for /lxc.payload.web1" 30 'owev resolved /lxc.payload.web1 | grep -q .'
# the incident names the container: alert documents and the incident journal
wait_for "alert detected: container web1, verdict loop" 30 \
	'grep "\"type\":\"detected\"" /var/lib/oomwatch/alerts.jsonl 2>/dev/null | grep "\"container\":\"web1\"" | grep -q "\"verdict\":\"loop\""'
wait_for "alert remediated: container web1" 30 'grep "\"type\":\"remediated\"" /var/lib/oomwatch/alerts.jsonl 2>/dev/null | grep -q "\"container\":\"web1\""'
check "alert candidates hold the attached awk at -1000 (tasks gathered recursively, .lxc included)" \
	'grep "\"type\":\"detected\"" /var/lib/oomwatch/alerts.jsonl | grep -q "{\"pid\":$awk1,\"comm\":\"awk\",\"adj\":-1000,"'
check "incidents.jsonl names container web1" 'grep -q "\"container\":\"web1\"" /var/lib/oomwatch/incidents.jsonl'
grep '"type":"detected"' /var/lib/oomwatch/alerts.jsonl | head -1 | cut -c1-600
cp /var/lib/oomwatch/alerts.jsonl /var/lib/oomwatch/incidents.jsonl "$RES/" 2>/dev/null
check "oomwatch active, not restarted" 'systemctl is-active -q oomwatch.service && [ "$(show oomwatch.service NRestarts)" = 0 ]'
mark web1-done

# ---------------------------------------------------------------- negative control in web2
echo "== web2 (lxc@web2.service, no -1000): the kernel kills normally, oomwatch does nothing"
check "web2 config has no lxc.proc.oom_score_adj" '! grep -q oom_score_adj /var/lib/lxc/web2/config'
check "systemctl start lxc@web2.service, RUNNING" 'systemctl start lxc@web2.service && lxc-wait -n web2 -s RUNNING -t 30'
init2=$(lxc-info -n web2 -pH)
check "web2 init $init2 in 0::/lxc.payload.web2 (lxc escapes the unit's cgroup), adj 0" \
	'grep -qx "0::/lxc.payload.web2" /proc/$init2/cgroup && [ "$(cat /proc/$init2/oom_score_adj)" = 0 ]'
rm -f "$RES/attach2.rc"
( timeout 120 lxc-attach -n web2 -- sh -c "$HOG" </dev/null >"$RES/attach2.out" 2>&1
  echo $? >"$RES/attach2.rc" ) &
mark control-start
wait_for "lxc-attach in web2 ended" 60 '[ -s "$RES/attach2.rc" ]'
check "awk killed by the kernel on its own (rc $(cat "$RES/attach2.rc" 2>/dev/null) = 137)" '[ "$(cat "$RES/attach2.rc")" = 137 ]'
echo "  lxc.payload.web2 memory.events: $(tr '\n' ' ' </sys/fs/cgroup/lxc.payload.web2/memory.events)"
check "oom_kill of lxc.payload.web2 >= 1" '[ "$(mev /lxc.payload.web2 oom_kill)" -ge 1 ]'
sleep 3 # three windows: an incident would be open by now
check "no incident for /lxc.payload.web2" '! owev incident /lxc.payload.web2 | grep -q .'
check "no action for /lxc.payload.web2" '! owev action /lxc.payload.web2 | grep -q .'
check "web2 still RUNNING, same init" '[ "$(lxc-info -n web2 -sH)" = RUNNING ] && [ "$(lxc-info -n web2 -pH)" = "$init2" ]'
mark control-done

# ---------------------------------------------------------------- clean up
lxc-stop -n web1 -k
systemctl stop lxc@web2.service
rmdir /sys/fs/cgroup/lxc.pivot 2>/dev/null
check "containers stopped, no lxc.payload cgroups left" '[ -z "$(lxc-ls --active)" ] && ! ls -d /sys/fs/cgroup/lxc.payload.* 2>/dev/null'
check "every oomwatch action was on /lxc.payload.web1" '! owlog | grep "\"event\":\"action\"" | grep -v -q "\"cgroup\":\"/lxc.payload.web1\""'
mark done
systemctl --failed --no-pager --plain | head -5
echo "overall fail=$fail"
exit $fail
