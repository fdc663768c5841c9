package history

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/oomwatch/oomwatch/policy"
)

// The journal is read back by `oomwatch incidents` after crashes, full disks
// and hand edits: any bytes give incidents or skipped lines, never a panic,
// an error, an incident without an id or an unknown state. Seeded with a
// journal the writer itself produced: a daemon start, an incident opened,
// acted on and resolved with kernel lines, one left open, and a torn tail.
func FuzzRead(f *testing.F) {
	dir := f.TempDir()
	j := Open(dir, Options{})
	a, b := incident("aaaa", t0), incident("bbbb", t0.Add(time.Minute))
	kernel := []string{"2026-11-27T11:31:45.000001Z java invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=-1000"}
	for _, r := range []Record{
		Start("v1.2.3", 4242),
		Opened(a, Names{Container: "web1", Unit: "init.scope"}, kernel),
		Step(a, policy.Action{Name: "reset-adj", PID: 6016, Comm: "java", Done: true, Verified: true}),
		LadderDone(a, policy.OutcomeResolved),
		Resolved(a, "no OOM for 2s", kernel),
		Opened(b, Names{}, nil),
		Start("v1.2.4", 4343),
	} {
		if err := j.Append(r); err != nil {
			f.Fatal(err)
		}
	}
	if err := j.Close(); err != nil {
		f.Fatal(err)
	}
	real, err := os.ReadFile(filepath.Join(dir, FileName))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(real)
	f.Add(append(bytes.Clone(real), real[:len(real)/3]...)) // torn last line
	f.Add([]byte("{\"type\":\"resolved\",\"id\":\"x\"}\n\n{\"type\":\"\"}\nnot json\n"))
	dir = f.TempDir() // one per fuzz process: its inputs run one at a time
	f.Fuzz(func(t *testing.T, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, FileName), b, 0o600); err != nil {
			t.Fatal(err)
		}
		incs, skipped, err := ReadCount(dir)
		if err != nil {
			t.Fatalf("ReadCount: %v", err)
		}
		if lines := bytes.Count(b, []byte("\n")) + 1; skipped > lines || len(incs) > lines {
			t.Fatalf("%d incidents and %d skipped from %d lines", len(incs), skipped, lines)
		}
		ids := map[string]bool{}
		for _, inc := range incs {
			if inc.ID == "" || ids[inc.ID] {
				t.Fatalf("incident id %q empty or twice", inc.ID)
			}
			ids[inc.ID] = true
			switch inc.State {
			case StateOpen, StateResolved, StateAbandoned:
			default:
				t.Fatalf("incident %q in state %q", inc.ID, inc.State)
			}
		}
		for i := 1; i < len(incs); i++ {
			if incs[i].Started.After(incs[i-1].Started) {
				t.Fatalf("incident %d started after %d: not newest first", i, i-1)
			}
		}
	})
}
