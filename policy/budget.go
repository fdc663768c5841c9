package policy

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/oomwatch/oomwatch/watchdog"
)

// budget is the rate limit on changes to the host. Every action costs one
// token of the global bucket (n a minute, at most n at once) and one of its
// subtree's bucket: the container subtree of the incident's cgroup, as
// watchdog.Subtree names it (the subtree max_per_subtree counts against).
// A subtree's bucket holds at most share = max(1, n/3) tokens and refills at
// the global rate, so one subtree takes at most share of the n at once and
// leaves the rest to the others, and a subtree acting alone still gets the
// whole rate once its first share is spent.
//
// An action refused waits in its subtree's queue, first come first served.
// Subtrees with a waiting action take turns for the global tokens, one
// action each, in the order they began to wait: a subtree with 100 waiting
// actions stands once before another subtree's first, never 100 times. A
// ladder asking for a token while others wait in its subtree queues behind
// them, and a token that comes back goes to the waiters before any newcomer.
//
// A granted token is held for the ladder's cgroup (one ladder per cgroup)
// until its rung uses it; a rung that no longer needs it gives it back.
//
// At most maxTracked subtrees are tracked. A subtree whose bucket is full
// again and that has nothing waiting or held is the same as a new one and is
// forgotten; when maxTracked subtrees are still in use, further subtrees
// share one overflow budget (the global ceiling holds for all).
type budget struct {
	mu       sync.Mutex
	n, share int
	global   tokenBucket
	rate     float64 // tokens per second, of the global and each subtree bucket
	subtrees map[string]*subtreeBudget
	overflow *subtreeBudget
	turns    []*subtreeBudget          // subtrees with waiters, in turn order
	held     map[string]*subtreeBudget // ladder cgroup → the subtree of its granted token
	max      int                       // maxTracked
	sweepAt  int
	capped   bool // the overflow budget was used and not yet reported
}

// maxTracked bounds the subtrees the budget tracks.
const maxTracked = 4096

// overflowKey names the shared budget of subtrees beyond maxTracked; no
// cgroup path looks like it.
const overflowKey = "(subtrees beyond the tracking cap)"

type subtreeBudget struct {
	key     string
	bucket  tokenBucket
	waiters []*waiter
	held    int // granted tokens not yet used
}

// waiter is one action waiting for a token; ready is closed once granted.
type waiter struct {
	cg      string
	sub     *subtreeBudget
	ready   chan struct{}
	granted bool
}

func newBudget(n int, per time.Duration) *budget {
	share := max(1, n/3)
	b := &budget{
		n: n, share: share, global: newTokenBucket(n, n, per), rate: float64(n) / per.Seconds(),
		subtrees: map[string]*subtreeBudget{}, held: map[string]*subtreeBudget{}, max: maxTracked, sweepAt: 64,
	}
	b.overflow = &subtreeBudget{key: overflowKey, bucket: b.newSubtreeBucket()}
	return b
}

func (b *budget) newSubtreeBucket() tokenBucket {
	return tokenBucket{n: float64(b.share), max: float64(b.share), rate: b.rate}
}

// subtree returns cg's subtree budget, creating it (or, at the cap, the
// overflow one).
func (b *budget) subtree(cg string, now time.Time) *subtreeBudget {
	key := watchdog.Subtree(cg)
	if key == "" {
		key = "/"
	}
	if s := b.subtrees[key]; s != nil {
		return s
	}
	if len(b.subtrees) >= b.sweepAt {
		b.prune(now)
		b.sweepAt = min(b.max, max(64, 2*len(b.subtrees)))
	}
	if len(b.subtrees) >= b.max {
		b.capped = true
		return b.overflow
	}
	s := &subtreeBudget{key: key, bucket: b.newSubtreeBucket()}
	b.subtrees[key] = s
	return s
}

// prune forgets the subtrees a new budget would replace exactly.
func (b *budget) prune(now time.Time) {
	for k, s := range b.subtrees {
		if len(s.waiters) == 0 && s.held == 0 && s.bucket.at(now) >= s.bucket.max {
			delete(b.subtrees, k)
		}
	}
}

// take spends a token for an action in cg's subtree, and says why not. With
// grant, a token granted to cg's waiting ladder is used first.
func (b *budget) take(cg string, grant bool, now time.Time) (ok bool, why string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if s, held := b.held[cg]; grant && held {
		delete(b.held, cg)
		s.held--
		return true, ""
	}
	b.dispatch(now) // tokens back since the last look go to the waiters first
	s := b.subtree(cg, now)
	switch {
	case len(s.waiters) > 0:
		return false, fmt.Sprintf("rate limited: earlier actions in subtree %s are waiting", s.key)
	case s.bucket.at(now) < 1:
		return false, fmt.Sprintf("rate limited: subtree %s used its share (%d at once of the %d actions per minute)", s.key, b.share, b.n)
	case b.global.at(now) < 1:
		return false, fmt.Sprintf("rate limited: more than %d actions per minute", b.n)
	}
	s.bucket.n--
	b.global.n--
	return true, ""
}

