// Package sidecar tests the oomwatch container image as a privileged podman
// sidecar on this host (packaging/container/README.md): built by
// packaging/container/build-image.sh, run with the host's PID and cgroup
// namespaces and /sys/fs/cgroup mounted read-write, it must receive real v1
// OOM events from host cgroups it did not create.
package sidecar

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/oomwatch/oomwatch/test/testtier"
)

const memRoot = "/sys/fs/cgroup/memory"

func topDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "/usr/local/go/bin/go"
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

func goBuild(t *testing.T, out, pkg, ldflags string) string {
	t.Helper()
	cmd := exec.Command(goTool(), "build", "-trimpath", "-ldflags", ldflags, "-o", out, pkg)
	cmd.Dir = topDir()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	return out
}

// requireHost skips (or, with OOMWATCH_REQUIRE_TIERS=host, fails) unless
// this is root on a host with a v1 memory hierarchy, podman, buildah and runc.
func requireHost(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds an image and runs a container")
	}
	if os.Geteuid() != 0 {
		testtier.Require(t, testtier.Host, "needs root (podman --privileged, v1 memory cgroups)")
	}
	if !fileExists(filepath.Join(memRoot, "memory.oom_control")) {
		testtier.Require(t, testtier.Host, "no cgroup v1 memory hierarchy at "+memRoot)
	}
	var missing []string
	for _, b := range []string{"podman", "buildah", "runc"} {
		if _, err := exec.LookPath(b); err != nil {
			missing = append(missing, b)
		}
	}
	if len(missing) > 0 {
		testtier.Require(t, testtier.Host, strings.Join(missing, ", ")+" not found (run packaging/container/install-podman.sh as root)")
	}
}

// ulimits are the explicit --ulimit flags (rootful podman asks
// for 1048576 files and processes; without CAP_SYS_RESOURCE the hard limit
// cannot be raised, so stay at or below ours).
func ulimits() []string {
	var out []string
	for _, l := range []struct {
		name string
		res  int
		want uint64
	}{{"nofile", unix.RLIMIT_NOFILE, 20000}, {"nproc", unix.RLIMIT_NPROC, 32768}} {
		v := l.want
		var r unix.Rlimit
		if err := unix.Getrlimit(l.res, &r); err == nil && r.Max < v {
			v = r.Max
		}
		out = append(out, "--ulimit", fmt.Sprintf("%s=%d:%d", l.name, v, v))
	}
	return out
}

// podman runs podman with the runtime this host needs (crun
// 1.8 refuses hybrid cgroups).
func podman(args ...string) *exec.Cmd {
	return exec.Command("podman", append([]string{"--runtime", "runc"}, args...)...)
}

// logLine is one JSON line of oomwatch's log.
type logLine map[string]any

func (l logLine) s(k string) string  { v, _ := l[k].(string); return v }
func (l logLine) n(k string) float64 { v, _ := l[k].(float64); return v }

// sidecarLog reads the container's log as JSON lines (other lines are kept
// as {"raw": line}).
func sidecarLog(name string) ([]logLine, string) {
	out, _ := podman("logs", name).CombinedOutput()
	var lines []logLine
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l logLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			l = logLine{"raw": sc.Text()}
		}
		lines = append(lines, l)
	}
	return lines, string(out)
}

