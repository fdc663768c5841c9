package policy

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/oomwatch/oomwatch/internal/cgroupfs"
	"github.com/oomwatch/oomwatch/watchdog"
)

func readTrim(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRaiseLimitPersistsAndReverts: raise-limit raises memory.max, records the
// original in the state dir before writing, and a restarted policy reverts it
// once usage has stayed below the original minus the margin for the hold time.
func TestRaiseLimitPersistsAndReverts(t *testing.T) {
	h, proc, cgRoot, _ := fakeHost(t, "java")
	state := t.TempDir()
	must := mustFor(t)
	must(os.WriteFile(filepath.Join(cgRoot, "ct/memory.current"), []byte("20900000\n"), 0o644))
	opts := DefaultOptions()
	opts.Ladder = []string{RaiseLimit}
	opts.RevertHold = 300 * time.Millisecond

	ctx, cancel := context.WithCancel(context.Background())
	p, err := New(ctx, Config{CG: h, Proc: proc, Options: opts, StateDir: state}, zerolog.Nop())
	must(err)
	got := make(chan []Action, 1)
	p.report = hooks{done: func(_ *watchdog.Incident, rs []Action) { got <- rs }}
	p.Open(&watchdog.Incident{ID: "i1", Verdict: watchdog.VerdictLoop, Cgroup: "/ct"})
	rs := <-got
	if len(rs) != 1 || rs[0].Name != RaiseLimit || !rs[0].Done || !rs[0].Verified {
		t.Fatalf("results %+v", rs)
	}
	// 20 MiB + 10% of it.
	if v := readTrim(t, filepath.Join(cgRoot, "ct/memory.max")); v != "23068672" {
		t.Fatalf("memory.max = %s, want 23068672", v)
	}
	var recs []raiseRecord
	b, err := os.ReadFile(filepath.Join(state, raisedFile))
	must(err)
	must(json.Unmarshal(b, &recs))
	if len(recs) != 1 || recs[0].Original != 20971520 || recs[0].Raised != 23068672 {
		t.Fatalf("state %s", b)
	}
	// Usage stays near the original: no revert. Stop "oomwatch".
	time.Sleep(500 * time.Millisecond)
	if v := readTrim(t, filepath.Join(cgRoot, "ct/memory.max")); v != "23068672" {
		t.Fatalf("reverted while usage was above original-margin: %s", v)
	}
	cancel()
	p.Wait()

	// Restart: the new policy resumes the revert from the state file.
	must(os.WriteFile(filepath.Join(cgRoot, "ct/memory.current"), []byte("1000000\n"), 0o644))
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	p2, err := New(ctx2, Config{CG: h, Proc: proc, Options: opts, StateDir: state}, zerolog.Nop())
	must(err)
	waitUntil(t, "revert", func() bool { return readTrim(t, filepath.Join(cgRoot, "ct/memory.max")) == "20971520" })
	waitUntil(t, "state emptied", func() bool { return p2.raised.len() == 0 })
	b, _ = os.ReadFile(filepath.Join(state, raisedFile))
	if strings.TrimSpace(string(b)) != "[]" {
		t.Fatalf("state after revert: %s", b)
	}
	cancel2()
	p2.Wait()
}

func TestRaiseLimitStopsAtCeiling(t *testing.T) {
	h, proc, cgRoot, _ := fakeHost(t, "java")
	opts := DefaultOptions()
	opts.Ladder = []string{RaiseLimit}
	opts.RaiseStep = Amount{Percent: 60}
	opts.RaiseCeiling = Amount{Percent: 150}
	opts.VerifyTimeout, opts.QuietFor = 200*time.Millisecond, 100*time.Millisecond
	keepLooping(t, cgRoot)
	rs := runLadder(t, opts, h, proc)
	if len(rs) != 1 || !rs[0].Done || rs[0].Verified {
		t.Fatalf("results %+v", rs)
	}
	if v := readTrim(t, filepath.Join(cgRoot, "ct/memory.max")); v != "31457280" {
		t.Fatalf("memory.max = %s, want the 150%% ceiling 31457280", v)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

// mustFor returns a check that fails t on an error.
func mustFor(t *testing.T) func(error) {
	return func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
}

// keepLooping makes the loop in fakeHost's /ct go on until the test ends:
// its memory.events keeps changing.
func keepLooping(t *testing.T, cgRoot string) {
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			_ = os.WriteFile(filepath.Join(cgRoot, "ct/memory.events"), []byte("oom "+itoa(100+i)+"\noom_kill 0\n"), 0o644)
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
}

// nextLimits: each 10% step of a common limit is rounded down to whole
// pages (the values real kernels store), memsw rises by the same amount
// the limit does and is never lowered, and the ceiling is never passed.
func TestNextLimits(t *testing.T) {
	if cgroupfs.PageSize() != 4096 {
		t.Skipf("page size %d: the kernel values below are for 4 KiB pages", cgroupfs.PageSize())
	}
	const M, G = 1 << 20, 1 << 30
	lim := func(mem, memsw uint64) cgroupfs.Limits {
		return cgroupfs.Limits{Mem: mem, Memsw: memsw, HasMemsw: true}
	}
	v2 := func(mem uint64) cgroupfs.Limits { return cgroupfs.Limits{Mem: mem} }
	step := func(orig uint64) uint64 { return Amount{Percent: 10}.Of(orig) }
	for _, tt := range []struct {
		name          string
		cur           cgroupfs.Limits
		step, ceiling uint64
		want          cgroupfs.Limits
	}{
		{"48M v2", v2(48 * M), step(48 * M), 96 * M, v2(55361536)},
		{"512M v2", v2(512 * M), step(512 * M), 1 * G, v2(590557184)},
		{"1G v2", v2(1 * G), step(1 * G), 2 * G, v2(1181114368)},
		{"48M second step", v2(55361536), step(48 * M), 96 * M, v2(60391424)},
		{"48M memsw 96M", lim(48*M, 96*M), step(48 * M), 96 * M, lim(55361536, 96*M+55361536-48*M)},
		{"memsw equal to the limit", lim(48*M, 48*M), step(48 * M), 96 * M, lim(55361536, 55361536)},
		// A raise of 256M keeps 1G of swap headroom: memsw is never lowered.
		{"1G memsw 2G by 256M", lim(1*G, 2*G), 256 * M, 2 * G, lim(1*G+256*M, 2*G+256*M)},
		{"memsw unlimited stays", lim(48*M, cgroupfs.Unlimited), step(48 * M), 96 * M, lim(55361536, cgroupfs.Unlimited)},
		{"capped at the ceiling", lim(93*M, 100*M), step(48 * M), 96 * M, lim(96*M, 103*M)},
		{"ceiling between pages", v2(95 * M), 4 * M, 96*M + 100, v2(96 * M)},
		{"step below a page", v2(48 * M), 10, 96 * M, v2(48*M + 4096)},
		{"at the ceiling", lim(96*M, 100*M), step(48 * M), 96 * M, lim(96*M, 100*M)},
	} {
		got := nextLimits(tt.cur, tt.step, cgroupfs.PageAlign(tt.ceiling))
		if got != tt.want {
			t.Errorf("%s: nextLimits(%+v, %d, %d) = %+v, want %+v", tt.name, tt.cur, tt.step, tt.ceiling, got, tt.want)
		}
		if got.Mem%4096 != 0 || got.HasMemsw && got.Memsw != cgroupfs.Unlimited && got.Memsw%4096 != 0 {
			t.Errorf("%s: %+v not whole pages", tt.name, got)
		}
		if got.HasMemsw && got.Memsw < tt.cur.Memsw {
			t.Errorf("%s: memsw lowered %d -> %d", tt.name, tt.cur.Memsw, got.Memsw)
		}
	}
}

// A ceiling that is not a whole number of pages is reached at the page
// below it, and the ladder stops there instead of trying once more and
// reporting a failed step.
func TestRaiseLimitStopsAtUnalignedCeiling(t *testing.T) {
	h, proc, cgRoot, _ := fakeHost(t, "java")
	opts := DefaultOptions()
	opts.Ladder = []string{RaiseLimit}
	opts.RaiseStep = Amount{Percent: 60}
	opts.RaiseCeiling = Amount{Bytes: 31457280 + 1000}
	opts.VerifyTimeout, opts.QuietFor = 200*time.Millisecond, 100*time.Millisecond
	keepLooping(t, cgRoot)
	rs := runLadder(t, opts, h, proc)
	if len(rs) != 1 || !rs[0].Done || rs[0].Error != "" {
		t.Fatalf("results %+v, want one step to the page below the ceiling", rs)
	}
	if v := readTrim(t, filepath.Join(cgRoot, "ct/memory.max")); v != "31457280" {
		t.Fatalf("memory.max = %s, want 31457280", v)
	}
}
