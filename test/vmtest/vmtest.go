// Package vmtest boots Debian cloud kernels under qemu (TCG) with a busybox
// initramfs and runs a shell command, typically a guest Go test binary, as
// root inside them. See README.md.
package vmtest

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/oomwatch/oomwatch/test/testhost"
)

// Kernel is a cached, unpacked Debian kernel.
type Kernel struct {
	Name    string // "6.1", "6.12"
	Vmlinuz string // path to the kernel image
	Release string // e.g. "6.1.0-56-cloud-amd64" (from the cache; may be empty)
}

// Mode selects the cgroup layout /init sets up.
type Mode string

const (
	V1 Mode = "v1" // tmpfs at /sys/fs/cgroup, v1 memory and freezer hierarchies below it
	V2 Mode = "v2" // cgroup2 at /sys/fs/cgroup, +memory +pids enabled for children of the root
)

// Boot describes one VM run.
type Boot struct {
	Kernel  Kernel
	Mode    Mode
	Files   map[string]string // guest path → host path, copied into the initramfs with mode 0755
	Env     map[string]string // exported before Cmd runs
	Cmd     string            // shell (busybox sh) run as root after setup, cwd /
	Timeout time.Duration     // whole VM, boot included; default 5 min
	MemMB   int               // guest RAM; default 1024
	SMP     int               // guest CPUs; default 2
	Append  string            // extra kernel command line
	Log     io.Writer         // if set, receives the serial console as it arrives
}

// Result is what a VM run produced.
type Result struct {
	Output   string        // serial console (kernel messages at loglevel<4 and the command's output), \r removed
	ExitCode int           // Cmd's exit status from VMTEST_EXIT=<rc>; -1 if the marker was missing
	Elapsed  time.Duration // qemu start to qemu exit
	Boot     time.Duration // qemu start to the VMTEST_START marker (kernel + /init setup); 0 if never seen
}

// Markers printed by /init.
const (
	StartMarker = "VMTEST_START"
	ExitMarker  = "VMTEST_EXIT="
)

// CacheDir is where fetch.sh leaves the kernels.
func CacheDir() string {
	if d := os.Getenv("OOMWATCH_VM_CACHE"); d != "" {
		return d
	}
	return "/var/tmp/oomwatch-vm"
}

// KernelNames are the kernels fetch.sh provides, oldest first.
var KernelNames = []string{"6.1", "6.12"}

// Kernels returns the cached kernels, or an error telling how to fetch them.
func Kernels() ([]Kernel, error) {
	var ks []Kernel
	var missing []string
	for _, n := range KernelNames {
		dir := filepath.Join(CacheDir(), n)
		vm := filepath.Join(dir, "vmlinuz")
		if st, err := os.Stat(vm); err != nil || st.Size() == 0 {
			missing = append(missing, vm)
			continue
		}
		rel, _ := os.ReadFile(filepath.Join(dir, "release"))
		ks = append(ks, Kernel{Name: n, Vmlinuz: vm, Release: strings.TrimSpace(string(rel))})
	}
	if len(missing) > 0 {
		return ks, fmt.Errorf("kernel images missing (%s): run `sudo bash test/vmtest/fetch.sh` (cache: $OOMWATCH_VM_CACHE, default /var/tmp/oomwatch-vm)", strings.Join(missing, ", "))
	}
	return ks, nil
}

// Combo is a kernel/cgroup-mode combination the tier runs.
type Combo struct {
	Kernel string
	Mode   Mode
}

func (c Combo) String() string { return c.Kernel + "-" + string(c.Mode) }

// Combos are the supported combinations (6.12 has no v1 memory controller).
var Combos = []Combo{{"6.1", V1}, {"6.1", V2}, {"6.12", V2}}

// Qemu is the qemu binary used.
var Qemu = "qemu-system-x86_64"

// Busybox returns the static busybox used for the initramfs ($OOMWATCH_VM_BUSYBOX or /bin/busybox).
func Busybox() (string, error) {
	p := os.Getenv("OOMWATCH_VM_BUSYBOX")
	if p == "" {
		p = "/bin/busybox"
	}
	if err := checkStatic(p); err != nil {
		return "", fmt.Errorf("%w (apt-get install busybox-static, or run test/vmtest/fetch.sh)", err)
	}
	return p, nil
}

// checkStatic fails for files that are not static ELF executables: the
// initramfs has no dynamic loader and no libc.
func checkStatic(p string) error {
	f, err := elf.Open(p)
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	defer f.Close()
	for _, ph := range f.Progs {
		if ph.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked; the initramfs has no libc (build with CGO_ENABLED=0)", p)
		}
	}
	return nil
}

