package eventfd_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/oomwatch/oomwatch/eventfd"
	"github.com/oomwatch/oomwatch/test/testhost"
	"github.com/oomwatch/oomwatch/test/testtier"
)

// Host-kernel tier: real cgroupfs, real OOM. Needs root and a v1 memory
// hierarchy (or a cgroup2 mount for the v2 test).

// cgroupMount finds a mount point in /proc/self/mountinfo: fstype "cgroup"
// with superOpt among its super options, or fstype "cgroup2" when superOpt
// is "".
func cgroupMount(t *testing.T, fstype, superOpt string) string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		pf, qf := strings.Fields(pre), strings.Fields(post)
		if len(pf) < 5 || len(qf) < 3 || qf[0] != fstype {
			continue
		}
		if superOpt != "" && !containsField(qf[2], superOpt) {
			continue
		}
		return unescapeMountinfo(pf[4])
	}
	return ""
}

func containsField(csv, want string) bool {
	for _, f := range strings.Split(csv, ",") {
		if f == want {
			return true
		}
	}
	return false
}

// unescapeMountinfo undoes the kernel's octal escapes (\040 for space, ...).
func unescapeMountinfo(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		testtier.Require(t, testtier.Host, "needs root to create cgroups")
	}
}

// v1Memory returns the v1 memory hierarchy's mount point or skips.
func v1Memory(t *testing.T) string {
	t.Helper()
	requireRoot(t)
	mnt := cgroupMount(t, "cgroup", "memory")
	if mnt == "" {
		testtier.Require(t, testtier.Host, "no cgroup v1 memory hierarchy in /proc/self/mountinfo")
	}
	if _, err := os.Stat(filepath.Join(mnt, "memory.oom_control")); err != nil {
		testtier.Require(t, testtier.Host, "v1 memory hierarchy without memory.oom_control (CONFIG_MEMCG_V1=n?): "+err.Error())
	}
	return mnt
}

