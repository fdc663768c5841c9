package alert

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/oomwatch/oomwatch/internal/cgroupfs"
	"github.com/oomwatch/oomwatch/policy"
	"github.com/oomwatch/oomwatch/watchdog"
)

// checkDocument validates a decoded document the way a strict consumer
// would: every field present, enums in range, timestamps RFC 3339 UTC.
func checkDocument(t *testing.T, raw []byte) Document {
	t.Helper()
	if !json.Valid(raw) || !utf8.Valid(raw) {
		t.Fatalf("not valid UTF-8 JSON: %q", raw)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"schema", "event_id", "incident_id", "type", "status", "severity", "host", "cgroup", "container", "unit",
		"limit_bytes", "usage_bytes", "oom_events", "oom_kills", "window_seconds", "verdict", "candidates", "candidates_total", "origin", "actions", "started_at", "sent_at"} {
		if _, ok := m[k]; !ok {
			t.Errorf("field %q missing", k)
		}
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	var d Document
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("decode strictly: %v", err)
	}
	if d.Schema != "oomwatch.alert/v1" {
		t.Errorf("schema %q", d.Schema)
	}
	if d.EventID == "" || d.IncidentID == "" {
		t.Errorf("event_id %q incident_id %q: want both", d.EventID, d.IncidentID)
	}
	if !validTypes[d.Type] {
		t.Errorf("type %q not in the enum", d.Type)
	}
	// Every type but resolved is firing, or resolved when it came after
	// its incident's resolution.
	if d.Status != StatusResolved && (d.Status != StatusFiring || d.Type == TypeResolved) {
		t.Errorf("type %s: status %q", d.Type, d.Status)
	}
	if (d.Status == StatusResolved) != (d.Severity == SeverityInfo) {
		t.Errorf("status %s with severity %s: info is the severity of resolved documents", d.Status, d.Severity)
	}
	switch d.Severity {
	case "critical", "warning", "info":
	default:
		t.Errorf("severity %q not in the enum", d.Severity)
	}
	for _, ts := range []string{d.StartedAt, d.SentAt} {
		tt, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil || !strings.HasSuffix(ts, "Z") || tt.IsZero() {
			t.Errorf("timestamp %q: want RFC 3339 UTC (%v)", ts, err)
		}
	}
	if len(d.Candidates) > MaxCandidates {
		t.Errorf("%d candidates, cap %d", len(d.Candidates), MaxCandidates)
	}
	return d
}

func TestDocumentFields(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 5, time.FixedZone("CET", 3600))
	inc := testIncident("inc-1")
	for i := 0; i < 30; i++ {
		inc.Candidates = append(inc.Candidates, watchdog.Candidate{PID: 7000 + i, Comm: "w", OOMScoreAdj: -1000, Unkillable: true})
	}
	doc := NewDocument(TypeDetected, inc, Names{Container: "web1", Unit: "u.service"}, nil, "host-1", now)
	raw, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	d := checkDocument(t, raw)
	if d.SentAt != "2026-11-27T11:00:00.000000005Z" {
		t.Errorf("sent_at %q: want UTC RFC3339Nano", d.SentAt)
	}
	if d.StartedAt != "2026-11-27T10:00:00.000000123Z" {
		t.Errorf("started_at %q", d.StartedAt)
	}
	if len(d.Candidates) != 20 || d.CandidatesTotal != 32 {
		t.Errorf("candidates %d of %d, want 20 of 32", len(d.Candidates), d.CandidatesTotal)
	}
	if d.Candidates[0].PID != 6016 || d.Candidates[0].Adj != -1000 || d.Candidates[0].RSS != 2900<<20 || !d.Candidates[0].Unkillable {
		t.Errorf("candidate 0: %+v", d.Candidates[0])
	}
	if d.LimitBytes != 3000<<20 || d.OOMEvents != 42 || d.OOMKills != 0 || d.WindowSeconds != 1 || d.Verdict != "loop" {
		t.Errorf("evidence: %+v", d)
	}
	if d.Origin == nil || d.Origin.PID != 900 || d.Origin.Comm != "sshd" || d.Origin.ParentPID != 1 {
		t.Errorf("origin: %+v", d.Origin)
	}
	if d.Actions == nil || len(d.Actions) != 0 {
		t.Errorf("actions: %v, want [] (never null)", d.Actions)
	}
	if d.Container != "web1" || d.Unit != "u.service" || d.Host != "host-1" || d.IncidentID != "inc-1" {
		t.Errorf("names: %+v", d)
	}
	if d2 := NewDocument(TypeDetected, inc, Names{}, nil, "h", now); d2.EventID == d.EventID {
		t.Error("event_id repeats")
	}

	inc.Evidence.Limit = cgroupfs.Unlimited
	if d := NewDocument(TypeDetected, inc, Names{}, nil, "h", now); d.LimitBytes != 0 {
		t.Errorf("unlimited: limit_bytes %d, want 0", d.LimitBytes)
	}
}

func TestDocumentSeverityAndStatus(t *testing.T) {
	for _, tc := range []struct {
		typ      string
		verdict  watchdog.Verdict
		severity string
		status   string
	}{
		{TypeDetected, watchdog.VerdictLoop, "critical", "firing"},
		{TypeRemediated, watchdog.VerdictLoop, "critical", "firing"},
		{TypeRemediationFailed, watchdog.VerdictLoop, "critical", "firing"},
		{TypeDetected, watchdog.VerdictStalled, "warning", "firing"},
		{TypeDetected, watchdog.VerdictPaused, "warning", "firing"},
		{TypeResolved, watchdog.VerdictLoop, "info", "resolved"},
		{TypeResolved, watchdog.VerdictPaused, "info", "resolved"},
	} {
		inc := testIncident("i")
		inc.Verdict = tc.verdict
		d := NewDocument(tc.typ, inc, Names{}, nil, "h", time.Now())
		if d.Severity != tc.severity || d.Status != tc.status {
			t.Errorf("%s/%s: severity %s status %s, want %s %s", tc.typ, tc.verdict, d.Severity, d.Status, tc.severity, tc.status)
		}
	}
}

