package watchdog

import (
	"testing"
	"time"
)

func TestDetectorSuspectsKillLessOOMsWithinTheWindow(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	type obs struct {
		at    time.Time
		c     Counters
		want  Signal
		ooms  uint64
		kills uint64
		reset bool
	}
	tests := []struct {
		name string
		obs  []obs
	}{
		{"first observation is only a baseline", []obs{
			{at: ms(0), c: Counters{OOM: 5000, Kills: 2}, want: Quiet},
		}},
		{"loop: OOMs climb, no kill", []obs{
			{at: ms(0), c: Counters{}, want: Quiet},
			{at: ms(10), c: Counters{OOM: 6}, want: Suspect, ooms: 6},
			{at: ms(20), c: Counters{OOM: 12}, want: Suspect, ooms: 12},
		}},
		{"normal OOM: kill in the window", []obs{
			{at: ms(0), c: Counters{}, want: Quiet},
			{at: ms(10), c: Counters{OOM: 1, Kills: 1}, want: Killed, ooms: 1, kills: 1},
		}},
		{"many OOMs with one kill is still the kernel coping", []obs{
			{at: ms(0), c: Counters{}, want: Quiet},
			{at: ms(10), c: Counters{OOM: 40, Kills: 1}, want: Killed, ooms: 40, kills: 1},
		}},
		{"isolated kill-less OOMs below the threshold are noise", []obs{
			{at: ms(0), c: Counters{}, want: Quiet},
			{at: ms(10), c: Counters{OOM: 2}, want: Quiet, ooms: 2},
		}},
		{"OOMs spread wider than the window never add up", []obs{
			{at: ms(0), c: Counters{}, want: Quiet},
			{at: ms(100), c: Counters{OOM: 1}, want: Quiet, ooms: 1},
			{at: ms(1200), c: Counters{OOM: 2}, want: Quiet, ooms: 1},
			{at: ms(2300), c: Counters{OOM: 3}, want: Quiet, ooms: 1},
		}},
		{"kill falls out of the window: loop again", []obs{
			{at: ms(0), c: Counters{}, want: Quiet},
			{at: ms(10), c: Counters{OOM: 1, Kills: 1}, want: Killed, ooms: 1, kills: 1},
			{at: ms(1500), c: Counters{OOM: 2, Kills: 1}, want: Quiet, ooms: 1},
			{at: ms(1510), c: Counters{OOM: 9, Kills: 1}, want: Suspect, ooms: 8},
		}},
		{"notification without counter change changes nothing", []obs{
			{at: ms(0), c: Counters{}, want: Quiet},
			{at: ms(10), c: Counters{OOM: 5}, want: Suspect, ooms: 5},
			{at: ms(20), c: Counters{OOM: 5}, want: Suspect, ooms: 5},
			{at: ms(2000), c: Counters{OOM: 5}, want: Quiet},
		}},
		{"counter reset: cgroup recreated under the same name", []obs{
			{at: ms(0), c: Counters{OOM: 100, Kills: 3}, want: Quiet},
			{at: ms(10), c: Counters{OOM: 0, Kills: 0}, want: Quiet, reset: true},
			{at: ms(20), c: Counters{OOM: 2}, want: Quiet, ooms: 2},
			{at: ms(30), c: Counters{OOM: 7}, want: Suspect, ooms: 7},
		}},
		{"time running backwards is clamped", []obs{
			{at: ms(1000), c: Counters{}, want: Quiet},
			{at: ms(900), c: Counters{OOM: 4}, want: Suspect, ooms: 4},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := NewDetector(DefaultParams)
			for i, o := range tt.obs {
				a := d.Observe(o.at, o.c)
				if a.Signal != o.want || a.OOMs != o.ooms || a.Kills != o.kills || a.Reset != o.reset {
					t.Fatalf("observation %d: got %+v, want signal %v ooms %d kills %d reset %v", i, a, o.want, o.ooms, o.kills, o.reset)
				}
			}
		})
	}
}

func TestDetectorAssessAgesOut(t *testing.T) {
	t0 := time.Unix(0, 0)
	d := NewDetector(DefaultParams)
	d.Observe(t0, Counters{})
	if a := d.Observe(t0.Add(10*time.Millisecond), Counters{OOM: 50}); a.Signal != Suspect {
		t.Fatalf("got %v, want suspect", a.Signal)
	}
	if a := d.Assess(t0.Add(500 * time.Millisecond)); a.Signal != Suspect {
		t.Fatalf("within the window: got %v, want suspect", a.Signal)
	}
	if a := d.Assess(t0.Add(1100 * time.Millisecond)); a.Signal != Quiet || a.OOMs != 0 {
		t.Fatalf("after the window: got %+v, want quiet", a)
	}
}

func TestDetectorBoundedMemory(t *testing.T) {
	t0 := time.Unix(0, 0)
	d := NewDetector(Params{Window: time.Hour, MinOOMs: 3})
	for i := 0; i < 10*maxSamples; i++ {
		d.Observe(t0.Add(time.Duration(i)*time.Millisecond), Counters{OOM: uint64(i)})
	}
	if len(d.samples) > maxSamples+1 {
		t.Fatalf("detector keeps %d samples, want at most %d", len(d.samples), maxSamples+1)
	}
}

func TestParamsValidate(t *testing.T) {
	for _, p := range []Params{{Window: 0, MinOOMs: 3}, {Window: time.Second, MinOOMs: 0}, {Window: 2 * time.Hour, MinOOMs: 1}} {
		if err := p.Validate(); err == nil {
			t.Errorf("%+v: want an error", p)
		}
	}
	if err := DefaultParams.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestClassifyLoopNeedsAnUnkillableTaskAndNoKillableOne(t *testing.T) {
	unk := Candidate{Unkillable: true}
	exiting := Candidate{Exiting: true}
	killable := Candidate{}
	tests := []struct {
		name  string
		cands []Candidate
		want  Verdict
	}{
		{"one unkillable task", []Candidate{unk}, VerdictLoop},
		{"unkillable and exiting", []Candidate{unk, exiting}, VerdictLoop},
		{"a killable task", []Candidate{unk, killable}, VerdictStalled},
		{"only exiting tasks", []Candidate{exiting}, VerdictStalled},
		{"no task", nil, VerdictStalled},
	}
	for _, tt := range tests {
		if got := Classify(tt.cands); got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
		}
	}
}