// waitLog polls the sidecar's log until match finds a line.
func waitLog(t *testing.T, name string, d time.Duration, match func(logLine) bool) (logLine, bool) {
	t.Helper()
	end := time.Now().Add(d)
	for {
		lines, _ := sidecarLog(name)
		for _, l := range lines {
			if match(l) {
				return l, true
			}
		}
		if time.Now().After(end) {
			return nil, false
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// memcg is a host v1 memory cgroup the test owns.
type memcg struct {
	dir string // /sys/fs/cgroup/memory/NAME
	rel string // /NAME, as oomwatch names it
}

func newMemcg(t *testing.T, name string, limit string, killDisable bool) memcg {
	t.Helper()
	c := memcg{dir: filepath.Join(memRoot, name), rel: "/" + name}
	if err := os.Mkdir(c.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.remove(t) })
	c.write(t, "memory.limit_in_bytes", limit)
	// swap would let the workload page out instead of hitting the limit
	if fileExists(filepath.Join(c.dir, "memory.memsw.limit_in_bytes")) {
		c.write(t, "memory.memsw.limit_in_bytes", limit)
	}
	if killDisable {
		c.write(t, "memory.oom_control", "1")
	}
	return c
}

func (c memcg) write(t *testing.T, file, val string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(c.dir, file), []byte(val), 0); err != nil {
		t.Fatalf("write %q to %s/%s: %v", val, c.dir, file, err)
	}
}

func (c memcg) procs() []int {
	b, _ := os.ReadFile(filepath.Join(c.dir, "cgroup.procs"))
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		if p, err := strconv.Atoi(f); err == nil {
			pids = append(pids, p)
		}
	}
	return pids
}

// oomControl reads memory.oom_control as key → value.
func (c memcg) oomControl() map[string]uint64 {
	b, _ := os.ReadFile(filepath.Join(c.dir, "memory.oom_control"))
	m := map[string]uint64{}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 2 {
			m[f[0]], _ = strconv.ParseUint(f[1], 10, 64)
		}
	}
	return m
}

// remove lets the kernel have its way with anything left (oom_kill_disable
// off, SIGKILL), then removes the cgroup.
func (c memcg) remove(t *testing.T) {
	if !fileExists(c.dir) {
		return
	}
	_ = os.WriteFile(filepath.Join(c.dir, "memory.oom_control"), []byte("0"), 0)
	var err error
	for i := 0; i < 50; i++ {
		for _, p := range c.procs() {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
		if err = os.Remove(c.dir); err == nil || errors.Is(err, os.ErrNotExist) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Errorf("cgroup %s left behind: %v", c.dir, err)
}

func (c memcg) waitEmpty(d time.Duration) bool {
	end := time.Now().Add(d)
	for len(c.procs()) > 0 {
		if time.Now().After(end) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}

// forCgroup: log lines about cg with event ev ("" = any event).
func forCgroup(lines []logLine, cg, ev string) []logLine {
	var out []logLine
	for _, l := range lines {
		if l.s("cgroup") == cg && (ev == "" || l.s("event") == ev) {
			out = append(out, l)
		}
	}
	return out
}

func netavarkChains() string {
	out, err := exec.Command("iptables", "-S").CombinedOutput()
	if err != nil {
		return ""
	}
	var b strings.Builder
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "NETAVARK") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// buildImage builds oomwatch, the hog and the image FROM scratch with
// build-image.sh; the image is removed when t ends.
func buildImage(t *testing.T, id, work string) (image, bin, hog string) {
	t.Helper()
	t0 := time.Now()
	bin = goBuild(t, filepath.Join(work, "oomwatch"), "./cmd/oomwatch", "-s -w -X main.version=0.0-sidecar-test")
	hog = goBuild(t, filepath.Join(work, "hog"), "./test/testbin/hog", "-s -w")
	image = "localhost/oomwatch-sidecar-test:" + id
	cmd := exec.Command("bash", filepath.Join(topDir(), "packaging", "container", "build-image.sh"), filepath.Join(work, "image"))
	cmd.Env = append(os.Environ(), "IMAGE="+image, "OOMWATCH_BIN="+bin, "GO="+goTool())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("build-image.sh: %v\n%s", err, stderr.String())
	}
	t.Cleanup(func() {
		if b, err := podman("rmi", "-f", image).CombinedOutput(); err != nil {
			t.Errorf("podman rmi %s: %v: %s", image, err, b)
		}
	})
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) < 2 || lines[len(lines)-2] != image || !fileExists(lines[len(lines)-1]) {
		t.Fatalf("build-image.sh stdout: want the image name and the archive path, got %q", out)
	}
	insp, err := podman("image", "inspect", "--format", "{{json .Config.Entrypoint}} {{json .Config.Cmd}} {{.Size}}", image).Output()
	if err != nil {
		t.Fatalf("podman image inspect: %v", err)
	}
	if !strings.HasPrefix(string(insp), `["/usr/bin/oomwatch"] ["run"]`) {
		t.Errorf("image entrypoint/cmd: %s", insp)
	}
	t.Logf("image %s built in %v (entrypoint, cmd, size: %s); %s", image, time.Since(t0).Round(time.Millisecond),
		strings.TrimSpace(string(insp)), strings.TrimSpace(stderr.String()))
	return image, bin, hog
}

// stallHog starts a hog of 64 MiB in p, an oom_kill_disable=1 cgroup with
// a smaller limit, where it stalls. wait reports how it ended, or ok false
// if it still runs after d. When t ends a hog still running is released
// (oom_kill_disable 0: the kernel kills it).
func stallHog(t *testing.T, hog string, p memcg) (pid int, wait func(d time.Duration) (err error, ok bool)) {
	t.Helper()
	c := exec.Command(hog, "-mb", "64", "-cgroup-procs", filepath.Join(p.dir, "cgroup.procs"))
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var exit error
	go func() { exit = c.Wait(); close(done) }()
	wait = func(d time.Duration) (error, bool) {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-done:
			return exit, true
		default:
		}
		select {
		case <-done:
			return exit, true
		case <-t.C:
			return nil, false
		}
	}
	t.Cleanup(func() {
		if _, ok := wait(0); ok {
			return
		}
		p.write(t, "memory.oom_control", "0")
		if _, ok := wait(10 * time.Second); !ok {
			_ = c.Process.Kill()
			<-done
		}
	})
	return c.Process.Pid, wait
}

