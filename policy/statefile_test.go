package policy

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/oomwatch/oomwatch/test/testhost"
	"github.com/oomwatch/oomwatch/watchdog"
)

// asideFiles returns the contents of file's .corrupt-* copies.
func asideFiles(t *testing.T, file string) []string {
	t.Helper()
	names, err := filepath.Glob(file + ".corrupt-*")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, n := range names {
		out = append(out, readTrim(t, n))
	}
	return out
}

// A raised.json damaged after its first record (a record of the wrong
// shape, then cut short): the file is kept aside as it was, the damage is
// logged, the first record is still reverted, and no later save loses the
// copy.
func TestCorruptRaisedFileKeptAside(t *testing.T) {
	h, proc, cgRoot, _ := fakeHost(t, "java")
	state := t.TempDir()
	must := mustFor(t)
	must(os.WriteFile(filepath.Join(cgRoot, "ct/memory.max"), []byte("23068672\n"), 0o644))
	must(os.WriteFile(filepath.Join(cgRoot, "ct/memory.current"), []byte("1000000\n"), 0o644))
	damaged := `[{"cgroup":"/ct","cgroup_version":2,"original_limit":20971520,"raised_to":23068672,"raised_from":20971520,` +
		`"revert_margin":2097152,"revert_hold_ns":300000000,"incident":"i1"},` +
		`{"cgroup":"/other","cgroup_version":2,"original_limit":"lots"},` +
		`{"cgroup":"/third","cgroup_version":2,"orig`
	file := filepath.Join(state, raisedFile)
	must(os.WriteFile(file, []byte(damaged), 0o600))

	var logs testhost.SyncBuf
	opts := DefaultOptions()
	opts.Ladder = []string{RaiseLimit}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p, err := New(ctx, Config{CG: h, Proc: proc, Options: opts, StateDir: state}, zerolog.New(&logs))
	must(err)
	if a := asideFiles(t, file); len(a) != 1 || a[0] != damaged {
		t.Fatalf("kept aside: %q, want the damaged file as it was", a)
	}
	for _, want := range []string{`"event":"state_corrupt"`, `"recovered":1`, `"kept_as":"` + file + `.corrupt-`, "record 1", "unexpected EOF"} {
		if !strings.Contains(logs.String(), want) {
			t.Fatalf("log lacks %s:\n%s", want, logs.String())
		}
	}
	var recs []raiseRecord
	must(json.Unmarshal([]byte(readTrim(t, file)), &recs))
	if len(recs) != 1 || recs[0].Cgroup != "/ct" {
		t.Fatalf("%s rewritten as %+v, want the recovered record", file, recs)
	}
	waitUntil(t, "the recovered raise reverted", func() bool {
		return p.raised.len() == 0 && readTrim(t, filepath.Join(cgRoot, "ct/memory.max")) == "20971520"
	})
	if readTrim(t, file) != "[]" {
		t.Fatalf("%s after the revert: %s", file, readTrim(t, file))
	}
	if a := asideFiles(t, file); len(a) != 1 || a[0] != damaged {
		t.Fatalf("after a save the copy is %q, want it kept", a)
	}
	cancel()
	p.Wait()
}

// A frozen.json that is not JSON: kept aside and logged at start; the next
// freeze records its cgroup in a fresh file and the copy stays.
func TestCorruptFrozenFileKeptAside(t *testing.T) {
	h, proc, _, _ := fakeHost(t, "java")
	state := t.TempDir()
	file := filepath.Join(state, frozenFile)
	const damaged = "\x00\x00\x00 not json"
	if err := os.WriteFile(file, []byte(damaged), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs testhost.SyncBuf
	opts := DefaultOptions()
	opts.Ladder = []string{Freeze}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p, err := New(ctx, Config{CG: h, Proc: proc, Options: opts, StateDir: state}, zerolog.New(&logs))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), `"event":"state_corrupt"`) || !strings.Contains(logs.String(), frozenFile+".corrupt-") {
		t.Fatalf("damage not logged:\n%s", logs.String())
	}
	got := make(chan []Action, 1)
	p.report = hooks{done: func(_ *watchdog.Incident, rs []Action) { got <- rs }}
	p.Open(&watchdog.Incident{ID: "f", Verdict: watchdog.VerdictLoop, Cgroup: "/ct", Version: 2})
	if rs := <-got; len(rs) != 1 || !rs[0].Verified {
		t.Fatalf("freeze: %+v", rs)
	}
	var recs []frozenRecord
	if err := json.Unmarshal([]byte(readTrim(t, file)), &recs); err != nil || len(recs) != 1 || recs[0].Cgroup != "/ct" {
		t.Fatalf("%s = %s (%v), want /ct recorded", file, readTrim(t, file), err)
	}
	if a := asideFiles(t, file); len(a) != 1 || a[0] != strings.TrimSpace(damaged) {
		t.Fatalf("kept aside: %q, want the damaged file as it was", a)
	}
	cancel()
	p.Wait()
}

func TestDecodeRecords(t *testing.T) {
	rec := `{"cgroup":"/a","cgroup_version":2,"original_limit":1,"raised_to":2,"revert_hold_ns":1}`
	for _, tt := range []struct {
		name, in  string
		recovered int
		damage    string
	}{
		{"whole", "[" + rec + "," + rec + "]", 2, ""},
		{"empty array", "[]", 0, ""},
		{"empty file", "", 0, "want a JSON array"},
		{"null", "null", 0, "want a JSON array"},
		{"cut short", "[" + rec + `,{"cgroup":`, 1, "record 1"},
		{"unterminated", "[" + rec, 1, "unterminated array"},
		{"wrong type, then more", "[" + rec + `,{"raised_to":"x"},` + rec + "]", 2, "record 1"},
		{"refused by check", `[{"cgroup":"/","cgroup_version":2,"original_limit":1,"raised_to":2,"revert_hold_ns":1},` + rec + "]", 1, "not a cgroup path"},
		{"raised below the original", `[{"cgroup":"/a","cgroup_version":2,"original_limit":5,"raised_to":2,"revert_hold_ns":1}]`, 0, "raised to 2"},
		{"trailing data", "[" + rec + "] x", 1, "data after the array"},
	} {
		recs, err := decodeRecords([]byte(tt.in), raiseRecord.check)
		if len(recs) != tt.recovered {
			t.Errorf("%s: recovered %d, want %d", tt.name, len(recs), tt.recovered)
		}
		if tt.damage == "" && err != nil || tt.damage != "" && (err == nil || !strings.Contains(err.Error(), tt.damage)) {
			t.Errorf("%s: error %v, want %q", tt.name, err, tt.damage)
		}
	}
}
