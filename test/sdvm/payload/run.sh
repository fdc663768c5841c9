#!/bin/bash
# Guest side of test/sdvm's TestDebInSystemd: runs as root in a Debian 12
# VM with systemd as PID 1, cwd = the payload (oomwatch_*.deb, hog, sdctl).
# Prints PASS:/FAIL: lines and TIME marks; exit 0 only if nothing failed.
. ./lib.sh

install -m 0755 hog sdctl /usr/local/bin/
mark start
systemd-analyze | head -1

# ---------------------------------------------------------------- install
echo "== dpkg -i"
check "dpkg -i oomwatch" 'dpkgq -i ./oomwatch_*.deb'
mark installed
check "unit enabled" '[ "$(systemctl is-enabled oomwatch.service)" = enabled ]'
wait_for "unit active (Type=notify: READY=1 received)" 30 'systemctl is-active -q oomwatch.service'
mark active
systemctl show -p Type,NotifyAccess,WatchdogUSec,NRestarts,MainPID,StatusText,ActiveState,SubState,OOMScoreAdjust,MemoryMin,MemoryLow,MemoryMax,LimitNOFILE,Result oomwatch.service
pid=$(show oomwatch.service MainPID)
check "Type=notify" '[ "$(show oomwatch.service Type)" = notify ]'
check "WatchdogUSec=30s" '[ "$(show oomwatch.service WatchdogUSec)" = 30s ]'
wait_for "STATUS= arrives (StatusText: watching …)" 20 'show oomwatch.service StatusText | grep -q watching'
check "watchdog armed and pinged (WatchdogTimestamp set)" '[ "$(show oomwatch.service WatchdogTimestampMonotonic)" -gt 0 ]'
check "oom_score_adj of the daemon is -900" '[ "$(cat /proc/$pid/oom_score_adj)" = -900 ]'
check "the daemon runs at nice -10 (Nice=)" '[ "$(sed "s/.*) //" /proc/$pid/stat | cut -d" " -f17)" = -10 ]'
check "NRestarts=0" '[ "$(show oomwatch.service NRestarts)" = 0 ]'
wait_for "journal: event=ready" 20 'owlog | grep -q "\"event\":\"ready\""'
check "config installed as conffile" 'dpkg-query -W -f="\${Conffiles}" oomwatch | grep -q /etc/oomwatch/oomwatch.yaml'
check "man page installed" '[ -s /usr/share/man/man8/oomwatch.8.gz ]'
systemd-analyze verify --man=no /lib/systemd/system/oomwatch.service >"$RES/verify.txt" 2>&1; vrc=$?
cat "$RES/verify.txt"
check "systemd-analyze verify (installed unit)" '[ $vrc = 0 ] && [ ! -s "$RES/verify.txt" ]'
systemd-analyze security --no-pager oomwatch.service >"$RES/security.txt" 2>&1
grep 'Overall exposure level' "$RES/security.txt"
check "systemd-analyze security of the installed unit within --threshold=23" \
	'systemd-analyze security --no-pager --threshold=23 oomwatch.service >/dev/null 2>&1'
# ProtectKernelTunables=: /sys and /proc/sys read-only in the daemon's mount
# namespace, the cgroupfs it writes still read-write
check "the daemon sees /sys/fs/cgroup read-write, of /proc only the processes (subset=pid)" \
	'awk "\$5 == \"/sys/fs/cgroup\" { print \$6 }" /proc/$pid/mountinfo | grep -q "^rw" && awk "\$5 == \"/proc\"" /proc/$pid/mountinfo | grep -q "subset=pid"'
mark analyzed

# ---------------------------------------------------------------- journald
echo "== structured journal fields (systemd.JournalWriter)"
check "JournalWriter: stderr of a service is the journal (sdctl exit 0, not 3)" 'systemd-run --quiet --wait --unit=probe /usr/local/bin/sdctl journal-probe p42'
wait_for "journal: PROBE_ID=p42 EVENT=probe CGROUP=… OOM_KILL=0 PRIORITY=4" 10 \
	'journalctl PROBE_ID=p42 -o verbose --no-pager | grep -q "EVENT=probe" && journalctl PROBE_ID=p42 -o verbose --no-pager | grep -q "CGROUP=/lxc.payload.web1" && journalctl PROBE_ID=p42 -o verbose --no-pager | grep -q "OOM_KILL=0" && journalctl PROBE_ID=p42 -o verbose --no-pager | grep -q "PRIORITY=4"'
