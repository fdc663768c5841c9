// Package sdvm boots Debian 12 with systemd as PID 1 under qemu and runs a
// test payload in it: the tier that installs the oomwatch .deb into a real
// systemd system.
//
// The root filesystem is made with debootstrap by build-image.sh and
// customize.sh (plus VARIANT-customize.sh for an image variant such as lxc)
// and cached, zstd-compressed, with the Debian cloud kernel that boots it
// (NVMe root, no initramfs) by ensure-image.sh under
// $OOMWATCH_VM_CACHE/sdvm-VARIANT/<hash of the scripts>/. Each run decompresses it,
// attaches it with snapshot=on, passes the payload directory in as a raw tar
// disk and gets the files the guest saved back on a second raw tar disk; the
// payload's run.sh output arrives on the second serial port.
package sdvm

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Image is a cached systemd VM image.
type Image struct {
	Dir     string // cache directory
	RootZst string // root.img.zst: ext4, systemd, the vmtest runner unit
	Vmlinuz string
	Release string // kernel release, e.g. 6.1.0-56-cloud-amd64
	Times   string // how long the build took, from build-image.sh
}

// Dir is this package's source directory (the scripts live there).
func Dir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(file)
}

// CheckHost names what the host lacks to run the VM (building the image is
// checked by EnsureImage).
func CheckHost() error {
	var errs []error
	for _, t := range []struct{ bin, pkg string }{{"qemu-system-x86_64", "qemu-system-x86"}, {"zstd", "zstd"}, {"tar", "tar"}} {
		if _, err := exec.LookPath(t.bin); err != nil {
			errs = append(errs, fmt.Errorf("%s not found (apt-get install %s, or make sdvm-deps)", t.bin, t.pkg))
		}
	}
	return errors.Join(errs...)
}

// Image variants (build-image.sh): Base is Debian 12 with systemd; LXC adds
// lxc 5 and the containers lxc-customize.sh creates; Containers adds
// docker.io and podman (containers-customize.sh); Peers adds to LXC's
// earlyoom and systemd-oomd, disabled (make bench-peers).
const (
	Base       = "base"
	LXC        = "lxc"
	Containers = "containers"
	Peers      = "peers"
)

// EnsureImage returns the cached image of variant, building it first when
// missing (root, network, a minute or two); the build's stderr goes to log.
func EnsureImage(ctx context.Context, variant string, log func(string)) (Image, error) {
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(Dir(), "ensure-image.sh"), variant)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if s := strings.TrimSpace(stderr.String()); s != "" && log != nil {
		log(s)
	}
	if err != nil {
		return Image{}, fmt.Errorf("ensure-image.sh: %v: %s", err, strings.TrimSpace(stderr.String()))
	}
	dir := strings.TrimSpace(string(out))
	img := Image{Dir: dir, RootZst: filepath.Join(dir, "root.img.zst"), Vmlinuz: filepath.Join(dir, "vmlinuz")}
	rel, _ := os.ReadFile(filepath.Join(dir, "release"))
	times, _ := os.ReadFile(filepath.Join(dir, "times"))
	img.Release, img.Times = strings.TrimSpace(string(rel)), strings.TrimSpace(string(times))
	return img, nil
}

// Result is what a VM run produced.
type Result struct {
	Output     string            // the payload's output (second serial port), \r removed
	ExitCode   int               // run.sh's exit status (VMTEST_EXIT=); -1 if missing
	Elapsed    time.Duration     // qemu start to exit, host clock
	Boot       time.Duration     // guest uptime when systemd reported the system running
	Marks      map[string]string // TIME NAME UPTIME lines of the payload: name → guest uptime (s)
	ResultsDir string            // the files the guest saved ($VMTEST_RESULTS): journal.txt, …
	Console    string            // path of the kernel/systemd console log
}

// Accel picks kvm only where it can run a stock kernel (vmx/svm and a
// writable /dev/kvm; a PVM /dev/kvm alone hangs), else tcg. $OOMWATCH_VM_ACCEL overrides.
func Accel() string {
	if a := os.Getenv("OOMWATCH_VM_ACCEL"); a != "" {
		return a
	}
	cpu, _ := os.ReadFile("/proc/cpuinfo")
	if regexp.MustCompile(`\b(vmx|svm)\b`).Match(cpu) {
		if f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0); err == nil {
			f.Close()
			return "kvm"
		}
	}
	return "tcg"
}

// LockPath serialises TCG VMs on this host (two at once on a 2-core runner
// make both slow enough to time out): Run holds an exclusive flock on it
// while qemu runs. Other VM harnesses may take the same lock.
func LockPath() string {
	d := os.Getenv("OOMWATCH_VM_CACHE")
	if d == "" {
		d = "/var/tmp/oomwatch-vm"
	}
	return filepath.Join(d, ".vm.lock")
}

