package eventfd_test

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/oomwatch/oomwatch/eventfd"
	"github.com/oomwatch/oomwatch/test/fixture"
)

// Generous bound for events that must arrive; only reached on failure.
const eventDeadline = 5 * time.Second

func TestWatchDirCreatedRemoved(t *testing.T) {
	p := newPoller(t)
	dir := t.TempDir()
	if err := p.WatchDir("k", dir); err != nil {
		t.Fatal(err)
	}
	wantStats(t, p, 1, 0)
	child := filepath.Join(dir, "child")
	if err := os.Mkdir(child, 0o755); err != nil {
		t.Fatal(err)
	}
	waitFor(t, p, eventDeadline, "Created child", is("k", eventfd.Created, "child"))
	if err := os.Remove(child); err != nil {
		t.Fatal(err)
	}
	waitFor(t, p, eventDeadline, "Removed child", is("k", eventfd.Removed, "child"))

	// Files are not children in that sense: creating and removing one
	// yields no Created/Removed.
	f := filepath.Join(dir, "file")
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(f); err != nil {
		t.Fatal(err)
	}
	for _, ev := range collect(t, p, 200*time.Millisecond) {
		t.Errorf("unexpected event for an empty file created and removed: %+v", ev)
	}
}

func TestWatchDirRenameInOut(t *testing.T) {
	p := newPoller(t)
	outside, dir := t.TempDir(), t.TempDir()
	if err := p.WatchDir("k", dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(outside, "mv"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(outside, "mv"), filepath.Join(dir, "mv")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, p, eventDeadline, "Created mv (moved in)", is("k", eventfd.Created, "mv"))
	if err := os.Rename(filepath.Join(dir, "mv"), filepath.Join(outside, "mv")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, p, eventDeadline, "Removed mv (moved out)", is("k", eventfd.Removed, "mv"))
}

func TestWatchDirModified(t *testing.T) {
	p := newPoller(t)
	dir := t.TempDir()
	if err := p.WatchDir("k", dir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "memory.events"), []byte("oom 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	evs := waitFor(t, p, eventDeadline, "Modified memory.events", is("k", eventfd.Modified, "memory.events"))
	for _, ev := range evs {
		if ev.Kind != eventfd.Modified || ev.Key != "k" || ev.Name != "memory.events" || ev.Count != 0 {
			t.Errorf("unexpected event: %+v", ev)
		}
	}
	// A write inside a grandchild directory is not reported (inotify is not
	// recursive), nor is mkdir's modification of the child reported as
	// Modified.
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	waitFor(t, p, eventDeadline, "Created sub", is("k", eventfd.Created, "sub"))
	if err := os.WriteFile(filepath.Join(sub, "x"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, ev := range collect(t, p, 200*time.Millisecond) {
		t.Errorf("unexpected event for a write in a grandchild: %+v", ev)
	}
}

func TestWatchDirGone(t *testing.T) {
	p := newPoller(t)
	dir := filepath.Join(t.TempDir(), "watched")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := p.WatchDir("k", dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	evs := waitFor(t, p, eventDeadline, "Gone k", is("k", eventfd.Gone, ""))
	evs = append(evs, collect(t, p, 200*time.Millisecond)...)
	if n := countKind(evs, "k", eventfd.Gone); n != 1 {
		t.Errorf("got %d Gone events, want exactly 1: %+v", n, evs)
	}
	wantStats(t, p, 0, 0)
	p.Unwatch("k") // already dropped: no-op
}

func TestGoneOnceChildRemovedParentToo(t *testing.T) {
	// On tmpfs/ext4 a removed child dir gets its own IN_DELETE_SELF (one
	// Gone for the child) and the parent its IN_DELETE (Removed).
	p := newPoller(t)
	parent := t.TempDir()
	child := filepath.Join(parent, "c")
	if err := os.Mkdir(child, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := p.WatchDir("parent", parent); err != nil {
		t.Fatal(err)
	}
	if err := p.WatchDir("child", child+"/"); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(child); err != nil {
		t.Fatal(err)
	}
	evs := waitFor(t, p, eventDeadline, "Gone child", is("child", eventfd.Gone, ""))
	evs = append(evs, collect(t, p, 200*time.Millisecond)...)
	if countKind(evs, "child", eventfd.Gone) != 1 || countKind(evs, "parent", eventfd.Removed) != 1 || len(evs) != 2 {
		t.Errorf("want exactly one Gone child and one Removed c: %+v", evs)
	}
	wantStats(t, p, 1, 0)
}

func TestPinFile(t *testing.T) {
	p := newPoller(t)
	dir := t.TempDir()
	f := filepath.Join(dir, "cgroup.events")
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := p.WatchDir("k", dir); err != nil {
		t.Fatal(err)
	}
	if err := p.PinFile("k", f); err != nil {
		t.Fatal(err)
	}
	if err := p.PinFile("k", filepath.Join(dir, "missing")); !errors.Is(err, eventfd.ErrGone) {
		t.Errorf("PinFile(missing) = %v, want ErrGone", err)
	}
	// One pin per key.
	f2 := filepath.Join(dir, "memory.events")
	if err := os.WriteFile(f2, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := p.PinFile("k", f2); err == nil || !strings.Contains(err.Error(), "already pins a file") {
		t.Errorf("a second pin under one key = %v, want an error", err)
	}
	if err := os.Remove(f2); err != nil {
		t.Fatal(err)
	}
	wantStats(t, p, 2, 0)
	if err := os.WriteFile(f, []byte("populated 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	evs := waitFor(t, p, eventDeadline, "Modified cgroup.events", is("k", eventfd.Modified, "cgroup.events"))
	evs = append(evs, collect(t, p, 200*time.Millisecond)...)
	for _, ev := range evs {
		if ev != (eventfd.Event{Key: "k", Kind: eventfd.Modified, Name: "cgroup.events"}) {
			t.Errorf("unexpected event (the pin must report nothing itself): %+v", ev)
		}
	}
	// Deleting a pinned file drops the pin only; the key stays watched.
	if err := os.Remove(f); err != nil {
		t.Fatal(err)
	}
	for _, ev := range collect(t, p, 200*time.Millisecond) {
		t.Errorf("event after removing a pinned file: %+v", ev)
	}
	wantStats(t, p, 1, 0)
	if err := os.Mkdir(filepath.Join(dir, "c"), 0o755); err != nil {
		t.Fatal(err)
	}
	waitFor(t, p, eventDeadline, "Created c", is("k", eventfd.Created, "c"))
	// Pinning the watched directory itself must not downgrade its watch.
	if err := p.PinFile("k", dir); err == nil {
		t.Error("PinFile on a watched directory succeeded")
	}
	if err := os.Mkdir(filepath.Join(dir, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	waitFor(t, p, eventDeadline, "Created d", is("k", eventfd.Created, "d"))
	p.Unwatch("k")
	wantStats(t, p, 0, 0)
}

func TestUnwatchSilencesOnlyThatKey(t *testing.T) {
	p := newPoller(t)
	a, b := t.TempDir(), t.TempDir()
	if err := p.WatchDir("a", a); err != nil {
		t.Fatal(err)
	}
	if err := p.WatchDir("b", b); err != nil {
		t.Fatal(err)
	}
	wantStats(t, p, 2, 0)
	p.Unwatch("a")
	p.Unwatch("no-such-key")
	wantStats(t, p, 1, 0)
	if err := os.Mkdir(filepath.Join(a, "child"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(a, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(a); err != nil {
		t.Fatal(err)
	}
	// b still works, and nothing about a arrives before or after it.
	if err := os.Mkdir(filepath.Join(b, "child"), 0o755); err != nil {
		t.Fatal(err)
	}
	evs := waitFor(t, p, eventDeadline, "Created in b", is("b", eventfd.Created, "child"))
	evs = append(evs, collect(t, p, 200*time.Millisecond)...)
	for _, ev := range evs {
		if ev.Key != "b" {
			t.Errorf("event for unwatched key: %+v", ev)
		}
	}
}

func TestEventsAfterUnwatchAreDropped(t *testing.T) {
	// Events queued in the kernel before Unwatch must not surface after it.
	p := newPoller(t)
	dir := t.TempDir()
	if err := p.WatchDir("k", dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "queued"), 0o755); err != nil {
		t.Fatal(err)
	}
	p.Unwatch("k")
	for _, ev := range collect(t, p, 200*time.Millisecond) {
		t.Errorf("event after Unwatch: %+v", ev)
	}
}

func TestWatchDirErrors(t *testing.T) {
	p := newPoller(t)
	dir := t.TempDir()

	err := p.WatchDir("k", filepath.Join(dir, "missing"))
	if !errors.Is(err, eventfd.ErrGone) || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("WatchDir(missing) = %v, want ErrGone and fs.ErrNotExist", err)
	}
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := p.WatchDir("k", file); !errors.Is(err, unix.ENOTDIR) {
		t.Errorf("WatchDir(file) = %v, want ENOTDIR (IN_ONLYDIR)", err)
	}
	if err := p.WatchDir("k", dir); err != nil {
		t.Fatal(err)
	}
	if err := p.WatchDir("k", dir); err != nil {
		t.Errorf("second WatchDir under the same key = %v, want nil", err)
	}
	if err := p.WatchDir("other", dir); err == nil {
		t.Error("WatchDir of a watched dir under another key succeeded; want an error")
	}
	// One directory per key: a second one is refused and not left watched.
	if err := p.WatchDir("k", t.TempDir()); err == nil || !strings.Contains(err.Error(), "already watches a directory") {
		t.Errorf("a second directory under one key = %v, want an error", err)
	}
	wantStats(t, p, 1, 0)
	// The watch still belongs to "k".
	if err := os.Mkdir(filepath.Join(dir, "c"), 0o755); err != nil {
		t.Fatal(err)
	}
	waitFor(t, p, eventDeadline, "Created c under k", is("k", eventfd.Created, "c"))
}

func TestWatchV1OOMErrors(t *testing.T) {
	p := newPoller(t)
	dir := t.TempDir()

	missing := filepath.Join(dir, "missing")
	err := p.WatchV1OOM("k", filepath.Join(missing, "cgroup.event_control"), filepath.Join(missing, "memory.oom_control"))
	if !errors.Is(err, eventfd.ErrGone) || !errors.Is(err, fs.ErrNotExist) || errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("missing cgroup: err = %v, want ErrGone (and fs.ErrNotExist), not ErrUnsupported", err)
	}
	if !strings.HasPrefix(fmt.Sprint(err), "register oom eventfd on ") {
		t.Errorf("error %q lacks the 'register oom eventfd on' prefix", err)
	}

	// Directory exists but has no memory.oom_control (cgroup2, MEMCG_V1=n).
	err = p.WatchV1OOM("k", filepath.Join(dir, "cgroup.event_control"), filepath.Join(dir, "memory.oom_control"))
	if !errors.Is(err, errors.ErrUnsupported) || errors.Is(err, eventfd.ErrGone) {
		t.Errorf("no oom_control: err = %v, want ErrUnsupported only", err)
	}

	// Regular files with the right names: writing to them would register
	// nothing, so they must be refused.
	for _, n := range []string{"cgroup.event_control", "memory.oom_control"} {
		if err := os.WriteFile(filepath.Join(dir, n), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	err = p.WatchV1OOM("k", filepath.Join(dir, "cgroup.event_control"), filepath.Join(dir, "memory.oom_control"))
	if !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("not cgroupfs: err = %v, want ErrUnsupported", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "cgroup.event_control")); len(b) != 0 {
		t.Errorf("wrote %q to a non-cgroupfs event_control", b)
	}

	// Control files in different directories: the kernel requires one cgroup.
	err = p.WatchV1OOM("k", filepath.Join(dir, "a", "cgroup.event_control"), filepath.Join(dir, "memory.oom_control"))
	if err == nil || errors.Is(err, errors.ErrUnsupported) || errors.Is(err, eventfd.ErrGone) {
		t.Errorf("mismatched dirs: err = %v, want a plain error", err)
	}
	wantStats(t, p, 0, 0)
}

func TestCloseWakesWait(t *testing.T) {
	p := newPoller(t)
	if err := p.WatchDir("k", t.TempDir()); err != nil {
		t.Fatal(err)
	}
	type result struct {
		evs []eventfd.Event
		err error
	}
	done := make(chan result)
	var entered atomic.Bool
	go func() {
		entered.Store(true)
		evs, err := p.Wait(make([]eventfd.Event, 0, 4), -1)
		done <- result{evs, err}
	}()
	for !entered.Load() {
		runtime.Gosched()
	}
	time.Sleep(50 * time.Millisecond) // let it block in epoll_wait (not required for correctness)
	start := time.Now()
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case r := <-done:
		if !errors.Is(r.err, eventfd.ErrClosed) || len(r.evs) != 0 {
			t.Errorf("Wait after Close = %v, %v; want [], ErrClosed", r.evs, r.err)
		}
		t.Logf("Wait returned %v after Close", time.Since(start))
	case <-time.After(eventDeadline):
		t.Fatal("Wait(-1) did not return after Close")
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
	if _, err := p.Wait(nil, time.Second); !errors.Is(err, eventfd.ErrClosed) {
		t.Errorf("Wait on closed poller = %v, want ErrClosed", err)
	}
	if err := p.WatchDir("k2", t.TempDir()); !errors.Is(err, eventfd.ErrClosed) {
		t.Errorf("WatchDir on closed poller = %v, want ErrClosed", err)
	}
	if err := p.WatchV1OOM("k2", "/x/cgroup.event_control", "/x/memory.oom_control"); !errors.Is(err, eventfd.ErrClosed) {
		t.Errorf("WatchV1OOM on closed poller = %v, want ErrClosed", err)
	}
	p.Unwatch("k")
	wantStats(t, p, 0, 0)
}

func TestConcurrentClose(t *testing.T) {
	p := newPoller(t)
	done := make(chan error)
	go func() {
		_, err := p.Wait(nil, -1)
		done <- err
	}()
	errs := make(chan error, 4)
	for range 4 {
		go func() { errs <- p.Close() }()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Errorf("Close: %v", err)
		}
	}
	select {
	case err := <-done:
		if !errors.Is(err, eventfd.ErrClosed) {
			t.Errorf("Wait = %v, want ErrClosed", err)
		}
	case <-time.After(eventDeadline):
		t.Fatal("Wait did not return")
	}
}

func TestWaitTimeout(t *testing.T) {
	p := newPoller(t)
	if err := p.WatchDir("k", t.TempDir()); err != nil {
		t.Fatal(err)
	}
	buf := make([]eventfd.Event, 3, 8) // stale content must be cut off
	start := time.Now()
	evs, err := p.Wait(buf, 100*time.Millisecond)
	if err != nil || len(evs) != 0 {
		t.Fatalf("Wait(100ms) = %v, %v; want [], nil", evs, err)
	}
	if el := time.Since(start); el < 100*time.Millisecond {
		t.Errorf("Wait(100ms) returned after %v", el)
	}
	start = time.Now()
	if evs, err := p.Wait(buf, 0); err != nil || len(evs) != 0 {
		t.Fatalf("Wait(0) = %v, %v; want [], nil", evs, err)
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("Wait(0) took %v", el)
	}
}

// TestWaitEINTR interrupts epoll_wait with signals aimed at the waiting
// thread: Wait must neither fail nor return early, and must keep counting
// down the original timeout instead of restarting it.
func TestWaitEINTR(t *testing.T) {
	p := newPoller(t)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGUSR1)
	defer signal.Stop(sigs)

	tidc := make(chan int, 1)
	type result struct {
		n       int
		err     error
		elapsed time.Duration
	}
	done := make(chan result, 1)
	const timeout = 300 * time.Millisecond
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		tidc <- unix.Gettid()
		start := time.Now()
		evs, err := p.Wait(nil, timeout)
		done <- result{len(evs), err, time.Since(start)}
	}()
	tid := <-tidc
	stop := time.After(10 * time.Second)
	sent := 0
	for {
		select {
		case r := <-done:
			if r.err != nil || r.n != 0 {
				t.Fatalf("Wait under signals = %d events, %v; want timeout", r.n, r.err)
			}
			if r.elapsed < timeout {
				t.Errorf("Wait returned after %v, before its %v timeout", r.elapsed, timeout)
			}
			if sent < 3 {
				t.Errorf("only %d signals sent; the test did not exercise EINTR", sent)
			}
			return
		case <-stop:
			t.Fatalf("Wait(%v) still blocked after 10s of signals: the timeout restarts on EINTR", timeout)
		case <-time.After(10 * time.Millisecond):
			if err := unix.Tgkill(os.Getpid(), tid, unix.SIGUSR1); err != nil {
				t.Fatal(err)
			}
			sent++
		}
	}
}

func TestManyDirsOneInotify(t *testing.T) {
	const n = 2000
	root := t.TempDir()
	dirs := make([]string, n)
	for i := range dirs {
		dirs[i] = filepath.Join(root, strconv.Itoa(i))
		if err := os.Mkdir(dirs[i], 0o755); err != nil {
			t.Fatal(err)
		}
	}
	before := len(fixture.OpenFDs(t))
	inotifyBefore := fixture.CountFDsMatching(t, "anon_inode:inotify")
	p := newPoller(t)
	for i, d := range dirs {
		if err := p.WatchDir("k"+strconv.Itoa(i), d); err != nil {
			t.Fatal(err)
		}
	}
	wantStats(t, p, n, 0)
	if got := len(fixture.OpenFDs(t)) - before; got != 4 {
		t.Errorf("%d dir watches opened %d fds, want 4 (epoll, inotify, the close and poke eventfds)", n, got)
	}
	if got := fixture.CountFDsMatching(t, "anon_inode:inotify") - inotifyBefore; got != 1 {
		t.Errorf("%d inotify fds, want 1", got)
	}
	for _, i := range []int{0, n / 2, n - 1} {
		if err := os.Mkdir(filepath.Join(dirs[i], "c"), 0o755); err != nil {
			t.Fatal(err)
		}
		waitFor(t, p, eventDeadline, fmt.Sprintf("Created in dir %d", i), is("k"+strconv.Itoa(i), eventfd.Created, "c"))
	}
}

func TestFullInotifyQueueReportsAKeylessOverflow(t *testing.T) {
	b, err := os.ReadFile("/proc/sys/fs/inotify/max_queued_events")
	if err != nil {
		t.Fatal(err)
	}
	max, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	if max > 100000 {
		t.Fatalf("max_queued_events=%d is too large to overflow in a test", max)
	}
	p := newPoller(t)
	dir := t.TempDir()
	if err := p.WatchDir("k", dir); err != nil {
		t.Fatal(err)
	}
	// inotify merges an event only with the identical one at the tail of
	// the queue, so alternating writes to two files queue one event each;
	// nobody reads meanwhile.
	var fds [2]int
	for i := range fds {
		fds[i], err = unix.Open(filepath.Join(dir, "f"+strconv.Itoa(i)), unix.O_CREAT|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fds[i])
	}
	for i := range max + 10 {
		if _, err := unix.Write(fds[i%2], []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	evs := waitFor(t, p, eventDeadline, "Overflow", func(ev eventfd.Event) bool { return ev.Kind == eventfd.Overflow })
	if ev := evs[len(evs)-1]; ev.Key != "" {
		t.Errorf("Overflow event has key %q, want \"\"", ev.Key)
	}
	// The queue holds max events, the last of them the overflow marker.
	if c := countKind(evs, "k", eventfd.Modified); c < max/2 {
		t.Errorf("%d Modified events before Overflow, want about %d", c, max-1)
	}
}

func TestWaitSteadyStateNoAllocs(t *testing.T) {
	p := newPoller(t)
	dir := t.TempDir()
	if err := p.WatchDir("k", dir); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Open(filepath.Join(dir, "memory.events"), unix.O_CREAT|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	buf := make([]eventfd.Event, 0, 16)
	one := []byte("x")
	step := func() {
		if _, err := unix.Write(fd, one); err != nil {
			t.Fatal(err)
		}
		var err error
		buf, err = p.Wait(buf, eventDeadline)
		if err != nil || len(buf) == 0 || buf[0].Name != "memory.events" {
			t.Fatalf("Wait = %+v, %v", buf, err)
		}
	}
	step() // warm up: interns the name
	if allocs := testing.AllocsPerRun(50, step); allocs != 0 {
		t.Errorf("Wait allocates %.1f times per event in steady state, want 0", allocs)
	}
}

func BenchmarkWatchDir(b *testing.B) {
	const n = 1000
	root := b.TempDir()
	dirs := make([]string, n)
	for i := range dirs {
		dirs[i] = filepath.Join(root, strconv.Itoa(i))
		if err := os.Mkdir(dirs[i], 0o755); err != nil {
			b.Fatal(err)
		}
	}
	keys := make([]string, n)
	for i := range keys {
		keys[i] = "k" + strconv.Itoa(i)
	}
	p, err := eventfd.New()
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	b.ReportAllocs()
	for b.Loop() {
		for i, d := range dirs {
			if err := p.WatchDir(keys[i], d); err != nil {
				b.Fatal(err)
			}
		}
		for _, k := range keys {
			p.Unwatch(k)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/dir")
}

// WatchSubdirs reports subdirectories and Gone, never file modifications;
// a second watch on the same inode with another mask is refused and leaves
// the first one's mask in place.
func TestWatchSubdirs(t *testing.T) {
	p := newPoller(t)
	dir := t.TempDir()
	if err := p.WatchSubdirs("k", dir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.event_control"), []byte("3 4\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, ev := range collect(t, p, 200*time.Millisecond) {
		t.Errorf("file write reported by WatchSubdirs: %+v", ev)
	}
	if err := p.WatchDir("other", dir); err == nil {
		t.Fatal("WatchDir of a directory watched under another key: no error")
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.event_control"), []byte("5 6\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, ev := range collect(t, p, 200*time.Millisecond) {
		t.Errorf("file write reported after a refused WatchDir (mask not restored): %+v", ev)
	}
	if err := os.Mkdir(filepath.Join(dir, "child"), 0o755); err != nil {
		t.Fatal(err)
	}
	waitFor(t, p, eventDeadline, "Created child", is("k", eventfd.Created, "child"))
	if err := os.Remove(filepath.Join(dir, "child")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, p, eventDeadline, "Removed child", is("k", eventfd.Removed, "child"))
}

// Poke ends a blocked Wait with no events and no error, pokes coalesce, and
// the next Wait blocks again.
func TestPokeEndsWaitWithoutEvents(t *testing.T) {
	p := newPoller(t)
	done := make(chan error, 1)
	go func() {
		evs, err := p.Wait(nil, -1)
		if err == nil && len(evs) != 0 {
			err = fmt.Errorf("events %v", evs)
		}
		done <- err
	}()
	time.Sleep(20 * time.Millisecond) // let it block (not required for correctness)
	for range 3 {
		if err := p.Poke(); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("poked Wait: %v", err)
		}
	case <-time.After(eventDeadline):
		t.Fatal("Wait(-1) did not return after Poke")
	}
	// The three pokes were one: the next Wait times out.
	if evs, err := p.Wait(nil, 30*time.Millisecond); err != nil || len(evs) != 0 {
		t.Fatalf("Wait after a consumed poke = %v, %v; want a timeout", evs, err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Poke(); !errors.Is(err, eventfd.ErrClosed) {
		t.Errorf("Poke on a closed poller = %v, want ErrClosed", err)
	}
}
