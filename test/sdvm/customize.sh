#!/bin/bash
# Turn a debootstrap'd rootfs into a bootable, self-testing VM image
# usage: customize.sh ROOTFS KERNEL_EXTRACT_DIR KVER
set -euo pipefail
R=$1 K=$2 KVER=$3

echo oomwatch-vm >"$R/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 oomwatch-vm\n' >"$R/etc/hosts"
echo '# root fs comes from root= on the kernel cmdline' >"$R/etc/fstab"
# empty root password: log in on the serial console when debugging
chroot "$R" passwd -d root >/dev/null

# modules of the kernel we boot (autofs4, ...); keep the image small
mkdir -p "$R/lib/modules"
cp -a "$K/lib/modules/$KVER" "$R/lib/modules/"
rm -rf "$R/lib/modules/$KVER/kernel/drivers/"{gpu,media,infiniband,net/wireless,net/ethernet,scsi} \
	"$R/lib/modules/$KVER/kernel/sound"
chroot "$R" depmod -a "$KVER"

# quiet, deterministic boot: no timers mid-test, no VGA getty
rm -f "$R"/etc/systemd/system/timers.target.wants/*
rm -f "$R/etc/systemd/system/getty.target.wants/getty@tty1.service"
# a lost journal would hide what the test looks for: keep it in memory, big enough
mkdir -p "$R/etc/systemd/journald.conf.d"
printf '[Journal]\nStorage=volatile\nRuntimeMaxUse=64M\nRateLimitBurst=0\n' >"$R/etc/systemd/journald.conf.d/vmtest.conf"

chroot "$R" apt-get clean
rm -rf "$R"/var/lib/apt/lists/* "$R"/usr/share/doc/* "$R"/usr/share/man/* "$R"/usr/share/locale/* "$R"/usr/share/info/*

# ---- test harness ----
cat >"$R/usr/local/sbin/vmtest-runner" <<'RUNNER'
#!/bin/bash
# stdout/stderr -> /dev/ttyS1 (host: -serial file:results.log)
echo "VMTEST_BEGIN uptime=$(cut -d' ' -f1 /proc/uptime)"
state=$(systemctl is-system-running --wait)
echo "VMTEST_SYSTEM_STATE=$state uptime=$(cut -d' ' -f1 /proc/uptime)"
udevadm settle
P=/run/vmtest/payload; export VMTEST_RESULTS=/run/vmtest/results
mkdir -p $P $VMTEST_RESULTS
tar -xf /dev/disk/by-id/nvme-QEMU_NVMe_Ctrl_payload -C $P
cd $P && bash ./run.sh; rc=$?
journalctl -b --no-pager -o short-monotonic > $VMTEST_RESULTS/journal.txt 2>&1
tar -cf /dev/disk/by-id/nvme-QEMU_NVMe_Ctrl_results -C $VMTEST_RESULTS .
sync
echo "VMTEST_EXIT=$rc uptime=$(cut -d' ' -f1 /proc/uptime)"
exit $rc
RUNNER
chmod 755 "$R/usr/local/sbin/vmtest-runner"

cat >"$R/etc/systemd/system/vmtest.service" <<'UNIT'
[Unit]
Description=Run test payload, then power off
After=multi-user.target
ConditionKernelCommandLine=vmtest=1
SuccessAction=poweroff-force
FailureAction=poweroff-force

[Service]
Type=exec
ExecStart=/usr/local/sbin/vmtest-runner
StandardOutput=tty
StandardError=inherit
TTYPath=/dev/ttyS1
Environment=SYSTEMD_COLORS=0 SYSTEMD_URLIFY=0 SYSTEMD_PAGER= TERM=dumb
TimeoutStartSec=infinity

[Install]
WantedBy=multi-user.target
UNIT
chroot "$R" systemctl enable vmtest.service