func lockVMs() (func(), error) {
	p := LockPath()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("flock %s: %w", p, err)
	}
	return func() { f.Close() }, nil
}

var (
	exitRE  = regexp.MustCompile(`(?m)^VMTEST_EXIT=(\d+)`)
	stateRE = regexp.MustCompile(`(?m)^VMTEST_SYSTEM_STATE=\S+ uptime=([0-9.]+)`)
	markRE  = regexp.MustCompile(`(?m)^TIME (\S+) ([0-9.]+)$`)
)

// Run boots img with payloadDir (which must hold run.sh) and returns when
// the guest powers off, ctx ends or timeout passes. Work files go to outDir.
func Run(ctx context.Context, img Image, payloadDir, outDir string, timeout time.Duration) (Result, error) {
	res := Result{ExitCode: -1, ResultsDir: filepath.Join(outDir, "results"), Console: filepath.Join(outDir, "console.log")}
	if err := os.MkdirAll(res.ResultsDir, 0o755); err != nil {
		return res, err
	}
	root := filepath.Join(outDir, "root.img")
	if out, err := exec.CommandContext(ctx, "zstd", "-q", "-d", "-f", img.RootZst, "-o", root).CombinedOutput(); err != nil {
		return res, fmt.Errorf("zstd -d %s: %v: %s", img.RootZst, err, out)
	}
	defer os.Remove(root)
	payload := filepath.Join(outDir, "payload.tar") // a tar file is 512-byte aligned: a raw disk as it is
	if out, err := exec.CommandContext(ctx, "tar", "-C", payloadDir, "-cf", payload, ".").CombinedOutput(); err != nil {
		return res, fmt.Errorf("tar payload: %v: %s", err, out)
	}
	results := filepath.Join(outDir, "results.img")
	if err := os.WriteFile(results, nil, 0o644); err != nil {
		return res, err
	}
	if err := os.Truncate(results, 64<<20); err != nil {
		return res, err
	}
	serial := filepath.Join(outDir, "results.log")
	args := []string{"-machine", "q35", "-smp", "2", "-m", "1024", "-nodefaults", "-display", "none", "-no-reboot",
		"-kernel", img.Vmlinuz,
		"-append", "root=/dev/nvme0n1 rw rootfstype=ext4 console=ttyS0 init=/lib/systemd/systemd vmtest=1 panic=-1 quiet",
		"-drive", "file=" + root + ",format=raw,if=none,id=root,snapshot=on", "-device", "nvme,serial=root,drive=root",
		"-drive", "file=" + payload + ",format=raw,if=none,id=pl,readonly=on", "-device", "nvme,serial=payload,drive=pl",
		"-drive", "file=" + results + ",format=raw,if=none,id=res", "-device", "nvme,serial=results,drive=res",
		"-serial", "file:" + res.Console, "-serial", "file:" + serial,
	}
	if Accel() == "kvm" {
		args = append([]string{"-accel", "kvm", "-cpu", "host"}, args...)
	} else {
		args = append([]string{"-accel", "tcg,thread=multi"}, args...)
	}
	unlock, err := lockVMs()
	if err != nil {
		return res, err
	}
	defer unlock()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", args...)
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	qout, qerr := cmd.CombinedOutput()
	res.Elapsed = time.Since(start)

	raw, _ := os.ReadFile(serial)
	res.Output = strings.ReplaceAll(string(raw), "\r", "")
	if m := exitRE.FindStringSubmatch(res.Output); m != nil {
		res.ExitCode, _ = strconv.Atoi(m[1])
	}
	if m := stateRE.FindStringSubmatch(res.Output); m != nil {
		if f, err := strconv.ParseFloat(m[1], 64); err == nil {
			res.Boot = time.Duration(f * float64(time.Second))
		}
	}
	res.Marks = map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(res.Output))
	for sc.Scan() {
		if m := markRE.FindStringSubmatch(sc.Text()); m != nil {
			res.Marks[m[1]] = m[2]
		}
	}
	_ = exec.Command("tar", "-C", res.ResultsDir, "-xf", results).Run()
	os.Remove(results)
	switch {
	case ctx.Err() != nil:
		return res, fmt.Errorf("VM did not finish within %v (see %s)", timeout, res.Console)
	case qerr != nil:
		return res, fmt.Errorf("qemu: %v: %s", qerr, qout)
	case res.ExitCode < 0:
		return res, fmt.Errorf("no %s marker from the guest (see %s)", "VMTEST_EXIT=", res.Console)
	}
	return res, nil
}
