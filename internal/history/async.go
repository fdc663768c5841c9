package history

import (
	"sync"
	"sync/atomic"
	"time"
)

// Async appends off the caller's goroutine: the watchdog's event loop must
// not wait for an fsync (or for the kernel log evidence a record gathers).
// Records are built and written in order by one goroutine, and made durable
// with one fsync per burst (group commit): once the queue is empty.
type Async struct {
	j       *Journal
	ch      chan item
	done    chan struct{}
	once    sync.Once
	mu      sync.RWMutex // Append vs Close
	closed  bool
	dropped atomic.Uint64
	// onState is told when appends start failing (the error) and when they
	// work again (nil): log once per transition, not per record.
	onState func(error)
}

type item struct {
	build   func() Record
	written chan struct{} // closed once the record is written (AppendWait)
}

// NewAsync starts the writer. queue bounds the records waiting (default
// 256); onState may be nil.
func NewAsync(j *Journal, queue int, onState func(error)) *Async {
	if queue <= 0 {
		queue = 256
	}
	a := &Async{j: j, ch: make(chan item, queue), done: make(chan struct{}), onState: onState}
	go a.run()
	return a
}

func (a *Async) run() {
	defer close(a.done)
	failing := false
	for it := range a.ch {
		err := a.j.write(it.build())
		if it.written != nil {
			close(it.written)
		}
		if err == nil && len(a.ch) == 0 {
			err = a.j.Sync()
		}
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
func (a *Async) Append(build func() Record) { a.queue(item{build: build}) }

func (a *Async) queue(it item) bool {
	a.mu.RLock()
	defer a.mu.RUnlock()
	if a.closed {
		a.dropped.Add(1)
		return false
	}
	select {
	case a.ch <- it:
		return true
	default:
		a.dropped.Add(1)
		return false
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

// AppendWait queues a record and waits, at most timeout, until it (and so
// every record queued before it) is written: a write-ahead entry before
// oomwatch changes the host, so that oomwatch killed right after the change
// still leaves it in the journal. It waits for the write(2), not for the
// fsync that follows (a crash of the whole machine may lose the last
// records, as it would lose the change to oom_score_adj too): an fsync per
// action would put the disk's latency between the kernel's loop and its
// end. A slow disk costs at most timeout; the record is then written later
// or dropped like any other. It reports whether the record was written.
func (a *Async) AppendWait(build func() Record, timeout time.Duration) bool {
	written := make(chan struct{})
	if !a.queue(item{build: build, written: written}) {
		return false
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-written:
		return true
	case <-t.C:
		return false
	}
}
