package history

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/oomwatch/oomwatch/policy"
	"github.com/oomwatch/oomwatch/watchdog"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var t0 = time.Date(2026, 11, 27, 11, 31, 45, 0, time.UTC)

func incident(id string, started time.Time) *watchdog.Incident {
	adj := -17
	return &watchdog.Incident{
		ID: id, Verdict: watchdog.VerdictLoop, Cgroup: "/lxc.payload.web1", Version: 2, Started: started,
		Evidence: watchdog.Evidence{Window: time.Second, OOMs: 312, Kills: 0, Limit: 3000 << 20, Usage: 3000 << 20},
		Candidates: []watchdog.Candidate{
			{PID: 6016, Comm: "java", RSS: 2900 << 20, OOMScoreAdj: -1000, OOMAdj: &adj, Unkillable: true},
			{PID: 2, Comm: "a", RSS: 5}, {PID: 3, Comm: "b", RSS: 4}, {PID: 4, Comm: "c", RSS: 3}, {PID: 5, Comm: "d", RSS: 2}, {PID: 6, Comm: "e", RSS: 1},
		},
		Origin: &watchdog.Origin{PID: 901, Comm: "sshd", OOMScoreAdj: -1000, ParentPID: 1, ParentComm: "systemd"},
	}
}

func TestRoundTripAndMerge(t *testing.T) {
	dir := t.TempDir()
	j := Open(dir, Options{})
	defer j.Close()
	a := incident("aaaa", t0)
	b := incident("bbbb", t0.Add(time.Minute))
	recs := []Record{
		Start("v1", 10),
		Opened(a, Names{Container: "web1", Unit: "lxc@web1.service"}, []string{"Out of memory and no killable processes..."}),
		Opened(b, Names{}, nil),
		Step(a, policy.Action{Name: "reset-adj", PID: 6016, Comm: "java", Done: true, Verified: true, Detail: "oom_score_adj -1000 → 0"}),
		LadderDone(a, policy.OutcomeResolved),
		Resolved(a, "no OOM for 2s", []string{"Out of memory and no killable processes...", "Memory cgroup out of memory: Killed process 6016 (java)"}),
	}
	for _, r := range recs {
		if err := j.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	st, err := os.Stat(j.Path())
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("journal mode: %v %v", st.Mode(), err)
	}
	incs, skipped, err := ReadCount(dir)
	if err != nil || skipped != 0 {
		t.Fatal(err, skipped)
	}
	if len(incs) != 2 || incs[0].ID != "bbbb" || incs[1].ID != "aaaa" {
		t.Fatalf("order: %+v", incs)
	}
	ia := incs[1]
	if ia.State != StateResolved || ia.Why != "no OOM for 2s" || ia.Outcome != "resolved" || len(ia.Actions) != 1 ||
		ia.Container != "web1" || ia.OOMEvents != 312 || ia.Origin == nil || ia.Origin.Comm != "sshd" ||
		len(ia.Candidates) != MaxCandidates || ia.Candidates[0].OOMScoreAdj != -1000 || len(ia.KernelLog) != 2 || !ia.Started.Equal(t0) {
		t.Errorf("merged: %+v", ia)
	}
	if incs[0].State != StateOpen {
		t.Errorf("b: %+v", incs[0])
	}
}

