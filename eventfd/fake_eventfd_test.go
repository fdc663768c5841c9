package eventfd

import (
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/oomwatch/oomwatch/test/fixture"
	"golang.org/x/sys/unix"
)

// These tests fake the kernel side of a v1 OOM registration by signalling
// the eventfd ourselves (as runc's notify_linux_test.go does), so the
// counting and removal logic runs without root or cgroup v1.

func addFakeOOM(t *testing.T, p *Poller, key, oomControl string) int {
	t.Helper()
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.nextID++
	w := &fdWatch{key: key, path: oomControl, fd: efd, id: p.nextID}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(efd), Pad: int32(w.id)}
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, efd, &ev); err != nil {
		unix.Close(efd)
		t.Fatal(err)
	}
	p.addFDWatchLocked(w)
	// A second descriptor to signal through: the poller may close efd.
	sig, err := unix.Dup(efd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(sig) })
	return sig
}

func signal(t *testing.T, fd int, n uint64) {
	t.Helper()
	var b [8]byte
	binary.NativeEndian.PutUint64(b[:], n)
	if _, err := unix.Write(fd, b[:]); err != nil {
		t.Fatal(err)
	}
}

// checkFDCount compares the fd count now with the count at cleanup; call it
// first so its cleanup runs last.
func checkFDCount(t *testing.T) {
	before := fixture.CountFDs(t)
	t.Cleanup(func() {
		if after := fixture.CountFDs(t); after != before {
			t.Errorf("fd leak: %d fds before, %d after", before, after)
		}
	})
}

func TestFakeEventfdCoalescedCountThenGone(t *testing.T) {
	checkFDCount(t)
	p, err := New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })

	oomControl := filepath.Join(t.TempDir(), "memory.oom_control")
	if err := os.WriteFile(oomControl, []byte("under_oom 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sig := addFakeOOM(t, p, "cg", oomControl)

	// No signal, no event.
	if evs, err := p.Wait(nil, 50*time.Millisecond); err != nil || len(evs) != 0 {
		t.Fatalf("idle Wait = %+v, %v", evs, err)
	}
	// Three signals before a read come back as one event with Count 3.
	signal(t, sig, 1)
	signal(t, sig, 1)
	signal(t, sig, 1)
	evs, err := p.Wait(nil, 5*time.Second)
	if err != nil || len(evs) != 1 || evs[0] != (Event{Key: "cg", Kind: OOM, Count: 3}) {
		t.Fatalf("Wait = %+v, %v; want one OOM with Count 3", evs, err)
	}
	// The read reset the counter: nothing more until the next signal.
	if evs, err := p.Wait(nil, 50*time.Millisecond); err != nil || len(evs) != 0 {
		t.Fatalf("Wait after drain = %+v, %v", evs, err)
	}

	// rmdir removes memory.oom_control and then signals the eventfd.
	if err := os.Remove(oomControl); err != nil {
		t.Fatal(err)
	}
	signal(t, sig, 1)
	evs, err = p.Wait(nil, 5*time.Second)
	if err != nil || len(evs) != 1 || evs[0].Kind != Gone || evs[0].Key != "cg" || evs[0].Count != 1 {
		t.Fatalf("Wait = %+v, %v; want Gone for cg", evs, err)
	}
	if d, e := p.Stats(); d != 0 || e != 0 {
		t.Errorf("Stats after Gone = %d, %d; want 0, 0", d, e)
	}
	// The poller closed its eventfd: signalling the dup reaches nobody.
	signal(t, sig, 1)
	if evs, err := p.Wait(nil, 50*time.Millisecond); err != nil || len(evs) != 0 {
		t.Fatalf("Wait after Gone = %+v, %v", evs, err)
	}
}

// TestFakeEventfdStaleAfterUnwatch: an eventfd that fired but was unwatched
// before Wait ran, and whose fd number was reused by a new registration with
// nothing pending, yields no event.
func TestFakeEventfdStaleAfterUnwatch(t *testing.T) {
	checkFDCount(t)
	p, err := New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	oomControl := filepath.Join(t.TempDir(), "memory.oom_control")
	if err := os.WriteFile(oomControl, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	sig := addFakeOOM(t, p, "old", oomControl)
	signal(t, sig, 5)
	p.Unwatch("old")
	sig2 := addFakeOOM(t, p, "new", oomControl)
	if evs, err := p.Wait(nil, 50*time.Millisecond); err != nil || len(evs) != 0 {
		t.Fatalf("Wait = %+v, %v; want nothing", evs, err)
	}
	signal(t, sig2, 2)
	evs, err := p.Wait(nil, 5*time.Second)
	if err != nil || len(evs) != 1 || evs[0] != (Event{Key: "new", Kind: OOM, Count: 2}) {
		t.Fatalf("Wait = %+v, %v; want OOM for new with Count 2", evs, err)
	}
}

func TestKindString(t *testing.T) {
	for k, want := range map[Kind]string{OOM: "OOM", Gone: "Gone", Overflow: "Overflow", 0: "Kind(0)", 99: "Kind(99)"} {
		if got := k.String(); got != want {
			t.Errorf("Kind(%d).String() = %q, want %q", k, got, want)
		}
	}
}

// TestPollFileKeepsTheFDReserve: PollFile stops where another polled file
// would leave less than fdReserve of RLIMIT_NOFILE to the rest of the
// process (reads of cgroup and /proc files need fds of their own).
func TestPollFileKeepsTheFDReserve(t *testing.T) {
	p, err := New()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	if want := int(min(rl.Cur, math.MaxInt32)) - fdReserve; p.pollMax != want {
		t.Errorf("pollMax = %d, want RLIMIT_NOFILE %d - %d", p.pollMax, rl.Cur, fdReserve)
	}
	p.pollMax = 0
	f := filepath.Join(t.TempDir(), "memory.events")
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := p.PollFile("k", f); !errors.Is(err, ErrFDBudget) {
		t.Errorf("PollFile past the budget = %v, want ErrFDBudget", err)
	}
}