// TestSidecar builds the image FROM scratch and runs it as a privileged
// sidecar (host PID and cgroup namespaces, /sys/fs/cgroup read-write, no
// network, runc, explicit ulimits). Against host v1 memory cgroups created by
// the test (not by the sidecar):
//   - start-up: the host's hierarchy is seen (its own cgroup is
//     /libpod_parent/libpod-ID), no event=limited_view;
//   - normal OOM kills in a cgroup of several tasks (oom_score_adj 0): logged
//     as event=oom_kill for that cgroup; no incident, no action;
//   - a v1 oom_kill_disable=1 cgroup stalled at its limit, created after the
//     sidecar was ready: event=incident verdict=paused for it, no action
//     (report only), recorded in the state volume's incidents.jsonl;
//   - set up wrong (no /sys/fs/cgroup mount), it says so at start-up with
//     event=limited_view (a private cgroup namespace: TestSidecarPrivateCgroupns).
//
// The sidecar runs with --dry-run: it sees every cgroup of the host, also
// those of tests running at the same time, and must not touch them. Dry run
// still logs every incident and every rung it would run, so "no action" is
// checked all the same.
func TestSidecar(t *testing.T) {
	requireHost(t)
	id := fmt.Sprintf("%d-%d", os.Getpid(), time.Now().UnixNano()%1_000_000)
	work := t.TempDir()
	if chains := netavarkChains(); chains != "" {
		t.Logf("netavark iptables chains exist before the test (not ours):\n%s", chains)
	}
	hadChains := netavarkChains() != ""

	// ---- image
	image, _, hog := buildImage(t, id, work)

	// ---- a cgroup that exists before the sidecar starts
	base := "oomwatch-sidecar-" + id
	kill := newMemcg(t, base+"-kill", "32M", false)

	// ---- the sidecar
	name := "oomwatch-sidecar-test-" + id
	state := filepath.Join(work, "state")
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}
	args := []string{"run", "-d", "--name", name,
		"--privileged", "--pid=host", "--cgroupns=host", "--uts=host", "--network=none"}
	args = append(args, ulimits()...)
	args = append(args, "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "-v", state+":/var/lib/oomwatch",
		image, "run", "--metrics-listen", "", "--log-level", "debug", "--dry-run")
	t1 := time.Now()
	if b, err := podman(args...).CombinedOutput(); err != nil {
		t.Fatalf("podman %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	t.Cleanup(func() {
		if t.Failed() {
			_, raw := sidecarLog(name)
			t.Logf("sidecar log:\n%s", raw)
		}
		if b, err := podman("rm", "-f", "-v", "-t", "2", name).CombinedOutput(); err != nil {
			t.Errorf("podman rm %s: %v: %s", name, err, b)
		}
		// podman's cgroupfs manager leaves libpod_parent/conmon
		// in every hierarchy; remove them when no other container runs
		if ps, err := podman("ps", "-aq").Output(); err == nil && len(bytes.TrimSpace(ps)) == 0 {
			dirs, _ := filepath.Glob("/sys/fs/cgroup/*/libpod_parent")
			for _, d := range dirs {
				_ = os.Remove(filepath.Join(d, "conmon"))
				_ = os.Remove(d)
			}
		}
		if !hadChains {
			if c := netavarkChains(); c != "" {
				t.Errorf("--network=none still left netavark iptables chains:\n%s", c)
			}
		}
	})
	// arming thousands of cgroups (other tests' scale trees) takes seconds
	ready, ok := waitLog(t, name, 90*time.Second, func(l logLine) bool { return l.s("event") == "ready" })
	if !ok {
		t.Fatalf("no event=ready from the sidecar within 90s")
	}
	t.Logf("sidecar ready %v after podman run: %d cgroups, arm_time %.0f ms, %s",
		time.Since(t1).Round(time.Millisecond), int(ready.n("cgroups")), ready.n("arm_time"), ready.s("hierarchy"))

	t.Run("startup", func(t *testing.T) {
		all, _ := sidecarLog(name)
		var layout logLine
		for _, l := range all {
			if l.s("event") == "limited_view" {
				t.Errorf("start-up warns limited_view: %s", l.s("message"))
			}
			if l.s("message") == "cgroup layout" {
				layout = l
			}
		}
		if layout == nil {
			t.Fatal("no 'cgroup layout' line")
		}
		t.Logf("cgroup layout: hierarchy=%q host_cgroup_mode=%q own_cgroup=%q", layout.s("hierarchy"), layout.s("host_cgroup_mode"), layout.s("own_cgroup"))
		if !strings.Contains(layout.s("hierarchy"), "v1 memory hierarchy at /sys/fs/cgroup/memory") {
			t.Errorf("hierarchy %q: want the host's v1 memory hierarchy", layout.s("hierarchy"))
		}
		// --cgroupns=host: its own cgroup is an absolute host path, not "/" or "/.."
		if !strings.HasPrefix(layout.s("own_cgroup"), "/libpod_parent/libpod-") {
			t.Errorf("own_cgroup %q: want /libpod_parent/libpod-ID (host cgroup namespace)", layout.s("own_cgroup"))
		}
		if n := int(ready.n("cgroups")); n < 3 {
			t.Errorf("ready with %d cgroups: the host tree is not visible", n)
		}
	})

	t.Run("normal-oom-kills", func(t *testing.T) {
		// four tasks of 20 MiB in 32 MiB: the kernel kills (at adj 0) until
		// the rest fits; each OOM after the first sees the earlier kills
		start := time.Now()
		c := exec.Command(hog, "-mb", "20", "-children", "3", "-exit", "-cgroup-procs", filepath.Join(kill.dir, "cgroup.procs"))
		var hout bytes.Buffer
		c.Stdout, c.Stderr = &hout, &hout
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		_ = c.Wait()
		if !kill.waitEmpty(30 * time.Second) {
			t.Fatalf("tasks still in %s after 30s: %v", kill.dir, kill.procs())
		}
		kills := kill.oomControl()["oom_kill"]
		if kills == 0 {
			t.Fatalf("the kernel killed nothing in %s (oom_control %v); hog: %s", kill.dir, kill.oomControl(), hout.String())
		}
		l, ok := waitLog(t, name, 10*time.Second, func(l logLine) bool {
			return l.s("cgroup") == kill.rel && l.s("event") == "oom_kill" && l.n("oom_kills") >= 1
		})
		if !ok {
			t.Fatalf("no event=oom_kill for %s (host oom_kill=%d)", kill.rel, kills)
		}
		t.Logf("host: oom_kill=%d in %s; sidecar: %q oom_events=%.0f oom_kills=%.0f, %v after the workload started",
			kills, kill.rel, l.s("message"), l.n("oom_events"), l.n("oom_kills"), time.Since(start).Round(time.Millisecond))
		time.Sleep(1500 * time.Millisecond) // a window and a half: an incident would have opened by now
		all, _ := sidecarLog(name)
		for _, ev := range []string{"incident", "action", "ladder_done"} {
			if ls := forCgroup(all, kill.rel, ev); len(ls) > 0 {
				t.Errorf("normal OOM kills led to event=%s: %v", ev, ls)
			}
		}
	})

	t.Run("single-oom-kill", func(t *testing.T) {
		// One task, one OOM, one kill: the only eventfd wake-up comes before
		// the kernel bumps oom_kill.
		one := newMemcg(t, base+"-one", "32M", false)
		time.Sleep(500 * time.Millisecond) // the directory watch arms the new cgroup
		err := exec.Command(hog, "-mb", "64", "-exit", "-cgroup-procs", filepath.Join(one.dir, "cgroup.procs")).Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != -1 {
			t.Fatalf("hog: want killed by SIGKILL, got %v", err)
		}
		if k := one.oomControl()["oom_kill"]; k != 1 {
			t.Fatalf("oom_kill=%d, want 1", k)
		}
		_, ok := waitLog(t, name, 3*time.Second, func(l logLine) bool {
			return l.s("cgroup") == one.rel && l.s("event") == "oom_kill"
		})
		all, _ := sidecarLog(name)
		for _, ev := range []string{"incident", "action"} {
			if ls := forCgroup(all, one.rel, ev); len(ls) > 0 {
				t.Errorf("a single OOM kill led to event=%s: %v", ev, ls)
			}
		}
		if !ok {
			// The eventfd fires before the kernel counts the kill; the
			// watchdog re-reads v1 counters after settleV1 to see it.
			t.Errorf("the single OOM kill in %s was not logged as a kill (the v1 eventfd fires before the kernel counts the kill)", one.rel)
		}
	})

	t.Run("paused", func(t *testing.T) {
		// created after the sidecar was ready: found by the directory watch
		p := newMemcg(t, base+"-paused", "32M", true)
		time.Sleep(500 * time.Millisecond)
		start := time.Now()
		stallHog(t, hog, p)
		l, ok := waitLog(t, name, 20*time.Second, func(l logLine) bool {
			return l.s("event") == "incident" && l.s("cgroup") == p.rel
		})
		oc := p.oomControl()
		if !ok {
			t.Fatalf("no event=incident for %s within 20s (host oom_control %v)", p.rel, oc)
		}
		t.Logf("sidecar: event=incident verdict=%s cgroup=%s oom_events=%.0f tasks=%v, %v after the workload started; host oom_control %v",
			l.s("verdict"), l.s("cgroup"), l.n("oom_events"), l["tasks"], time.Since(start).Round(time.Millisecond), oc)
		if l.s("verdict") != "paused" {
			t.Errorf("verdict %q, want paused", l.s("verdict"))
		}
		if oc["under_oom"] != 1 || oc["oom_kill_disable"] != 1 {
			t.Errorf("host oom_control %v: want oom_kill_disable 1, under_oom 1", oc)
		}
		time.Sleep(time.Second)
		all, _ := sidecarLog(name)
		if ls := forCgroup(all, p.rel, "action"); len(ls) > 0 {
			t.Errorf("paused cgroup got actions (default paused action is report only): %v", ls)
		}
		if n := len(forCgroup(all, p.rel, "incident")); n != 1 {
			t.Errorf("%d incidents for %s, want exactly 1", n, p.rel)
		}
		// the state volume: the incident journal is written on the host's disk
		b, err := os.ReadFile(filepath.Join(state, "incidents.jsonl"))
		if err != nil || !bytes.Contains(b, []byte(p.rel)) {
			t.Errorf("state volume: incidents.jsonl does not name %s (%v)", p.rel, err)
		}
	})

	// negative control: a set-up without the host's cgroups is said at start-up
	for _, v := range []struct {
		name string
		args []string
		want string
	}{
		{"limited-view-no-mount", []string{"--cgroupns=host"}, "only the root cgroup is visible"},
	} {
		t.Run(v.name, func(t *testing.T) {
			n := name + "-" + v.name
			a := append([]string{"run", "-d", "--name", n, "--privileged", "--pid=host", "--network=none"}, ulimits()...)
			a = append(append(a, v.args...), image, "run", "--metrics-listen", "", "--status-socket", "", "--state-dir", "", "--dry-run")
			if b, err := podman(a...).CombinedOutput(); err != nil {
				t.Fatalf("podman %s: %v\n%s", strings.Join(a, " "), err, b)
			}
			defer podman("rm", "-f", "-t", "2", n).Run()
			l, ok := waitLog(t, n, 20*time.Second, func(l logLine) bool { return l.s("event") == "limited_view" })
			if !ok {
				_, raw := sidecarLog(n)
				t.Fatalf("no event=limited_view within 20s:\n%s", raw)
			}
			if !strings.Contains(l.s("message"), v.want) {
				t.Errorf("limited_view message %q, want %q", l.s("message"), v.want)
			}
			t.Logf("%s", l.s("message"))
		})
	}

	all, _ := sidecarLog(name)
	for _, l := range all {
		if strings.HasPrefix(l.s("cgroup"), "/"+base) && (l.s("verdict") == "loop" || l.s("event") == "action") {
			t.Errorf("loop or action for a test cgroup: %v", l)
		}
	}
}