func TestRestartAbandonsOpen(t *testing.T) {
	dir := t.TempDir()
	j := Open(dir, Options{})
	defer j.Close()
	a := incident("aaaa", t0)
	r := Opened(a, Names{}, nil)
	r.Time = t0
	st := Start("v2", 11)
	st.Time = t0.Add(time.Hour)
	for _, r := range []Record{r, st} {
		if err := j.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	incs, err := Read(dir)
	if err != nil || len(incs) != 1 || incs[0].State != StateAbandoned {
		t.Fatalf("%+v %v", incs, err)
	}
}

func TestTornLastLine(t *testing.T) {
	dir := t.TempDir()
	j := Open(dir, Options{})
	if err := j.Append(Opened(incident("aaaa", t0), Names{}, nil)); err != nil {
		t.Fatal(err)
	}
	j.Close()
	// A crash mid-write: half a record, no newline.
	f, err := os.OpenFile(filepath.Join(dir, FileName), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"type":"opened","id":"torn","cgr`)
	f.Close()
	incs, skipped, err := ReadCount(dir)
	if err != nil || len(incs) != 1 || skipped != 1 {
		t.Fatalf("after tear: %d incidents, %d skipped, %v", len(incs), skipped, err)
	}
	// The next writer ends the torn line first: its own record survives.
	j2 := Open(dir, Options{})
	defer j2.Close()
	if err := j2.Append(Opened(incident("bbbb", t0.Add(time.Second)), Names{}, nil)); err != nil {
		t.Fatal(err)
	}
	incs, skipped, err = ReadCount(dir)
	if err != nil || len(incs) != 2 || incs[0].ID != "bbbb" || skipped != 1 {
		t.Fatalf("after repair: %+v, %d skipped, %v", incs, skipped, err)
	}
	// Garbage and overlong lines are skipped too.
	f, _ = os.OpenFile(filepath.Join(dir, FileName), os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString("not json\n" + strings.Repeat("x", 200<<10) + "\n{}\n")
	f.Close()
	incs, skipped, err = ReadCount(dir)
	if err != nil || len(incs) != 2 || skipped != 4 {
		t.Fatalf("garbage: %d incidents, %d skipped, %v", len(incs), skipped, err)
	}
}

func TestRotationBoundsFileSizeAndCount(t *testing.T) {
	dir := t.TempDir()
	j := Open(dir, Options{MaxSize: 4 << 10, Keep: 2})
	defer j.Close()
	for i := range 60 {
		id := "inc" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		if err := j.Append(Opened(incident(id, t0.Add(time.Duration(i)*time.Second)), Names{}, nil)); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{FileName, FileName + ".1", FileName + ".2"} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() > 4<<10 {
			t.Errorf("%s is %d bytes, over the bound", name, st.Size())
		}
	}
	if _, err := os.Stat(filepath.Join(dir, FileName+".3")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf(".3 kept: %v", err)
	}
	incs, skipped, err := ReadCount(dir)
	if err != nil || skipped != 0 || len(incs) == 0 || len(incs) >= 60 {
		t.Fatalf("%d incidents, %d skipped, %v", len(incs), skipped, err)
	}
	if !incs[0].Started.Equal(t0.Add(59 * time.Second)) {
		t.Errorf("newest first: %v", incs[0].Started)
	}
	// The journal reopened after a restart continues the same file.
	j.Close()
	j2 := Open(dir, Options{MaxSize: 4 << 10, Keep: 2})
	defer j2.Close()
	if err := j2.Append(Start("v", 1)); err != nil {
		t.Fatal(err)
	}
}

// Root ignores mode bits, so a read-only directory cannot be made with chmod
// in this test: the state "directory" is a regular file instead, which makes
// MkdirAll (and so every Append) fail the way EROFS or ENOSPC would.
func TestUnwritableStateDir(t *testing.T) {
	file := filepath.Join(t.TempDir(), "state")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	j := Open(file, Options{})
	defer j.Close()
	err := j.Append(Start("v", 1))
	if err == nil {
		t.Fatal("Append into a file-as-directory succeeded")
	}
	if err2 := j.Append(Start("v", 1)); err2 == nil {
		t.Fatal("second Append succeeded")
	}
	incs, err := Read(file)
	if err == nil && len(incs) != 0 {
		t.Fatalf("read: %v %v", incs, err)
	}
	// Missing directory: no incidents, no error.
	if incs, err := Read(filepath.Join(t.TempDir(), "none")); err != nil || len(incs) != 0 {
		t.Fatalf("missing dir: %v %v", incs, err)
	}
}

func TestConcurrentAppend(t *testing.T) {
	dir := t.TempDir()
	j := Open(dir, Options{MaxSize: 16 << 10})
	defer j.Close()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 25 {
				inc := incident(string(rune('a'+g))+string(rune('a'+i)), t0)
				if err := j.Append(Step(inc, policy.Action{Name: "freeze", Done: true, Verified: true})); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if _, skipped, err := ReadCount(dir); err != nil || skipped != 0 {
		t.Fatalf("%d skipped, %v", skipped, err)
	}
}

func TestEncodeTrims(t *testing.T) {
	inc := incident("big", t0)
	var log []string
	for range 2000 {
		log = append(log, strings.Repeat("k", 100))
	}
	b, err := encode(Opened(inc, Names{}, log))
	if err != nil || len(b) >= MaxRecord {
		t.Fatalf("%d bytes, %v", len(b), err)
	}
}
