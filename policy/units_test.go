package policy

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/oomwatch/oomwatch/test/testhost"
	"github.com/oomwatch/oomwatch/watchdog"
)

// hungUnits is a service manager that stops answering: the call named by
// hang blocks until release is closed, whatever its context says (as a
// D-Bus peer that never replies, or a client that ignores its context).
// SetMemoryMax then writes memory.max as systemd would, late.
type hungUnits struct {
	hang      string // "UnitForCgroup", "SetMemoryMax" or "OOMPolicy"
	memMax    string // the unit's memory.max
	oomPolicy string // the unit's OOMPolicy (default continue)
	release   chan struct{}
	once      sync.Once

	mu    sync.Mutex
	calls []string
}

// answer makes the hung call return.
func (u *hungUnits) answer() { u.once.Do(func() { close(u.release) }) }

func (u *hungUnits) call(name string) {
	u.mu.Lock()
	u.calls = append(u.calls, name)
	u.mu.Unlock()
	if name == u.hang {
		<-u.release
	}
}

func (u *hungUnits) UnitForCgroup(_ context.Context, cg string) (string, error) {
	u.call("UnitForCgroup")
	return filepath.Base(cg), nil
}

func (u *hungUnits) SetMemoryMax(_ context.Context, _ string, v uint64) error {
	u.call("SetMemoryMax")
	return os.WriteFile(u.memMax, []byte(strconv.FormatUint(v, 10)+"\n"), 0o644)
}

func (u *hungUnits) OOMPolicy(context.Context, string) (string, error) {
	u.call("OOMPolicy")
	if u.oomPolicy == "" {
		return "continue", nil
	}
	return u.oomPolicy, nil
}

func (u *hungUnits) count(name string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	n := 0
	for _, c := range u.calls {
		if c == name {
			n++
		}
	}
	return n
}