// enqueue adds an action of cg's ladder to the end of its subtree's queue.
func (b *budget) enqueue(cg string, now time.Time) *waiter {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.subtree(cg, now)
	w := &waiter{cg: cg, sub: s, ready: make(chan struct{})}
	if len(s.waiters) == 0 {
		b.turns = append(b.turns, s)
	}
	s.waiters = append(s.waiters, w)
	return w
}

// poll grants what the buckets allow now and reports whether w has its
// token; if not, how long until one may come back.
func (b *budget) poll(w *waiter, now time.Time) (time.Duration, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	d := b.dispatch(now)
	return d, w.granted
}

// dispatch grants tokens to waiters, subtrees in turn order, and returns how
// long until the next token may be granted. Called with mu held.
func (b *budget) dispatch(now time.Time) time.Duration {
	for b.global.at(now) >= 1 {
		i := slices.IndexFunc(b.turns, func(s *subtreeBudget) bool { return s.bucket.at(now) >= 1 })
		if i < 0 {
			break
		}
		s := b.turns[i]
		w := s.waiters[0]
		s.waiters[0] = nil
		s.waiters = s.waiters[1:]
		s.bucket.n--
		b.global.n--
		w.granted = true
		s.held++
		b.held[w.cg] = s
		close(w.ready)
		b.turns = slices.Delete(b.turns, i, i+1)
		if len(s.waiters) > 0 {
			b.turns = append(b.turns, s) // its next action waits for the others' turns
		} else {
			s.waiters = nil
		}
	}
	next := b.global.until()
	sub := time.Duration(-1)
	for _, s := range b.turns {
		if d := s.bucket.until(); sub < 0 || d < sub {
			sub = d
		}
	}
	return max(next, sub, time.Millisecond)
}

// cancel takes w out of its queue, or gives back its token if it was granted
// and not used.
func (b *budget) cancel(w *waiter, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if w.granted {
		b.giveBack(w.cg, now)
		return
	}
	s := w.sub
	s.waiters = slices.DeleteFunc(s.waiters, func(x *waiter) bool { return x == w })
	if len(s.waiters) == 0 {
		s.waiters = nil
		b.turns = slices.DeleteFunc(b.turns, func(x *subtreeBudget) bool { return x == s })
	}
}

// release gives back a token granted to cg's ladder that its rung did not
// use (the loop ended meanwhile, or the rung found nothing to do).
func (b *budget) release(cg string, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.giveBack(cg, now)
}

func (b *budget) giveBack(cg string, now time.Time) {
	s, ok := b.held[cg]
	if !ok {
		return
	}
	delete(b.held, cg)
	s.held--
	s.bucket.at(now)
	s.bucket.n = min(s.bucket.max, s.bucket.n+1)
	b.global.at(now)
	b.global.n = min(b.global.max, b.global.n+1)
	b.dispatch(now)
}

// capReached reports, once, that subtrees beyond maxTracked share the
// overflow budget.
func (b *budget) capReached() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	c := b.capped
	b.capped = false
	return c
}

// tokenBucket holds up to max tokens, refilled continuously at rate per
// second. Not safe for concurrent use (budget's mutex guards it).
type tokenBucket struct {
	n, max float64
	rate   float64 // tokens per second
	last   time.Time
	inited bool
}

// newTokenBucket holds size tokens, refilled at n per period.
func newTokenBucket(size, n int, per time.Duration) tokenBucket {
	return tokenBucket{n: float64(size), max: float64(size), rate: float64(n) / per.Seconds()}
}

// at refills the bucket up to now and returns its tokens.
func (b *tokenBucket) at(now time.Time) float64 {
	if b.inited && now.After(b.last) {
		b.n = min(b.max, b.n+now.Sub(b.last).Seconds()*b.rate)
	}
	if !b.inited || now.After(b.last) {
		b.inited, b.last = true, now
	}
	return b.n
}

// until is how long after its last at the bucket has a token (0 if it has
// one).
func (b *tokenBucket) until() time.Duration {
	switch {
	case b.n >= 1:
		return 0
	case b.rate <= 0:
		return time.Second
	}
	return time.Duration((1 - b.n) / b.rate * float64(time.Second))
}
