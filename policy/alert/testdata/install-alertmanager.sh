#!/bin/sh
# Installs Debian's prometheus-alertmanager for the policy/alert integration
# test (TestAlertmanagerReal), which runs the binary itself on a loopback
# port. The package's postinst enables and starts a system service on
# :9093/:9094; the test does not need it, so it is stopped where systemd
# runs, and kept from starting where it does not (policy-rc.d).
set -eu
if [ -x /usr/bin/prometheus-alertmanager ]; then
	exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends prometheus-alertmanager
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
	systemctl disable --now prometheus-alertmanager.service || true
fi
test -r /usr/share/prometheus/alertmanager/default.tmpl # needed at config load
/usr/bin/prometheus-alertmanager --version