func TestDocumentHostileStrings(t *testing.T) {
	doc := testDoc(TypeDetected, "inc-hostile")
	raw, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	d := checkDocument(t, raw)
	if strings.Contains(string(raw), "\n") {
		t.Error("raw newline in JSON: must be escaped")
	}
	// Invalid bytes are kept visibly as \xNN text, the rest verbatim.
	wantComm := "a\"\n$(rm -rf /)`id`\\xff\\xfe"
	if d.Candidates[1].Comm != wantComm {
		t.Errorf("comm %q, want %q", d.Candidates[1].Comm, wantComm)
	}
	if d.Origin.ParentComm != wantComm {
		t.Errorf("origin parent comm %q", d.Origin.ParentComm)
	}
	if want := "/lxc.payload.web1/evil\n\"$(reboot)\"\\xc3"; d.Cgroup != want {
		t.Errorf("cgroup %q, want %q", d.Cgroup, want)
	}
	for _, s := range []string{doc.summary(), doc.description()} {
		if strings.ContainsAny(s, "\n\r") || !utf8.ValidString(s) {
			t.Errorf("human text not one valid line: %q", s)
		}
	}

	long := NewDocument(TypeDetected, &watchdog.Incident{ID: "x", Cgroup: "/" + strings.Repeat("é", 3000),
		Candidates: []watchdog.Candidate{{Comm: strings.Repeat("\xff", 100)}}}, Names{}, nil, "h", time.Now())
	if len(long.Cgroup) > 4096 || !utf8.ValidString(long.Cgroup) {
		t.Errorf("cgroup: %d bytes, valid %t; want ≤ 4096 valid", len(long.Cgroup), utf8.ValidString(long.Cgroup))
	}
	if c := long.Candidates[0].Comm; len(c) > 64 || c != strings.Repeat(`\xff`, 16) {
		t.Errorf("comm %q: want 16 × \\xff (64 bytes)", c)
	}
}

func TestCleanEscapesBadBytesAndNeverSplitsARune(t *testing.T) {
	for _, tc := range []struct {
		in   string
		max  int
		want string
	}{
		{"java", 64, "java"},
		{"a\x00b", 64, `a\x00b`},
		{"\xffok", 64, `\xffok`},
		{"ééé", 5, "éé"}, // never cut inside a rune
		{"ab\xff", 4, "ab"},
		{"", 4, ""},
	} {
		if got := clean(tc.in, tc.max); got != tc.want {
			t.Errorf("clean(%q, %d) = %q, want %q", tc.in, tc.max, got, tc.want)
		}
	}
}

func ExampleNewDocument() {
	inc := testIncident("4f1c2a9e-0d7b-4c51-9a57-2b0c9e6f3d10")
	inc.Cgroup = "/lxc.payload.web1"
	inc.Candidates = inc.Candidates[:1]
	inc.Origin.ParentComm = "systemd"
	doc := NewDocument(TypeRemediated, inc, Names{Container: "web1"},
		[]policy.Action{{Name: "reset-adj", PID: 6016, Comm: "java", Done: true, Verified: true, Detail: "oom_score_adj -1000 -> 0"}},
		"lxc-host-1", time.Date(2026, 11, 27, 10, 0, 1, 0, time.UTC))
	doc.EventID = "9b2e7c1d-3f4a-4e8b-8c6d-1a2b3c4d5e6f"
	b, _ := json.MarshalIndent(doc, "", "  ")
	fmt.Println(string(b))
	// Output:
	// {
	//   "schema": "oomwatch.alert/v1",
	//   "event_id": "9b2e7c1d-3f4a-4e8b-8c6d-1a2b3c4d5e6f",
	//   "incident_id": "4f1c2a9e-0d7b-4c51-9a57-2b0c9e6f3d10",
	//   "type": "remediated",
	//   "status": "firing",
	//   "severity": "critical",
	//   "host": "lxc-host-1",
	//   "cgroup": "/lxc.payload.web1",
	//   "container": "web1",
	//   "container_name": "",
	//   "unit": "",
	//   "limit_bytes": 3145728000,
	//   "usage_bytes": 3145723904,
	//   "oom_events": 42,
	//   "oom_kills": 0,
	//   "window_seconds": 1,
	//   "verdict": "loop",
	//   "candidates": [
	//     {
	//       "pid": 6016,
	//       "comm": "java",
	//       "adj": -1000,
	//       "rss_bytes": 3040870400,
	//       "unkillable": true
	//     }
	//   ],
	//   "candidates_total": 1,
	//   "origin": {
	//     "pid": 900,
	//     "comm": "sshd",
	//     "oom_score_adj": -1000,
	//     "parent_pid": 1,
	//     "parent_comm": "systemd",
	//     "parent_oom_score_adj": 0,
	//     "depth": 0
	//   },
	//   "actions": [
	//     {
	//       "action": "reset-adj",
	//       "pid": 6016,
	//       "comm": "java",
	//       "done": true,
	//       "verified": true,
	//       "detail": "oom_score_adj -1000 -\u003e 0"
	//     }
	//   ],
	//   "started_at": "2026-11-27T10:00:00.000000123Z",
	//   "sent_at": "2026-11-27T10:00:01Z"
	// }
}
