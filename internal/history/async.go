package history

import (
	"sync"
	"sync/atomic"
	"time"
)

// Async appends off the caller's goroutine: the watchdog's event loop must
// not wait for an fsync (or for the kernel log evidence a record gathers).
// Records are built and written in order by one goroutine.
type Async struct {
	j       *Journal
	ch      chan func() Record
	done    chan struct{}
	once    sync.Once
	mu      sync.RWMutex // Append vs Close
	closed  bool
	dropped atomic.Uint64
	// onState is told when appends start failing (the error) and when they
	// work again (nil): log once per transition, not per record.
	onState func(error)
}

// NewAsync starts the writer. queue bounds the records waiting (default
// 256); onState may be nil.
func NewAsync(j *Journal, queue int, onState func(error)) *Async {
	if queue <= 0 {
		queue = 256
	}
	a := &Async{j: j, ch: make(chan func() Record, queue), done: make(chan struct{}), onState: onState}
	go a.run()
	return a
}

func (a *Async) run() {
	defer close(a.done)
	failing := false
	for build := range a.ch {
		rec := build()
		if rec.Type == "" {
			continue // a barrier (AppendWait), not a record
		}
		err := a.j.Append(rec)
		if (err != nil) != failing {
			failing = err != nil
			if a.onState != nil {
				a.onState(err)
			}
		}
	}
}

// Append queues a record; build runs on the writer goroutine (gather the
// kernel log there). It never blocks: with the queue full the record is
// dropped and counted.
func (a *Async) Append(build func() Record) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	if a.closed {
		a.dropped.Add(1)
		return
	}
	select {
	case a.ch <- build:
	default:
		a.dropped.Add(1)
	}
}

// Dropped is how many records were never written for lack of queue space.
func (a *Async) Dropped() uint64 { return a.dropped.Load() }

// Close writes what is queued, stops the writer and closes the journal.
func (a *Async) Close() error {
	a.once.Do(func() {
		a.mu.Lock()
		a.closed = true
		close(a.ch)
		a.mu.Unlock()
		<-a.done
	})
	return a.j.Close()
}

// AppendWait queues a record and waits, at most timeout, until it and every
// record queued before it are written: a write-ahead entry before oomwatch
// changes the host, so a crash right after the change still leaves it in
// the journal. A slow disk costs at most timeout; the record is then
// written later or dropped like any other.
func (a *Async) AppendWait(build func() Record, timeout time.Duration) bool {
	written := make(chan struct{})
	a.Append(func() Record {
		defer close(written)
		return build()
	})
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-written:
		// build ran; the append of its record follows at once on the
		// writer goroutine. Wait for that by queueing a no-op barrier.
		return a.barrier(timeout)
	case <-t.C:
		return false
	}
}

// barrier returns once everything queued so far has been handed to the
// journal (a nil record marks the barrier and is not written).
func (a *Async) barrier(timeout time.Duration) bool {
	reached := make(chan struct{})
	a.mu.RLock()
	if a.closed {
		a.mu.RUnlock()
		return false
	}
	select {
	case a.ch <- func() Record { close(reached); return Record{} }:
	default:
		a.mu.RUnlock()
		return false
	}
	a.mu.RUnlock()
	select {
	case <-reached:
		return true
	case <-time.After(timeout):
		return false
	}
}