// CheckHost returns an error naming what the host lacks to run VMs.
func CheckHost() error {
	var errs []error
	if _, err := exec.LookPath(Qemu); err != nil {
		errs = append(errs, fmt.Errorf("%s not found (apt-get install qemu-system-x86)", Qemu))
	}
	if _, err := exec.LookPath("cpio"); err != nil {
		errs = append(errs, errors.New("cpio not found (apt-get install cpio)"))
	}
	if _, err := Busybox(); err != nil {
		errs = append(errs, err)
	}
	if _, err := Kernels(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// CmdLine is the kernel command line.
//
// Console at loglevel 4 (what "quiet" sets): KERN_ERR and worse reach the
// serial console, e.g. "Memory cgroup out of memory: Killed process ...".
// The per-attempt flood of an OOM loop (dump_header, "Out of memory and no
// killable processes...", "Huh VM_FAULT_OOM leaked out ...") is KERN_WARNING
// and below: printing it synchronously on an emulated UART at hundreds of
// events per second would throttle the loop we want to measure and bury the
// test output. It stays in the (enlarged) ring buffer; guest tests read it
// from /dev/kmsg (guest.Kmsg).
const CmdLine = "console=ttyS0 panic=-1 oops=panic quiet loglevel=4 log_buf_len=8M printk.devkmsg=on mitigations=off tsc=reliable rdinit=/init"

// Run boots b.Kernel with a fresh initramfs and returns when the guest powers
// off, ctx ends or b.Timeout passes. A non-nil error means the VM could not be
// run or did not finish normally (timeout, no exit marker); Result is
// filled in as far as it got.
func Run(ctx context.Context, b Boot) (Result, error) {
	res := Result{ExitCode: -1}
	if b.Kernel.Vmlinuz == "" {
		return res, errors.New("vmtest: Boot.Kernel.Vmlinuz is empty")
	}
	if b.Mode != V1 && b.Mode != V2 {
		return res, fmt.Errorf("vmtest: bad mode %q", b.Mode)
	}
	if b.Timeout == 0 {
		b.Timeout = 5 * time.Minute
	}
	if b.MemMB == 0 {
		b.MemMB = 1024
	}
	if b.SMP == 0 {
		b.SMP = 2
	}
	// One TCG VM at a time on this host: two at once on 2 cores make both
	// slow enough to time out. The systemd-VM tier takes the same lock.
	unlock, err := lockVMs()
	if err != nil {
		return res, err
	}
	defer unlock()
	tmp, err := os.MkdirTemp("", "oomwatch-vm-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(tmp)
	initrd := filepath.Join(tmp, "initramfs.cpio")
	if err := BuildInitramfs(b, filepath.Join(tmp, "root"), initrd); err != nil {
		return res, err
	}

	ctx, cancel := context.WithTimeout(ctx, b.Timeout)
	defer cancel()
	args := []string{
		"-accel", "tcg,thread=multi", // always TCG: /dev/kvm on our hosts is nested PVM and hangs stock kernels
		"-m", strconv.Itoa(b.MemMB), "-smp", strconv.Itoa(b.SMP),
		"-nodefaults", "-display", "none", "-serial", "stdio", "-monitor", "none",
		"-no-reboot", "-nic", "none",
		"-kernel", b.Kernel.Vmlinuz, "-initrd", initrd,
		"-append", strings.TrimSpace(CmdLine + " " + b.Append),
	}
	cmd := exec.CommandContext(ctx, Qemu, args...)
	cmd.WaitDelay = 5 * time.Second
	var out testhost.SyncBuf
	var w io.Writer = &out
	start := time.Now()
	sw := &startWatcher{start: start}
	if b.Log != nil {
		w = io.MultiWriter(&out, sw, b.Log)
	} else {
		w = io.MultiWriter(&out, sw)
	}
	cmd.Stdout = w
	cmd.Stderr = w
	cmd.Stdin = nil
	runErr := cmd.Run()
	res.Elapsed = time.Since(start)
	res.Boot = sw.at()
	res.Output = strings.ReplaceAll(out.String(), "\r", "")
	if m := exitRE.FindAllStringSubmatch(res.Output, -1); len(m) > 0 {
		res.ExitCode, _ = strconv.Atoi(m[len(m)-1][1])
	}
	switch {
	case ctx.Err() != nil:
		return res, fmt.Errorf("vmtest: %s/%s: VM killed after %v (%v); console tail:\n%s", b.Kernel.Name, b.Mode, res.Elapsed.Round(time.Millisecond), ctx.Err(), tail(res.Output, 40))
	case runErr != nil:
		return res, fmt.Errorf("vmtest: %s/%s: qemu: %v; console tail:\n%s", b.Kernel.Name, b.Mode, runErr, tail(res.Output, 40))
	case res.ExitCode < 0:
		return res, fmt.Errorf("vmtest: %s/%s: guest powered off without %sN (panic or /init failure?); console tail:\n%s", b.Kernel.Name, b.Mode, ExitMarker, tail(res.Output, 40))
	}
	return res, nil
}

var exitRE = regexp.MustCompile(`(?m)` + ExitMarker + `(\d+)\s*$`)

// BuildInitramfs writes an uncompressed newc cpio archive (built with cpio(1)
// from a tree at rootDir) holding busybox and its applet links, b.Files, the
// generated /init and /vmtest.sh.
func BuildInitramfs(b Boot, rootDir, out string) error {
	bb, err := Busybox()
	if err != nil {
		return err
	}
	for _, d := range []string{"bin", "sbin", "usr/bin", "usr/sbin", "proc", "sys", "dev", "tmp", "run", "etc", "root"} {
		if err := os.MkdirAll(filepath.Join(rootDir, d), 0o755); err != nil {
			return err
		}
	}
	if err := copyFile(bb, filepath.Join(rootDir, "bin/busybox"), 0o755); err != nil {
		return err
	}
	list, err := exec.Command(bb, "--list-full").Output()
	if err != nil {
		return fmt.Errorf("busybox --list-full: %w", err)
	}
	for _, l := range strings.Fields(string(list)) {
		if l == "bin/busybox" {
			continue
		}
		if err := os.Symlink("/bin/busybox", filepath.Join(rootDir, l)); err != nil && !os.IsExist(err) {
			return err
		}
	}
	guests := make([]string, 0, len(b.Files))
	for g := range b.Files {
		guests = append(guests, g)
	}
	sort.Strings(guests)
	for _, g := range guests {
		h := b.Files[g]
		dst := filepath.Join(rootDir, filepath.Clean("/"+g))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		os.Remove(dst) // may be a busybox link
		if err := copyFile(h, dst, 0o755); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(rootDir, "init"), []byte(initScript(b)), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(rootDir, "vmtest.sh"), []byte("#!/bin/sh\n"+b.Cmd+"\n"), 0o755); err != nil {
		return err
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	// find | cpio: owner forced to root; no device nodes needed (devtmpfs)
	c := exec.Command("sh", "-c", "find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet")
	c.Dir = rootDir
	c.Stdout = f
	var stderr bytes.Buffer
	c.Stderr = &stderr
	if err := c.Run(); err != nil {
		return fmt.Errorf("cpio: %v: %s", err, stderr.String())
	}
	return f.Close()
}

func initScript(b Boot) string {
	var s strings.Builder
	s.WriteString(`#!/bin/sh
# generated by test/vmtest: PID 1 of the test VM
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root TERM=dumb
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# no /dev/console in the archive: attach to it now that devtmpfs is there
exec </dev/console >/dev/console 2>&1
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=755 tmpfs /run
`)
	switch b.Mode {
	case V2:
		s.WriteString(`mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup || echo "VMTEST_SETUP_ERROR cgroup2 mount"
for c in memory pids; do echo "+$c" > /sys/fs/cgroup/cgroup.subtree_control || echo "VMTEST_SETUP_ERROR +$c"; done
`)
	case V1:
		s.WriteString(`mount -t tmpfs -o mode=755 cgroup /sys/fs/cgroup
for c in memory freezer; do
	mkdir -p /sys/fs/cgroup/$c
	mount -t cgroup -o $c $c /sys/fs/cgroup/$c || echo "VMTEST_SETUP_ERROR v1 $c mount"
done
`)
	}
	s.WriteString(`swapoff -a 2>/dev/null
grep -q . /proc/swaps 2>/dev/null && [ "$(wc -l < /proc/swaps)" -gt 1 ] && echo "VMTEST_SETUP_ERROR swap is on"
`)
	keys := make([]string, 0, len(b.Env))
	for k := range b.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&s, "export %s=%s\n", k, shellQuote(b.Env[k]))
	}
	fmt.Fprintf(&s, "export VMTEST_MODE=%s VMTEST_KERNEL=%s\n", b.Mode, shellQuote(b.Kernel.Name))
	s.WriteString(`echo "` + StartMarker + ` $(uname -r) $(cut -d' ' -f1 /proc/uptime)s"
cd /
/bin/sh /vmtest.sh
rc=$?
echo "` + ExitMarker + `$rc"
sync
poweroff -f
`)
	return s.String()
}

func shellQuote(v string) string { return "'" + strings.ReplaceAll(v, "'", `'\''`) + "'" }

func copyFile(src, dst string, mode os.FileMode) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, data, mode)
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// startWatcher records when StartMarker first appears on the console.
type startWatcher struct {
	mu    sync.Mutex
	start time.Time
	seen  time.Duration
	buf   []byte
}

func (s *startWatcher) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seen == 0 {
		s.buf = append(s.buf, p...)
		if bytes.Contains(s.buf, []byte(StartMarker)) {
			s.seen = time.Since(s.start)
			s.buf = nil
		} else if len(s.buf) > 4096 {
			s.buf = s.buf[len(s.buf)-64:]
		}
	}
	return len(p), nil
}

func (s *startWatcher) at() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seen
}

// lockVMs holds an exclusive flock on CacheDir()/.vm.lock while a VM runs
// (the same file test/sdvm locks).
func lockVMs() (func(), error) {
	p := filepath.Join(CacheDir(), ".vm.lock")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR|syscall.O_CLOEXEC, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("flock %s: %w", p, err)
	}
	return func() { f.Close() }, nil
}