// removeCgroupTree removes /sys/fs/cgroup/*/top and everything below it
// (podman creates the cgroup parent in every hierarchy), deepest first. The
// runtime may still be tearing the container's cgroups down: retried.
func removeCgroupTree(t *testing.T, top string) {
	t.Helper()
	roots, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", top))
	if d := filepath.Join("/sys/fs/cgroup", top); fileExists(filepath.Join(d, "cgroup.procs")) {
		roots = append(roots, d) // cgroup2 mounted at /sys/fs/cgroup itself
	}
	for _, root := range roots {
		var err error
		for i := 0; i < 50; i++ {
			var dirs []string
			_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
				if err == nil && d.IsDir() {
					dirs = append(dirs, p)
				}
				return nil
			})
			err = nil
			for j := len(dirs) - 1; j >= 0; j-- {
				if e := os.Remove(dirs[j]); e != nil && !errors.Is(e, os.ErrNotExist) {
					err = e
				}
			}
			if err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			t.Errorf("cgroup tree %s left behind: %v", root, err)
		}
	}
}

// hostCgroup is the v1 memory cgroup of pid as the host names it.
func hostCgroup(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.SplitN(l, ":", 3); len(f) == 3 && strings.Contains(","+f[1]+",", ",memory,") {
			return f[2]
		}
	}
	t.Fatalf("no memory line in /proc/%d/cgroup:\n%s", pid, b)
	return ""
}