journalctl PROBE_ID=p42 -o verbose --no-pager | grep -E '^ +(MESSAGE|EVENT|CGROUP|OOM_KILL|PRIORITY|PROBE_ID)=' | sort

# ---------------------------------------------------------------- OOM loop
echo "== OOM loop in a transient unit"
mark loop-start
systemd-run --quiet --unit=looper -p MemoryMax=32M -p MemorySwapMax=0 -p OOMScoreAdjust=-1000 /usr/local/bin/hog -mb 64
wait_for "journal: event=incident verdict=loop cgroup=/system.slice/looper.service" 60 \
	'owlog | grep "\"event\":\"incident\"" | grep "\"verdict\":\"loop\"" | grep -q "looper.service"'
mark loop-detected
wait_for "journal: event=action action=reset-adj verified=true" 60 \
	'owlog | grep "\"event\":\"action\"" | grep "\"action\":\"reset-adj\"" | grep -q "\"verified\":true"'
wait_for "looper ended by the kernel (Result oom-kill or signal)" 60 \
	'r=$(show looper.service Result); [ "$r" = oom-kill ] || [ "$r" = signal ]'
mark loop-broken
echo "looper: Result=$(show looper.service Result) ActiveState=$(show looper.service ActiveState)"
owlog | grep -E '"event":"(incident|action|ladder_done|resolved)"' | head -10
check "oomwatch still active, not restarted" 'systemctl is-active -q oomwatch.service && [ "$(show oomwatch.service NRestarts)" = 0 ]'

# ---------------------------------------------------------------- OOMPolicy=stop
echo "== OOMPolicy=stop (a transient service's default): said, and a rule's ladder for such units keeps the unit"
check "looper has OOMPolicy=stop" '[ "$(show looper.service OOMPolicy)" = stop ]'
check "journal: event=oom_policy_stop for looper.service" \
	'owlog | grep "\"event\":\"oom_policy_stop\"" | grep -q "\"unit\":\"looper.service\""'
check "journal: looper's action detail says OOMPolicy=stop" \
	'owlog | grep "\"event\":\"action\"" | grep "looper.service" | grep -q "OOMPolicy=stop"'
cp /etc/oomwatch/oomwatch.yaml /tmp/oomwatch.yaml.orig
printf 'oom_policy_stop_ladder: [raise-limit]\n' >/tmp/stopladder.yaml
install -m 0640 /tmp/stopladder.yaml /etc/oomwatch/oomwatch.yaml
nrel=$(owlog | grep -c '"event":"reloaded"')
systemctl reload oomwatch.service
wait_for "journal: event=reloaded (oom_policy_stop_ladder: [raise-limit])" 30 \
	'[ "$(owlog | grep -c "\"event\":\"reloaded\"")" -gt "$nrel" ]'
systemd-run --quiet --unit=stopper -p MemoryMax=32M -p MemorySwapMax=0 -p OOMScoreAdjust=-1000 /usr/local/bin/hog -mb 36
wait_for "journal: stopper's loop resolved by raise-limit, the unit's own ladder" 90 \
	'owlog | grep "\"event\":\"ladder_done\"" | grep "stopper.service" | grep -q "\"outcome\":\"resolved\""'
check "journal: event=oom_policy_stop for stopper.service names the ladder [raise-limit]" \
	'owlog | grep "\"event\":\"oom_policy_stop\"" | grep "stopper.service" | grep -q "raise-limit"'
check "no reset-adj in stopper.service" '! owlog | grep "\"event\":\"action\"" | grep "stopper.service" | grep -q "reset-adj"'
check "stopper still running: systemd did not stop it (ActiveState=active, Result=success)" \
	'[ "$(show stopper.service ActiveState)" = active ] && [ "$(show stopper.service Result)" = success ]'