// mkTestCgroup creates a uniquely named cgroup under parent and removes it at
// cleanup (after anything registered later, such as killing a hog).
func mkTestCgroup(t *testing.T, parent string) string {
	t.Helper()
	dir := filepath.Join(parent, fmt.Sprintf("oomwatch-test-eventfd-%d-%08x", os.Getpid(), rand.Uint32()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatalf("create test cgroup: %v", err)
	}
	t.Cleanup(func() { rmdirCgroup(t, dir) })
	return dir
}

// rmdirCgroup removes a cgroup, retrying briefly: a just-killed task can keep
// it busy for a moment. A missing cgroup is fine.
func rmdirCgroup(t *testing.T, dir string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := unix.Rmdir(dir)
		if err == nil || errors.Is(err, unix.ENOENT) {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("rmdir %s: %v", dir, err)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func writeFile(t *testing.T, path, val string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(val), 0); err != nil {
		t.Fatalf("write %q to %s: %v", val, path, err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func hasLine(s, line string) bool {
	for _, l := range strings.Split(s, "\n") {
		if l == line {
			return true
		}
	}
	return false
}

func TestV1OOMEventThenGone(t *testing.T) {
	mem := v1Memory(t)
	p := newPoller(t)
	cg := mkTestCgroup(t, mem)
	const key = "v1:test"

	// Only the eventfd under this key, so Gone below can only come from
	// the rmdir wake-up of the eventfd.
	if err := p.WatchV1OOM(key, filepath.Join(cg, "cgroup.event_control"), filepath.Join(cg, "memory.oom_control")); err != nil {
		t.Fatalf("WatchV1OOM: %v", err)
	}
	wantStats(t, p, 0, 1)
	for _, ev := range collect(t, p, 100*time.Millisecond) {
		t.Errorf("event before any OOM: %+v", ev)
	}

	// No swap on the test host is assumed: with swap, memsw would also need
	// a limit (raise memsw before limit; here we only lower from unlimited,
	// so limit first is fine).
	writeFile(t, filepath.Join(cg, "memory.limit_in_bytes"), strconv.Itoa(32<<20))
	if _, err := os.Stat(filepath.Join(cg, "memory.memsw.limit_in_bytes")); err == nil {
		writeFile(t, filepath.Join(cg, "memory.memsw.limit_in_bytes"), strconv.Itoa(32<<20))
	}
	writeFile(t, filepath.Join(cg, "memory.oom_control"), "1")

	hog := exec.Command(testhost.BuildHog(t), "-wait-stdin", "-mb", "128")
	var hogOut bytes.Buffer
	hog.Stdout, hog.Stderr = &hogOut, &hogOut
	start, err := hog.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := hog.Start(); err != nil {
		t.Fatal(err)
	}
	exited := false
	t.Cleanup(func() {
		if !exited {
			_ = hog.Process.Kill()
			_ = hog.Wait()
		}
	})
	// v1 has no clone-into-cgroup: move it before it allocates, then let it go.
	writeFile(t, filepath.Join(cg, "cgroup.procs"), strconv.Itoa(hog.Process.Pid))
	if _, err := start.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}

	evs := waitFor(t, p, 10*time.Second, "OOM event", func(ev eventfd.Event) bool { return ev.Key == key && ev.Kind == eventfd.OOM })
	oom := evs[len(evs)-1]
	for _, ev := range evs {
		if ev.Key == key && ev.Kind == eventfd.OOM {
			oom = ev
			break
		}
	}
	if oom.Count < 1 {
		t.Errorf("OOM event with Count %d", oom.Count)
	}
	t.Logf("first OOM event: %+v", oom)
	oc := readFile(t, filepath.Join(cg, "memory.oom_control"))
	if !hasLine(oc, "under_oom 1") || !hasLine(oc, "oom_kill_disable 1") {
		t.Errorf("memory.oom_control after OOM event:\n%s", oc)
	}

	if err := hog.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = hog.Wait()
	exited = true
	// Drain OOMs that raced with the kill, then remove the cgroup.
	collect(t, p, 50*time.Millisecond)

	rmdirCgroup(t, cg)
	evs = waitFor(t, p, 10*time.Second, "Gone after rmdir", is(key, eventfd.Gone, ""))
	evs = append(evs, collect(t, p, 200*time.Millisecond)...)
	if n := countKind(evs, key, eventfd.Gone); n != 1 {
		t.Errorf("%d Gone events, want 1: %+v", n, evs)
	}
	if n := countKind(evs, key, eventfd.OOM); n != 0 {
		t.Errorf("rmdir was reported as OOM: %+v", evs)
	}
	wantStats(t, p, 0, 0)
}

func TestV1WatchDirChildCgroup(t *testing.T) {
	mem := v1Memory(t)
	p := newPoller(t)
	parent := mkTestCgroup(t, mem)
	if err := p.WatchDir("parent", parent); err != nil {
		t.Fatal(err)
	}
	child := filepath.Join(parent, "child")
	if err := os.Mkdir(child, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rmdirCgroup(t, child) })
	waitFor(t, p, eventDeadline, "Created child cgroup", is("parent", eventfd.Created, "child"))

	// A v1 cgroup directory gets both a dir watch and an eventfd under one
	// key; its removal must be reported as exactly one Gone.
	if err := p.WatchDir("child", child); err != nil {
		t.Fatal(err)
	}
	if err := p.WatchV1OOM("child", filepath.Join(child, "cgroup.event_control"), filepath.Join(child, "memory.oom_control")); err != nil {
		t.Fatal(err)
	}
	// A second child with only a dir watch: kernfs sends it no
	// IN_DELETE_SELF, so its removal is only the parent's Removed, after
	// which the caller unwatches it.
	child2 := filepath.Join(parent, "child2")
	if err := os.Mkdir(child2, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rmdirCgroup(t, child2) })
	if err := p.WatchDir("child2", child2); err != nil {
		t.Fatal(err)
	}
	wantStats(t, p, 3, 1)
	collect(t, p, 100*time.Millisecond) // Created child2, Modified cgroup.event_control (our own write)
	rmdirCgroup(t, child)
	rmdirCgroup(t, child2)
	evs := waitFor(t, p, eventDeadline, "Gone child", is("child", eventfd.Gone, ""))
	if !slices.ContainsFunc(evs, is("parent", eventfd.Removed, "child2")) {
		evs = append(evs, waitFor(t, p, eventDeadline, "Removed child2", is("parent", eventfd.Removed, "child2"))...)
	}
	evs = append(evs, collect(t, p, 300*time.Millisecond)...)
	if n := countKind(evs, "child", eventfd.Gone); n != 1 {
		t.Errorf("%d Gone events for child (its eventfd), want 1: %+v", n, evs)
	}
	if n := countKind(evs, "child2", eventfd.Gone); n != 0 {
		t.Errorf("%d Gone events for child2, want 0 (kernfs: no IN_DELETE_SELF): %+v", n, evs)
	}
	if countKind(evs, "parent", eventfd.Removed) != 2 {
		t.Errorf("want Removed for both children from the parent: %+v", evs)
	}
	for _, ev := range evs {
		if ev.Kind == eventfd.OOM {
			t.Errorf("rmdir reported as OOM: %+v", ev)
		}
	}
	t.Logf("events on rmdir: %+v", evs)
	wantStats(t, p, 2, 0) // child2's watch stays until its key is unwatched
	p.Unwatch("child2")
	wantStats(t, p, 1, 0)
}

func TestV2CgroupEventsModified(t *testing.T) {
	requireRoot(t)
	mnt := cgroupMount(t, "cgroup2", "")
	if mnt == "" {
		testtier.Require(t, testtier.Host, "no cgroup2 mount in /proc/self/mountinfo")
	}
	p := newPoller(t)
	parent := mkTestCgroup(t, mnt)
	cg := filepath.Join(parent, "child")
	if err := os.Mkdir(cg, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rmdirCgroup(t, cg) })
	const key = "v2:child"
	if err := p.WatchDir("v2:parent", parent); err != nil {
		t.Fatal(err)
	}
	if err := p.WatchDir(key, cg); err != nil {
		t.Fatal(err)
	}
	// Nobody has looked up cgroup.events in this fresh cgroup: without the
	// pin kernfs_notify_workfn finds no inode and notifies nobody.
	if err := p.PinFile(key, filepath.Join(cg, "cgroup.events")); err != nil {
		t.Fatal(err)
	}
	wantStats(t, p, 3, 0)
	// A cgroup2 directory has no v1 event interface.
	err := p.WatchV1OOM(key, filepath.Join(cg, "cgroup.event_control"), filepath.Join(cg, "memory.oom_control"))
	if !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("WatchV1OOM on cgroup2 = %v, want ErrUnsupported", err)
	}

	sleep := exec.Command("sleep", "0.2")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	exited := false
	t.Cleanup(func() {
		if !exited {
			_ = sleep.Process.Kill()
			_ = sleep.Wait()
		}
	})
	writeFile(t, filepath.Join(cg, "cgroup.procs"), strconv.Itoa(sleep.Process.Pid))

	// populated 0 → 1: cgroup_file_notify(cgroup.events) → kernfs_notify →
	// FS_MODIFY|FS_EVENT_ON_CHILD on the directory watch.
	evs := waitFor(t, p, eventDeadline, "Modified cgroup.events (populated)", is(key, eventfd.Modified, "cgroup.events"))
	t.Logf("after moving sleep in: %+v", evs)

	_ = sleep.Wait()
	exited = true
	// populated 1 → 0 is a second notification.
	evs = waitFor(t, p, eventDeadline, "Modified cgroup.events (unpopulated)", is(key, eventfd.Modified, "cgroup.events"))
	if ce := readFile(t, filepath.Join(cg, "cgroup.events")); !hasLine(ce, "populated 0") {
		t.Errorf("cgroup.events after exit: %q", ce)
	}
	t.Logf("after sleep exited: %+v", evs)
	if n := countKind(evs, key, eventfd.Modified); n > 1 {
		t.Errorf("one notification reported %d times (pin must not duplicate): %+v", n, evs)
	}

	// kernfs sends no IN_DELETE_SELF: the removal is the parent's Removed.
	rmdirCgroup(t, cg)
	evs = waitFor(t, p, eventDeadline, "Removed after rmdir", is("v2:parent", eventfd.Removed, "child"))
	evs = append(evs, collect(t, p, 200*time.Millisecond)...)
	if countKind(evs, "v2:parent", eventfd.Removed) != 1 || countKind(evs, key, eventfd.Gone) != 0 {
		t.Errorf("rmdir: want one Removed for the parent and nothing for the child: %+v", evs)
	}
	p.Unwatch(key)
	wantStats(t, p, 1, 0)
}

