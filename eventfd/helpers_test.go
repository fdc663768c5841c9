package eventfd_test

import (
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/oomwatch/oomwatch/eventfd"
	"github.com/oomwatch/oomwatch/test/fixture"
)

func TestMain(m *testing.M) {
	// The Go runtime opens its netpoll epoll fd lazily and keeps it; open a
	// pollable fd once so the first leak check does not count it.
	if r, w, err := os.Pipe(); err == nil {
		r.Close()
		w.Close()
	}
	goleak.VerifyTestMain(m)
}

// checkFDs fails t if the number of open fds at cleanup differs from now.
// Register it before anything that opens fds so its cleanup runs last.
func checkFDs(t testing.TB) {
	t.Helper()
	before := fixture.OpenFDs(t)
	t.Cleanup(func() {
		after := fixture.OpenFDs(t)
		if len(after) != len(before) {
			t.Errorf("fd leak: %d fds before, %d after\nbefore: %v\nafter:  %v", len(before), len(after), before, after)
		}
	})
}

// newPoller opens a Poller closed at cleanup, with an fd-leak check around it.
func newPoller(t testing.TB) *eventfd.Poller {
	t.Helper()
	checkFDs(t)
	p, err := eventfd.New()
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return p
}

// waitFor collects events until one matches or the deadline passes (a
// correctness wait, not a timing assertion). It returns all events seen up to
// and including the match.
func waitFor(t testing.TB, p *eventfd.Poller, within time.Duration, what string, match func(eventfd.Event) bool) []eventfd.Event {
	t.Helper()
	deadline := time.Now().Add(within)
	var seen []eventfd.Event
	var buf []eventfd.Event
	for {
		rem := time.Until(deadline)
		if rem <= 0 {
			t.Fatalf("no %s within %v; events seen: %+v", what, within, seen)
		}
		var err error
		buf, err = p.Wait(buf, rem)
		if err != nil {
			t.Fatalf("Wait: %v (waiting for %s)", err, what)
		}
		for i, ev := range buf {
			seen = append(seen, ev)
			if match(ev) {
				// Keep whatever came in the same batch after the match.
				seen = append(seen, buf[i+1:]...)
				return seen
			}
		}
	}
}

// collect gathers every event that arrives within d.
func collect(t testing.TB, p *eventfd.Poller, d time.Duration) []eventfd.Event {
	t.Helper()
	deadline := time.Now().Add(d)
	var seen, buf []eventfd.Event
	for {
		rem := time.Until(deadline)
		if rem <= 0 {
			return seen
		}
		var err error
		buf, err = p.Wait(buf, rem)
		if err != nil {
			t.Fatalf("Wait: %v", err)
		}
		seen = append(seen, buf...)
	}
}

func is(key string, kind eventfd.Kind, name string) func(eventfd.Event) bool {
	return func(ev eventfd.Event) bool { return ev.Key == key && ev.Kind == kind && ev.Name == name }
}

func countKind(evs []eventfd.Event, key string, kind eventfd.Kind) int {
	n := 0
	for _, ev := range evs {
		if ev.Key == key && ev.Kind == kind {
			n++
		}
	}
	return n
}

func wantStats(t testing.TB, p *eventfd.Poller, dirs, efds int) {
	t.Helper()
	if d, e := p.Stats(); d != dirs || e != efds {
		t.Errorf("Stats() = (%d dir watches, %d eventfds), want (%d, %d)", d, e, dirs, efds)
	}
}