systemctl stop stopper.service
install -m 0640 /tmp/oomwatch.yaml.orig /etc/oomwatch/oomwatch.yaml
systemctl reload oomwatch.service
mark oom-policy-stop

# ---------------------------------------------------------------- raise-limit through systemd
echo "== MemoryMax through D-Bus (systemd.Units), from oomwatch's sandbox"
systemd-run --quiet --unit=raiser -p MemoryMax=32M sleep 600
cg=$(show raiser.service ControlGroup)
check "UnitForCgroup($cg) = raiser.service" '[ "$(sdctl unit-for-cgroup "$cg")" = raiser.service ]'
check "UnitForCgroup($cg/x) = raiser.service (nearest ancestor)" '[ "$(sdctl unit-for-cgroup "$cg/x")" = raiser.service ]'
check "UnitForCgroup(/system.slice) = system.slice" '[ "$(sdctl unit-for-cgroup /system.slice)" = system.slice ]'
mkdir -p /sys/fs/cgroup/lxc.payload.web1
check "UnitForCgroup(/lxc.payload.web1) = \"\" (a cgroup no unit manages)" 'u=$(sdctl unit-for-cgroup /lxc.payload.web1) && [ -z "$u" ]'
rmdir /sys/fs/cgroup/lxc.payload.web1
# a oneshot with exactly oomwatch.service's sandbox (its directories left out:
# they belong to the running daemon) runs sdctl set-memory-max
{
	sed -E '/^(Type|NotifyAccess|ExecStart|ExecReload|Restart|RestartSec|WatchdogSec|TimeoutAbortSec|StateDirectory|RuntimeDirectory|ConfigurationDirectory)=/d; /^\[Install\]/,$d' \
		/lib/systemd/system/oomwatch.service
	printf '[Service]\nType=oneshot\nExecStart=/usr/local/bin/sdctl set-memory-max raiser.service 67108864\n'
} >/run/systemd/system/sdctl-sandboxed.service
systemctl daemon-reload
check "sdctl set-memory-max inside the hardened sandbox" 'systemctl start sdctl-sandboxed.service'
journalctl -u sdctl-sandboxed.service --no-pager -o cat | tail -3
check "systemctl show -p MemoryMax raiser = 67108864" '[ "$(show raiser.service MemoryMax)" = 67108864 ]'
check "memory.max of $cg = 67108864" '[ "$(cat /sys/fs/cgroup$cg/memory.max)" = 67108864 ]'
# where systemd recorded it (transient units: a drop-in next to the unit in /run/systemd/transient)
rec=$(for f in $(show raiser.service DropInPaths) $(show raiser.service FragmentPath); do grep -ls "MemoryMax=67108864" "$f"; done)
check "recorded by systemd in a runtime drop-in: ${rec:-none}" '[ -n "$rec" ]'
mark raised

# ---------------------------------------------------------------- raise-limit by the daemon, exact revert
echo "== raise-limit of MemoryMax=48M through systemd: 10% steps are not whole pages, the revert is exact"
cp /etc/oomwatch/oomwatch.yaml /tmp/oomwatch.yaml.orig
printf 'rules:\n  - name: raise48\n    match: {unit: "raise48.service"}\n    ladder: [raise-limit]\n    raise_limit: {revert_hold: 2s}\n' >/tmp/raise48.yaml
install -m 0640 /tmp/raise48.yaml /etc/oomwatch/oomwatch.yaml
systemctl reload oomwatch.service
wait_for "journal: event=reloaded with rule raise48" 30 'owlog | grep "\"event\":\"reloaded\"" | grep -q raise48'
# the shell stays when the hog is gone, so the unit and its cgroup remain
systemd-run --quiet --unit=raise48 -p MemoryMax=48M -p MemorySwapMax=0 -p OOMScoreAdjust=-1000 \
	/bin/sh -c '/usr/local/bin/hog -mb 51; exec sleep 600'
