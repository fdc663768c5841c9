# Shell helpers every systemd-VM payload sources (`. ./lib.sh`): PASS:/FAIL:
# lines, TIME marks, waiting for a condition, systemd properties, oomwatch's
# journal as JSON lines, quiet dpkg.
export SYSTEMD_COLORS=0 SYSTEMD_URLIFY=0 SYSTEMD_PAGER= SYSTEMD_LESS= TERM=dumb
fail=0
pass() { echo "PASS: $*"; }
failf() { echo "FAIL: $*"; fail=1; }
# check DESC SHELL-CONDITION; returns the condition's result
check() { if eval "$2"; then pass "$1"; else failf "$1"; return 1; fi; }
mark() { echo "TIME $1 $(cut -d' ' -f1 /proc/uptime)"; }
# wait_for DESC SECONDS SHELL-CONDITION
wait_for() {
	local desc=$1 secs=$2 cond=$3 end=$(($(date +%s) + $2))
	until eval "$cond"; do
		if [ "$(date +%s)" -ge $end ]; then failf "$desc (not within ${secs}s)"; return 1; fi
		sleep 0.25
	done
	pass "$desc"
}
show() { systemctl show -p "$2" --value "$1"; }
# oomwatch's journal as JSON lines: JSON= holds the whole zerolog event with
# the journald writer (systemd.JournalWriter), MESSAGE= without it
owlog() { journalctl -u oomwatch.service -o verbose --no-pager 2>/dev/null | sed -n 's/^ *\(JSON\|MESSAGE\)=\({.*}\)$/\2/p'; }
# owev EVENT CGROUP: oomwatch log lines with that event about that cgroup
owev() { owlog | grep "\"event\":\"$1\"" | grep "\"cgroup\":\"$2\""; }
RES=${VMTEST_RESULTS:-/tmp}
# dpkg without its \r progress lines
dpkgq() {
	dpkg "$@" >/tmp/dpkg.out 2>&1
	local rc=$?
	tr '\r' '\n' </tmp/dpkg.out | grep -v '^(Reading database' | grep -v '^$'
	return $rc
}
# install_with_capture: install the .deb, give the daemon an exec alert sink
# that appends every document to /var/lib/oomwatch/alerts.jsonl (its
# StateDirectory, writable in the sandbox; the defaults otherwise) and
# restart it
install_with_capture() {
	echo "== dpkg -i, alert capture"
	check "dpkg -i oomwatch" 'dpkgq -i ./oomwatch_*.deb'
	cat >/etc/oomwatch/oomwatch.yaml <<'YAML'
alerts:
  exec:
    - name: capture
      command: ["/bin/sh", "-c", "cat >> /var/lib/oomwatch/alerts.jsonl; echo >> /var/lib/oomwatch/alerts.jsonl"]
YAML
	chmod 0640 /etc/oomwatch/oomwatch.yaml
	check "oomwatch check-config" 'oomwatch check-config'
	check "systemctl restart oomwatch (Type=notify: returns once ready)" 'systemctl restart oomwatch.service'
	wait_for "oomwatch active, STATUS watching" 20 'show oomwatch.service StatusText | grep -q watching'
}
