#!/bin/sh
# Installs Debian's prometheus-alertmanager for the alert integration
# test (TestAlertmanagerReal), which runs the binary itself on a loopback
# port. The package's postinst enables and starts a system service on
# :9093/:9094; the test does not need it, so it is stopped where systemd
# runs, and kept from starting where it does not (policy-rc.d).
set -eu
if [ -x /usr/bin/prometheus-alertmanager ]; then
	exit 0
fi
export DEBIAN_FRONTEND=noninteractive
# Keep the packaged service from starting during the install (as Docker
# images do with policy-rc.d); put back whatever was there before.
prc=/usr/sbin/policy-rc.d
saved=
if [ -e "$prc" ]; then saved=$(mktemp); cp -p "$prc" "$saved"; fi
printf '#!/bin/sh\nexit 101\n' >"$prc"; chmod 755 "$prc"
restore() { if [ -n "$saved" ]; then mv "$saved" "$prc"; else rm -f "$prc"; fi; }
trap restore EXIT
apt-get update -qq
apt-get install -y -qq --no-install-recommends prometheus-alertmanager
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
	systemctl disable --now prometheus-alertmanager.service || true
fi
test -r /usr/share/prometheus/alertmanager/default.tmpl # needed at config load
/usr/bin/prometheus-alertmanager --version