cg48=$(show raise48.service ControlGroup)
wait_for "journal: raise48 loop resolved by raise-limit" 90 \
	'owlog | grep "\"event\":\"ladder_done\"" | grep "raise48.service" | grep -q "\"outcome\":\"resolved\""'
mm=$(show raise48.service MemoryMax); cur=$(cat /sys/fs/cgroup$cg48/memory.max)
echo "raise48: MemoryMax=$mm memory.max=$cur (original 50331648)"
check "raised through systemd in whole pages (MemoryMax $mm = memory.max $cur > 50331648)" \
	'[ "$mm" = "$cur" ] && [ "$cur" -gt 50331648 ] && [ $((cur % 4096)) = 0 ]'
for p in $(cat /sys/fs/cgroup$cg48/cgroup.procs); do [ "$(cat /proc/$p/comm 2>/dev/null)" = hog ] && kill "$p"; done
wait_for "journal: event=reverted for raise48" 60 'owlog | grep "\"event\":\"reverted\"" | grep -q "raise48.service"'
check "MemoryMax of raise48 back to exactly 50331648" '[ "$(show raise48.service MemoryMax)" = 50331648 ]'
check "memory.max of $cg48 back to exactly 50331648" '[ "$(cat /sys/fs/cgroup$cg48/memory.max)" = 50331648 ]'
check "the reverter never took its raise for someone else's" '! owlog | grep -q "changed by someone else"'
systemctl stop raise48.service
install -m 0640 /tmp/oomwatch.yaml.orig /etc/oomwatch/oomwatch.yaml
systemctl reload oomwatch.service
mark raise-reverted

# ---------------------------------------------------------------- bad config
echo "== a bad config: reload keeps the old one; at start it fails once with 78, no restart loop"
pid=$(show oomwatch.service MainPID); nr0=$(show oomwatch.service NRestarts)
printf 'detector:\n  window: 10 seconds\n' >/tmp/bad.yaml
install -m 0640 /tmp/bad.yaml /etc/oomwatch/oomwatch.yaml
systemctl reload oomwatch.service
wait_for "journal: event=reload_failed naming oomwatch.yaml:2:11" 30 \
	'owlog | grep "\"event\":\"reload_failed\"" | grep -q "oomwatch.yaml:2:11"'
check "reload with a bad file: same process, still active, not restarted" \
	'systemctl is-active -q oomwatch.service && [ "$(show oomwatch.service MainPID)" = "$pid" ] && [ "$(show oomwatch.service NRestarts)" = "$nr0" ]'
systemctl restart oomwatch.service
wait_for "restart with a bad file: the unit fails" 30 '[ "$(show oomwatch.service ActiveState)" = failed ]'
check "exit status 78 (EX_CONFIG), Result=exit-code" \
	'[ "$(show oomwatch.service ExecMainStatus)" = 78 ] && [ "$(show oomwatch.service Result)" = exit-code ]'
# RestartSec=2s: a restart loop would have restarted it twice by now
sleep 5
check "no restart loop (RestartPreventExitStatus=78): NRestarts $(show oomwatch.service NRestarts) = $nr0, still failed" \
	'[ "$(show oomwatch.service NRestarts)" = "$nr0" ] && [ "$(show oomwatch.service ActiveState)" = failed ]'
systemctl status --no-pager -l -n 20 oomwatch.service >"$RES/status-bad.txt" 2>&1
cat "$RES/status-bad.txt"
check "systemctl status shows the positioned error (oomwatch.yaml:2:11: detector.window)" \
	'grep -q "oomwatch.yaml:2:11: detector.window" "$RES/status-bad.txt"'
check "journal has the positioned error" \
	'journalctl -u oomwatch.service --no-pager -o cat | grep -q "oomwatch.yaml:2:11: detector.window"'
install -m 0640 /tmp/oomwatch.yaml.orig /etc/oomwatch/oomwatch.yaml
systemctl reset-failed oomwatch.service
systemctl start oomwatch.service
wait_for "good config back: active again" 30 'systemctl is-active -q oomwatch.service'
mark bad-config