// unitHost is fakeHost with its cgroup named like a systemd unit.
func unitHost(t *testing.T) (string, func() *Policy, *hungUnits, *testhost.SyncBuf, context.CancelFunc) {
	t.Helper()
	h, proc, cgRoot, procRoot := fakeHost(t, "java")
	if err := os.Rename(filepath.Join(cgRoot, "ct"), filepath.Join(cgRoot, "app.service")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(procRoot, "4242/cgroup"), []byte("0::/app.service\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(cgRoot, "app.service")
	if err := os.WriteFile(filepath.Join(dir, "memory.current"), []byte("1000000\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	u := &hungUnits{memMax: filepath.Join(dir, "memory.max"), release: make(chan struct{})}
	t.Cleanup(u.answer)
	opts := DefaultOptions()
	opts.Ladder = []string{RaiseLimit}
	opts.RevertHold = 300 * time.Millisecond
	logs := &testhost.SyncBuf{}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	start := func() *Policy {
		p, err := New(ctx, Config{CG: h, Proc: proc, Options: opts, Units: u, UnitTimeout: 2 * time.Second}, zerolog.New(logs))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	return dir, start, u, logs, cancel
}

// runIncident opens inc on p and returns the ladder's results, failing the
// test if the ladder does not end.
func runIncident(t *testing.T, p *Policy, inc *watchdog.Incident) []Action {
	t.Helper()
	got := make(chan []Action, 1)
	p.report = hooks{done: func(_ *watchdog.Incident, rs []Action) { got <- rs }}
	p.Open(inc)
	select {
	case rs := <-got:
		return rs
	case <-time.After(60 * time.Second):
		t.Fatalf("the ladder for %s did not end", inc.Cgroup)
		return nil
	}
}

// unitIncident is a loop in unitHost's /app.service.
var unitIncident = &watchdog.Incident{ID: "u", Verdict: watchdog.VerdictLoop, Cgroup: "/app.service", Version: 2}

// TestUnitTimeoutBoundsLadderAndReverter: systemd takes SetMemoryMax and
// never answers. The raise fails after UnitTimeout instead of holding the
// ladder; its record stays, since systemd may still apply it. The reverter
// is not held either: while the call hangs, each revert fails after
// UnitTimeout and is retried. When systemd applies the raise late, the
// reverter recognises it as its own and puts the original back.
func TestUnitTimeoutBoundsLadderAndReverter(t *testing.T) {
	dir, start, u, logs, cancel := unitHost(t)
	u.hang = "SetMemoryMax"
	p := start()
	rs := runIncident(t, p, unitIncident)
	if len(rs) != 1 || rs[0].Done || !strings.Contains(rs[0].Error, "no answer from systemd within 2s") {
		t.Fatalf("results %+v, want the raise to fail after UnitTimeout", rs)
	}
	if v := readTrim(t, filepath.Join(dir, "memory.max")); v != "20971520" {
		t.Fatalf("memory.max = %s, want it untouched", v)
	}
	if rec := p.raised.get("/app.service"); rec == nil || rec.Raised != 23068672 || rec.Prev != 20971520 || rec.Unit != "app.service" {
		t.Fatalf("record %+v, want the step kept (systemd may still apply it)", rec)
	}
	waitUntil(t, "a revert bounded by UnitTimeout", func() bool {
		return strings.Contains(logs.String(), "an earlier call to systemd is still unanswered")
	})
	if p.raised.len() != 1 || u.count("SetMemoryMax") != 1 {
		t.Fatalf("records %d, SetMemoryMax calls %d: want the record kept and the hung call not repeated", p.raised.len(), u.count("SetMemoryMax"))
	}
	u.answer() // systemd answers at last and applies the raise
	waitUntil(t, "the late raise reverted", func() bool {
		return p.raised.len() == 0 && readTrim(t, filepath.Join(dir, "memory.max")) == "20971520"
	})
	if strings.Contains(logs.String(), "someone else") {
		t.Fatalf("the late raise was taken for someone else's:\n%s", logs.String())
	}
	cancel()
	p.Wait()
}

// TestUnitTimeoutBoundsUnitLookup: systemd takes the unit lookup and never
// answers. The ladder goes on after UnitTimeout, writing the limit itself.
func TestUnitTimeoutBoundsUnitLookup(t *testing.T) {
	dir, start, u, logs, cancel := unitHost(t)
	u.hang = "UnitForCgroup"
	p := start()
	rs := runIncident(t, p, unitIncident)
	if len(rs) != 1 || !rs[0].Done {
		t.Fatalf("results %+v\nlog:\n%s", rs, logs.String())
	}
	if v := readTrim(t, filepath.Join(dir, "memory.max")); v != "23068672" {
		t.Fatalf("memory.max = %s, want 23068672 written directly", v)
	}
	if !strings.Contains(logs.String(), "cannot ask systemd which unit owns the cgroup") {
		t.Fatalf("the lookup's timeout is not logged:\n%s", logs.String())
	}
	if rec := p.raised.get("/app.service"); rec == nil || rec.Unit != "" {
		t.Fatalf("record %+v, want a direct write", rec)
	}
	cancel()
	p.Wait()
}

// A unit with OOMPolicy=stop: the kill reset-adj lets the kernel make stops
// the whole unit. The ladder says so in every action and in a warning, and
// a rule's StopUnitLadder (here freeze) runs instead of the ladder; without
// one the ladder runs as it is. A unit with OOMPolicy=continue is not
// mentioned.
func TestOOMPolicyStopUnitIsNamedAndGetsItsOwnLadder(t *testing.T) {
	for _, tc := range []struct {
		name, policy string
		stopLadder   []string
		want         string // the rung that runs
		note         bool
	}{
		{"stop with a ladder for it", "stop", []string{Freeze}, Freeze, true},
		{"stop without", "stop", nil, ResetAdj, true},
		{"continue", "continue", []string{Freeze}, ResetAdj, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, start, u, logs, _ := unitHost(t)
			u.oomPolicy = tc.policy
			p := start()
			p.cfg.Options.Ladder = []string{ResetAdj}
			p.cfg.Options.StopUnitLadder = tc.stopLadder
			p.cfg.Options.MaxResets = 1
			rs := runIncident(t, p, unitIncident)
			if len(rs) == 0 || rs[0].Name != tc.want {
				t.Fatalf("actions %+v: want %s first", rs, tc.want)
			}
			for _, r := range rs {
				if got := strings.Contains(r.Detail, "app.service has OOMPolicy=stop"); got != tc.note {
					t.Errorf("action %s detail %q: mentions OOMPolicy=stop %v, want %v", r.Name, r.Detail, got, tc.note)
				}
			}
			if got := strings.Contains(logs.String(), `"event":"oom_policy_stop"`); got != tc.note {
				t.Errorf("oom_policy_stop logged %v, want %v:\n%s", got, tc.note, logs.String())
			}
		})
	}
}