// TestSidecarPrivateCgroupns runs the image in a private cgroup namespace
// (podman --cgroupns=private; what containerd and CRI-O give every container
// on cgroup v2 nodes, privileged ones too) under a cgroup parent of the
// test's own, so that the cgroup it acts on shares an ancestor with its own,
// as pods under kubepods do. There the kernel renders /proc/PID/cgroup
// relative to the sidecar's cgroup: its own reads "/", a sibling's "/../x".
//   - privileged, in the host's PID namespace (the DaemonSet's set-up): it
//     joins the host's cgroup namespace at start (event=cgroupns_joined),
//     names its own cgroup as the host does and does not watch it (an OOM
//     kill in it is not reported, one in a sibling is), and acts on the right
//     task: a v1 oom_kill_disable=1 sibling stalled at its limit, with a rule
//     making oomwatch its OOM handler (paused: kill), gets its task SIGKILLed
//     through the pidfd after the membership check; the kernel killed none;
//   - without privileges it cannot join: it refuses to start, exit 78, saying
//     why and what to do.
//
// Every other cgroup of the host is left alone: the config file is dry-run
// except for the one rule matching the test's cgroup.
func TestSidecarPrivateCgroupns(t *testing.T) {
	requireHost(t)
	id := fmt.Sprintf("%d-%d", os.Getpid(), time.Now().UnixNano()%1_000_000)
	work := t.TempDir()
	image, _, hog := buildImage(t, id, work)
	parent := "oomwatch-sidecar-" + id + "-ns"
	// registered first, so it runs after the containers are removed
	t.Cleanup(func() { removeCgroupTree(t, parent) })

	etc := filepath.Join(work, "etc")
	if err := os.Mkdir(etc, 0o755); err != nil {
		t.Fatal(err)
	}
	paused := "/" + parent + "/paused"
	conf := fmt.Sprintf("dry_run: true\nrules:\n  - name: sidecar-test\n    match: {cgroup: %q}\n    dry_run: false\n    paused: {action: kill}\n", paused)
	if err := os.WriteFile(filepath.Join(etc, "oomwatch.yaml"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}

	start := func(t *testing.T, name string, extra ...string) {
		t.Helper()
		a := append([]string{"run", "-d", "--name", name, "--pid=host", "--cgroupns=private", "--cgroup-parent=/" + parent,
			"--uts=host", "--network=none"}, ulimits()...)
		a = append(append(a, extra...), "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "-v", etc+":/etc/oomwatch:ro",
			image, "run", "--metrics-listen", "", "--status-socket", "", "--state-dir", "", "--log-level", "debug")
		if b, err := podman(a...).CombinedOutput(); err != nil {
			t.Fatalf("podman %s: %v\n%s", strings.Join(a, " "), err, b)
		}
		t.Cleanup(func() {
			if t.Failed() {
				_, raw := sidecarLog(name)
				t.Logf("%s log:\n%s", name, raw)
			}
			if b, err := podman("rm", "-f", "-t", "2", name).CombinedOutput(); err != nil {
				t.Errorf("podman rm %s: %v: %s", name, err, b)
			}
		})
	}

	t.Run("privileged-joins-host-namespace", func(t *testing.T) {
		name := "oomwatch-sidecar-ns-" + id
		start(t, name, "--privileged")
		if _, ok := waitLog(t, name, 90*time.Second, func(l logLine) bool { return l.s("event") == "ready" }); !ok {
			t.Fatalf("no event=ready from the sidecar within 90s")
		}
		all, _ := sidecarLog(name)
		var joined, layout logLine
		for _, l := range all {
			switch {
			case l.s("event") == "cgroupns_joined":
				joined = l
			case l.s("message") == "cgroup layout":
				layout = l
			case l.s("event") == "limited_view":
				t.Errorf("start-up warns limited_view: %s", l.s("message"))
			}
		}
		if joined == nil {
			t.Error("no event=cgroupns_joined: oomwatch did not join the host's cgroup namespace")
		} else {
			t.Logf("joined: %s → %s", joined.s("from"), joined.s("to"))
		}
		pidOut, err := podman("inspect", "--format", "{{.State.Pid}}", name).Output()
		if err != nil {
			t.Fatal(err)
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(string(pidOut)))
		own := hostCgroup(t, pid)
		if !strings.HasPrefix(own, "/"+parent+"/libpod-") {
			t.Fatalf("the sidecar's cgroup on the host is %q, want /%s/libpod-ID", own, parent)
		}
		if layout == nil {
			t.Fatal("no 'cgroup layout' line")
		}
		if layout.s("own_cgroup") != own {
			t.Errorf("own_cgroup %q, want %q: the host's name of its cgroup", layout.s("own_cgroup"), own)
		}

		const ignoring = "not watching oomwatch's own cgroup"
		if ls := forCgroup(all, own, ""); len(ls) != 1 || ls[0].s("message") != ignoring {
			t.Errorf("log lines for its own cgroup %s: %v, want one %q", own, ls, ignoring)
		}

		// An OOM kill in its own subtree is not reported (not watched); one
		// in a sibling of its cgroup is.
		mine := newMemcg(t, strings.TrimPrefix(own, "/")+"/sub", "32M", false)
		sib := newMemcg(t, parent+"/kill", "32M", false)
		time.Sleep(500 * time.Millisecond) // the directory watch arms the new cgroups
		for _, c := range []memcg{mine, sib} {
			err := exec.Command(hog, "-mb", "64", "-exit", "-cgroup-procs", filepath.Join(c.dir, "cgroup.procs")).Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != -1 {
				t.Fatalf("hog in %s: want killed by the kernel (SIGKILL), got %v", c.rel, err)
			}
		}
		if _, ok := waitLog(t, name, 10*time.Second, func(l logLine) bool {
			return l.s("cgroup") == sib.rel && l.s("event") == "oom_kill"
		}); !ok {
			t.Errorf("the OOM kill in the sibling %s was not seen", sib.rel)
		}
		all, _ = sidecarLog(name)
		if ls := forCgroup(all, mine.rel, ""); len(ls) > 0 {
			t.Errorf("oomwatch watches its own subtree (%s): %v", mine.rel, ls)
		}

		// The paused sibling: oomwatch is its OOM handler and kills its task.
		p := newMemcg(t, parent+"/paused", "32M", true)
		time.Sleep(500 * time.Millisecond)
		pid, wait := stallHog(t, hog, p)
		act, ok := waitLog(t, name, 20*time.Second, func(l logLine) bool { return l.s("event") == "action" && l.s("cgroup") == p.rel })
		if !ok {
			t.Fatalf("no event=action for %s within 20s (host oom_control %v)", p.rel, p.oomControl())
		}
		t.Logf("action %s pid=%.0f done=%v verified=%v detail=%q error=%q", act.s("action"), act.n("pid"), act["done"], act["verified"], act.s("detail"), act.s("error"))
		if act.s("action") != "kill" || act["done"] != true || act.s("error") != "" || int(act.n("pid")) != pid {
			t.Errorf("action %v: want a kill of the hog (pid %d) done without error", act, pid)
		}
		if err, ok := wait(10 * time.Second); !ok {
			t.Errorf("the hog in %s still runs 10s after the action", p.rel)
		} else if ee := (*exec.ExitError)(nil); !errors.As(err, &ee) || ee.ExitCode() != -1 {
			t.Errorf("hog: want killed by SIGKILL, got %v", err)
		}
		if k := p.oomControl()["oom_kill"]; k != 0 {
			t.Errorf("oom_kill=%d in %s: the kernel killed, with oom_kill_disable=1 only oomwatch may", k, p.rel)
		}
	})

	t.Run("unprivileged-refuses", func(t *testing.T) {
		name := "oomwatch-sidecar-ns-unpriv-" + id
		start(t, name)
		end := time.Now().Add(30 * time.Second)
		var state string
		for time.Now().Before(end) {
			b, _ := podman("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", name).Output()
			if state = strings.TrimSpace(string(b)); strings.HasPrefix(state, "exited") {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		_, raw := sidecarLog(name)
		if state != "exited 78" {
			t.Fatalf("container state %q, want exited 78; log:\n%s", state, raw)
		}
		for _, want := range []string{"oomwatch run: oomwatch runs in a private cgroup namespace", "--cgroupns=host", "hostPID: true"} {
			if !strings.Contains(raw, want) {
				t.Errorf("the error does not say %q:\n%s", want, raw)
			}
		}
		if strings.Contains(raw, `"event":"ready"`) {
			t.Errorf("it armed its watches before refusing:\n%s", raw)
		}
		t.Logf("%s", strings.TrimSpace(raw))
	})
}