# ---------------------------------------------------------------- watchdog
echo "== systemd watchdog: pings keep it quiet, a stopped daemon is restarted"
mkdir -p /run/systemd/system/oomwatch.service.d
printf '[Service]\nWatchdogSec=3s\nTimeoutAbortSec=2s\nRestartSec=1s\n' >/run/systemd/system/oomwatch.service.d/watchdog-test.conf
# stopped across the reload: a running daemon pinging every 15 s would time
# out at once against the new 3 s
systemctl stop oomwatch.service
systemctl daemon-reload
check "raiser's MemoryMax survives daemon-reload" '[ "$(cat /sys/fs/cgroup$cg/memory.max)" = 67108864 ] && [ "$(show raiser.service MemoryMax)" = 67108864 ]'
systemctl stop raiser.service
systemctl start oomwatch.service
wait_for "active with WatchdogSec=3s" 30 'systemctl is-active -q oomwatch.service && [ "$(show oomwatch.service WatchdogUSec)" = 3s ]'
nr0=$(show oomwatch.service NRestarts)
ts1=$(show oomwatch.service WatchdogTimestampMonotonic)
sleep 5
ts2=$(show oomwatch.service WatchdogTimestampMonotonic)
check "WATCHDOG=1 pings arrive (WatchdogTimestamp $ts1 -> $ts2)" '[ "$ts2" -gt "$ts1" ]'
check "no watchdog timeout over 5 s at WatchdogSec=3s" '! journalctl -u oomwatch.service --no-pager | grep -q "Watchdog timeout" && [ "$(show oomwatch.service NRestarts)" = "$nr0" ]'
pid=$(show oomwatch.service MainPID)
mark wd-stop
systemctl kill --kill-who=main -s SIGSTOP oomwatch.service
wait_for "stopped daemon: watchdog timeout in the journal" 30 'journalctl -u oomwatch.service --no-pager | grep -q "Watchdog timeout"'
wait_for "restarted (NRestarts > $nr0, new MainPID, active)" 40 \
	'[ "$(show oomwatch.service NRestarts)" -gt "$nr0" ] && p=$(show oomwatch.service MainPID) && [ "$p" != 0 ] && [ "$p" != "$pid" ] && systemctl is-active -q oomwatch.service'
mark wd-restarted
journalctl -u oomwatch.service --no-pager -o cat | grep -E 'Watchdog timeout|Killing|Scheduled restart|SIGABRT|Main process exited' | head -5
# dpkg -r's postrm reloads systemd (each reload costs seconds under TCG)
rm -rf /run/systemd/system/oomwatch.service.d

# ---------------------------------------------------------------- remove, purge
echo "== dpkg -r, dpkg -P"
check "dpkg -r oomwatch" 'dpkgq -r oomwatch'
check "service stopped" '! systemctl is-active -q oomwatch.service'
check "no oomwatch process left" '! pgrep -x oomwatch >/dev/null'
check "unit file gone" '[ ! -e /lib/systemd/system/oomwatch.service ]'
check "binary gone" '[ ! -e /usr/bin/oomwatch ]'
check "conffile kept after remove" '[ -e /etc/oomwatch/oomwatch.yaml ]'
check "dpkg -P oomwatch" 'dpkgq -P oomwatch'
check "conffile and /etc/oomwatch gone" '[ ! -e /etc/oomwatch ]'
check "state dir gone" '[ ! -e /var/lib/oomwatch ]'
check "no enablement symlink" '[ ! -e /etc/systemd/system/multi-user.target.wants/oomwatch.service ]'
check "no mask left" '[ ! -L /etc/systemd/system/oomwatch.service ]'
check "deb-systemd-helper state purged" '! ls /var/lib/systemd/deb-systemd-helper-enabled/ 2>/dev/null | grep -q oomwatch && ! ls /var/lib/systemd/deb-systemd-helper-masked/ 2>/dev/null | grep -q oomwatch'
check "systemd forgot the unit" '[ "$(show oomwatch.service LoadState)" = not-found ]'
check "package gone" '! dpkg -s oomwatch >/dev/null 2>&1'
mark done
systemctl --failed --no-pager --plain | head -5
echo "overall fail=$fail"
exit $fail