// TestV2PollFileWakesAtTheNotification: a polled cgroup2 file reports each
// kernfs notification by itself — no directory watch, no pin, no read of
// the fd — and with a directory watch as well the change is still
// reported once, not again when the workqueue's inotify event follows.
func TestV2PollFileWakesAtTheNotification(t *testing.T) {
	requireRoot(t)
	mnt := cgroupMount(t, "cgroup2", "")
	if mnt == "" {
		testtier.Require(t, testtier.Host, "no cgroup2 mount in /proc/self/mountinfo")
	}
	p := newPoller(t)
	cg := mkTestCgroup(t, mnt)
	events := filepath.Join(cg, "cgroup.events")
	const key = "v2:polled"
	if err := p.PollFile(key, events); err != nil {
		t.Fatal(err)
	}
	if err := p.PollFile(key, events); err != nil {
		t.Errorf("polling the same file again: %v, want a no-op", err)
	}
	if err := p.PollFile(key, filepath.Join(cg, "cgroup.procs")); err == nil {
		t.Error("a second file polled under the same key")
	}
	if n := p.Polled(); n != 1 {
		t.Errorf("Polled() = %d, want 1", n)
	}
	wantStats(t, p, 0, 0)
	// A fresh fd has read nothing: at most one report right away.
	if evs := collect(t, p, 100*time.Millisecond); countKind(evs, key, eventfd.Modified) > 1 {
		t.Errorf("fresh polled file reported %d times: %+v", countKind(evs, key, eventfd.Modified), evs)
	}

	// Each of populated 0 → 1 and 1 → 0 is its own notification, and each
	// must wake the (edge-triggered, never read) fd again.
	populate := func(what string) {
		t.Helper()
		sleep := exec.Command("sleep", "0.3")
		if err := sleep.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sleep.Process.Kill(); _ = sleep.Wait() })
		writeFile(t, filepath.Join(cg, "cgroup.procs"), strconv.Itoa(sleep.Process.Pid))
		evs := waitFor(t, p, eventDeadline, what+": populated", is(key, eventfd.Modified, "cgroup.events"))
		_ = sleep.Wait()
		evs = append(evs, waitFor(t, p, eventDeadline, what+": unpopulated", is(key, eventfd.Modified, "cgroup.events"))...)
		// The workqueue's inotify events, if a directory watch has them,
		// arrive within this.
		evs = append(evs, collect(t, p, 300*time.Millisecond)...)
		n := 0
		for _, ev := range evs {
			if is(key, eventfd.Modified, "cgroup.events")(ev) {
				n++
			}
		}
		if n != 2 {
			t.Errorf("%s: two notifications reported %d times: %+v", what, n, evs)
		}
	}
	populate("polled only")
	if err := p.WatchDir(key, cg); err != nil {
		t.Fatal(err)
	}
	if err := p.PinFile(key, events); err != nil {
		t.Fatal(err)
	}
	populate("polled and watched")

	p.Unwatch(key)
	if n := p.Polled(); n != 0 {
		t.Errorf("Polled() after Unwatch = %d, want 0", n)
	}
	wantStats(t, p, 0, 0)
}

// TestPollFileOnARegularFileIsUnsupported: outside kernfs (a test's fake
// hierarchy on tmpfs) a file has no poll of its own; the caller falls back
// to the directory watch.
func TestPollFileOnARegularFileIsUnsupported(t *testing.T) {
	p := newPoller(t)
	f := filepath.Join(t.TempDir(), "memory.events")
	writeFile(t, f, "oom 0\n")
	if err := p.PollFile("k", f); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("PollFile on tmpfs = %v, want ErrUnsupported", err)
	}
	if err := p.PollFile("k", f+".missing"); !errors.Is(err, eventfd.ErrGone) {
		t.Errorf("PollFile on a missing file = %v, want ErrGone", err)
	}
	if n := p.Polled(); n != 0 {
		t.Errorf("Polled() = %d, want 0", n)
	}
}
