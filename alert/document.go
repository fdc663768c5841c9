// Package alert tells humans about OOM incidents: one versioned JSON
// document per event, delivered to any number of sinks (exec hooks,
// webhooks, Alertmanager, PagerDuty) without ever blocking detection or
// remediation.
//
// Delivery is at-least-once per sink within its dedup and rate-limit rules:
// every document is spooled to disk before it is delivered and removed once
// it is, so a restart or an endpoint outage loses nothing, and a crash
// between delivery and removal may deliver one document twice (receivers
// can deduplicate on event_id, which is also the Standard Webhooks
// webhook-id).
//
// A sink keeps each incident's documents in its lifecycle: nothing firing
// is delivered or re-sent after the incident's resolution (see
// incState.order).
//
// Risk documents (type risk, sent only to sinks with risk: true) warn
// before the first OOM: a cgroup where the next OOM would loop, because it
// has a memory limit and every task in it is unkillable. One firing
// document when the daemon's check finds it, one resolved document (type
// risk, status resolved) when the check no longer does; both are severity
// warning while firing. Their incident_id is derived from host and cgroup
// ("risk-" and 32 hex digits), the same across restarts, so Alertmanager
// and PagerDuty fold a re-announcement after a restart into the open alert;
// started_at is when the check first found it, and each such episode has
// its own lifecycle (a cgroup at risk again after its resolution fires
// again). verdict is empty, candidates is empty and candidates_total is the
// number of tasks, origin is the task the protection came from, and the
// OOM counters and window are 0: no OOM has happened yet.
//
// The package depends on watchdog and policy for the incident's types
// only (the incident, its origin, the ladder's actions); the report fan-out
// builds the documents and hands them to the Dispatcher.
package alert

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/oomwatch/oomwatch/internal/cgnames"
	"github.com/oomwatch/oomwatch/internal/cgroupfs"
	"github.com/oomwatch/oomwatch/policy"
	"github.com/oomwatch/oomwatch/watchdog"
)

// Schema is the version string every document carries. A consumer that sees
// another value must not assume the fields below.
const Schema = "oomwatch.alert/v1"

// Document types.
const (
	TypeDetected          = "detected"           // an incident was recognised
	TypeRemediated        = "remediated"         // the ladder ended the loop (or contained it)
	TypeRemediationFailed = "remediation-failed" // the ladder ran and the loop goes on
	TypeResolved          = "resolved"           // no more OOMs, or the cgroup is gone
	TypeRisk              = "risk"               // the next OOM here would loop (firing), or no longer would (resolved)
)

// Statuses and severities.
const (
	StatusFiring   = "firing"
	StatusResolved = "resolved"

	SeverityCritical = "critical" // verdict loop
	SeverityWarning  = "warning"  // verdict stalled or paused; risk
	SeverityInfo     = "info"     // resolved
)

// Bounds on what a document carries. Process and cgroup names are chosen by
// whoever runs the workload: they are capped so a hostile name cannot bloat
// every alert.
const (
	MaxCandidates = 20
	MaxActions    = 32
	maxComm       = 64
	maxCgroup     = 4096
	maxName       = 256 // host, container, unit
	maxText       = 1024
)

// Names are what cmd found out about the cgroup: the container and systemd
// unit it belongs to, empty when unknown.
type Names struct {
	Container     string
	ContainerName string // the runtime's name of a container known by its id
	Unit          string
}

// Candidate is one task of the incident's subtree, as schema v1 names its
// fields (adj for oom_score_adj): the trimmed, capped view of a
// watchdog.Candidate that every document can afford.
type Candidate struct {
	PID        int    `json:"pid"`
	Comm       string `json:"comm"`
	Adj        int    `json:"adj"` // oom_score_adj
	RSS        uint64 `json:"rss_bytes"`
	Unkillable bool   `json:"unkillable"`
}

// Document is the one alert format: the body of webhooks, the stdin of
// exec hooks and PagerDuty's custom_details. Fields are only ever added
// within a schema version.
type Document struct {
	Schema          string           `json:"schema"`
	EventID         string           `json:"event_id"`
	IncidentID      string           `json:"incident_id"`
	Type            string           `json:"type"`
	Status          string           `json:"status"`
	Severity        string           `json:"severity"`
	Host            string           `json:"host"`
	Cgroup          string           `json:"cgroup"`
	Container       string           `json:"container"`
	ContainerName   string           `json:"container_name"` // Docker, Podman: the name docker ps shows; "" when unknown
	Unit            string           `json:"unit"`
	LimitBytes      uint64           `json:"limit_bytes"` // 0: no limit of its own
	UsageBytes      uint64           `json:"usage_bytes"`
	OOMEvents       uint64           `json:"oom_events"`
	OOMKills        uint64           `json:"oom_kills"`
	WindowSeconds   float64          `json:"window_seconds"`
	Verdict         string           `json:"verdict"`
	Candidates      []Candidate      `json:"candidates"`
	CandidatesTotal int              `json:"candidates_total"` // before the cap of MaxCandidates
	Origin          *watchdog.Origin `json:"origin"`
	Actions         []policy.Action  `json:"actions"`
	StartedAt       string           `json:"started_at"`
	SentAt          string           `json:"sent_at"`
}

// NewDocument builds the document for one event of inc. typ is one of the
// Type constants; now is the event time. Every string that comes from a
// process or a cgroup is made valid UTF-8 (invalid bytes become the text
// \xNN) and capped; JSON encoding escapes the rest, so quotes, newlines,
// $(...) and backticks reach every sink as inert data.
func NewDocument(typ string, inc *watchdog.Incident, names Names, actions []policy.Action, host string, now time.Time) Document {
	d := Document{
		Schema:        Schema,
		EventID:       newID(),
		Type:          typ,
		Status:        StatusFiring,
		Host:          clean(host, maxName),
		Container:     clean(names.Container, maxName),
		ContainerName: clean(names.ContainerName, maxName),
		Unit:          clean(names.Unit, maxName),
		Candidates:    []Candidate{},
		Actions:       []policy.Action{},
		SentAt:        now.UTC().Format(time.RFC3339Nano),
	}
	if typ == TypeResolved {
		d.Status = StatusResolved
	}
	if inc != nil {
		d.IncidentID = clean(inc.ID, maxName)
		d.Cgroup = clean(inc.Cgroup, maxCgroup)
		d.Verdict = string(inc.Verdict)
		if inc.Evidence.Limit != cgroupfs.Unlimited {
			d.LimitBytes = inc.Evidence.Limit
		}
		d.UsageBytes = inc.Evidence.Usage
		d.OOMEvents = inc.Evidence.OOMs
		d.OOMKills = inc.Evidence.Kills
		d.WindowSeconds = inc.Evidence.Window.Seconds()
		if !inc.Started.IsZero() {
			d.StartedAt = inc.Started.UTC().Format(time.RFC3339Nano)
		}
		d.CandidatesTotal = len(inc.Candidates)
		for i, c := range inc.Candidates {
			if i == MaxCandidates {
				break
			}
			d.Candidates = append(d.Candidates, Candidate{PID: c.PID, Comm: clean(c.Comm, maxComm), Adj: c.OOMScoreAdj, RSS: c.RSS, Unkillable: c.Unkillable})
		}
		d.Origin = cleanOrigin(inc.Origin)
	}
	if d.StartedAt == "" {
		d.StartedAt = d.SentAt
	}
	d.Severity = severity(d.Type, d.Verdict)
	for i, a := range actions {
		if i == MaxActions {
			break
		}
		d.Actions = append(d.Actions, policy.Action{
			Name: clean(a.Name, maxComm), PID: a.PID, Comm: clean(a.Comm, maxComm),
			Done: a.Done, Verified: a.Verified, Detail: clean(a.Detail, maxText), Error: clean(a.Error, maxText), Took: a.Took,
		})
	}
	return d
}

// NewRiskDocument builds the document of a would-loop risk: firing when the
// check found r, resolved when it no longer does. now is the event time.
func NewRiskDocument(r watchdog.Risk, resolved bool, host string, now time.Time) Document {
	d := Document{
		Schema:          Schema,
		EventID:         newID(),
		IncidentID:      riskID(host, r.Cgroup),
		Type:            TypeRisk,
		Status:          StatusFiring,
		Severity:        SeverityWarning,
		Host:            clean(host, maxName),
		Cgroup:          clean(r.Cgroup, maxCgroup),
		Container:       clean(r.Container, maxName),
		Unit:            clean(r.Unit, maxName),
		UsageBytes:      r.Usage,
		Candidates:      []Candidate{},
		CandidatesTotal: r.Tasks,
		Actions:         []policy.Action{},
		SentAt:          now.UTC().Format(time.RFC3339Nano),
	}
	if r.Limit != cgroupfs.Unlimited {
		d.LimitBytes = r.Limit
	}
	if resolved {
		d.Status, d.Severity = StatusResolved, SeverityInfo
	}
	d.Origin = cleanOrigin(r.Origin)
	d.StartedAt = d.SentAt
	if !r.Since.IsZero() {
		d.StartedAt = r.Since.UTC().Format(time.RFC3339Nano)
	}
	return d
}

// cleanOrigin is o with its names cleaned and capped and without its
// cmdline (a document names the process; the journal keeps its argv).
func cleanOrigin(o *watchdog.Origin) *watchdog.Origin {
	if o == nil {
		return nil
	}
	c := *o
	c.Comm, c.ParentComm, c.Cmdline, c.CmdlineTruncated = clean(o.Comm, maxComm), clean(o.ParentComm, maxComm), nil, false
	return &c
}

// riskID is the incident_id of the risk of cgroup on host: stable across
// sweeps and restarts, so receivers fold repeats into one alert.
func riskID(host, cgroup string) string {
	h := sha256.Sum256([]byte(host + "\x00" + cgroup))
	return "risk-" + hex.EncodeToString(h[:16])
}

// severity: critical for a loop, warning for stalled or paused, info once
// resolved.
func severity(typ, verdict string) string {
	if typ == TypeResolved {
		return SeverityInfo
	}
	return incidentSeverity(verdict)
}

// alertSeverity is the severity of what d is about, whatever its status:
// Alertmanager labels must not change between firing and resolved.
func (d Document) alertSeverity() string {
	if d.Type == TypeRisk {
		return SeverityWarning
	}
	return incidentSeverity(d.Verdict)
}

// lifecycle is what a sink keeps one lifecycle for: the incident, or for a
// risk one episode of it (a cgroup at risk again after its resolution
// fires again under the same incident_id).
func (d Document) lifecycle() string {
	if d.Type == TypeRisk {
		return d.IncidentID + "\x00" + d.StartedAt
	}
	return d.IncidentID
}

// incidentSeverity is the severity of the incident itself, whatever the
// event: Alertmanager labels must not change between firing and resolved.
func incidentSeverity(verdict string) string {
	if verdict == string(watchdog.VerdictLoop) {
		return SeverityCritical
	}
	return SeverityWarning
}

func (d Document) firing() bool { return d.Status != StatusResolved }

// asResolved is d sent after its incident resolved: same event, type and
// actions, in the resolved state.
func (d Document) asResolved() Document {
	d.Status, d.Severity = StatusResolved, SeverityInfo
	return d
}

// validTypes is the enum of Type.
var validTypes = map[string]bool{TypeDetected: true, TypeRemediated: true, TypeRemediationFailed: true, TypeResolved: true, TypeRisk: true}

// newID returns a random UUIDv4. It uses math/rand/v2, seeded by the Go
// runtime from the kernel's AT_RANDOM: crypto/rand's getrandom(2) blocks
// until the kernel's CRNG is initialised, which early in boot (a VM without
// virtio-rng) can take seconds — alerts must not wait for entropy.
func newID() string {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], rand.Uint64())
	binary.LittleEndian.PutUint64(b[8:], rand.Uint64())
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// clean makes s valid UTF-8 without NULs (an invalid byte or a NUL becomes
// the four characters \xNN, so nothing is silently lost) and cuts it to at
// most max bytes on a rune boundary.
func clean(s string, max int) string {
	if utf8.ValidString(s) && !strings.ContainsRune(s, 0) && len(s) <= max {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		var piece string
		switch {
		case r == utf8.RuneError && size == 1, r == 0:
			piece = fmt.Sprintf(`\x%02x`, s[i])
		default:
			piece = s[i : i+size]
		}
		if b.Len()+len(piece) > max {
			break
		}
		b.WriteString(piece)
		i += size
	}
	return b.String()
}

// oneLine renders an untrusted string for a human-readable one-line field
// (summaries, descriptions): control characters are escaped.
func oneLine(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// summary is the one-line title shared by Alertmanager and PagerDuty.
func (d Document) summary() string {
	what := map[string]string{"loop": "OOM loop", "stalled": "OOM stall", "paused": "OOM pause"}[d.Verdict]
	if d.Type == TypeRisk {
		what = "OOM loop risk"
	}
	if what == "" {
		what = "OOM incident"
	}
	s := fmt.Sprintf("%s in %s", what, oneLine(d.Cgroup))
	if d.Container != "" {
		s += " (" + oneLine(cgnames.Label(d.Container, d.ContainerName)) + ")"
	}
	switch d.Type {
	case TypeRemediated:
		s += ": remediated"
	case TypeRemediationFailed:
		s += ": remediation failed"
	case TypeRisk:
		s += ": every task unkillable, the next OOM would loop"
	}
	if !d.firing() {
		s = "resolved: " + s
	}
	if d.Host != "" {
		s += " on " + oneLine(d.Host)
	}
	return s
}

// description is the human-readable detail line.
func (d Document) description() string {
	var b strings.Builder
	if d.Type == TypeRisk {
		fmt.Fprintf(&b, "all %d tasks unkillable (oom_score_adj -1000); usage %d of limit %d bytes", d.CandidatesTotal, d.UsageBytes, d.LimitBytes)
		if d.Origin != nil {
			fmt.Fprintf(&b, "; protection leaked by %s", d.originText())
		}
		return b.String()
	}
	fmt.Fprintf(&b, "%d OOM events and %d OOM kills in %gs", d.OOMEvents, d.OOMKills, d.WindowSeconds)
	unk := 0
	for _, c := range d.Candidates {
		if c.Unkillable {
			unk++
		}
	}
	fmt.Fprintf(&b, "; %d/%d tasks listed unkillable", unk, len(d.Candidates))
	if d.Origin != nil {
		fmt.Fprintf(&b, "; protection leaked by %s", d.originText())
	}
	for _, a := range d.Actions {
		fmt.Fprintf(&b, "; %s", oneLine(a.Name))
		if a.PID != 0 {
			fmt.Fprintf(&b, " pid %d (%s)", a.PID, oneLine(a.Comm))
		}
		fmt.Fprintf(&b, " done=%t verified=%t", a.Done, a.Verified)
		if a.Error != "" {
			fmt.Fprintf(&b, " error: %s", oneLine(a.Error))
		}
	}
	return b.String()
}

func (d Document) originText() string {
	if d.Origin == nil {
		return ""
	}
	return fmt.Sprintf("pid %d (%s), parent pid %d (%s)", d.Origin.PID, oneLine(d.Origin.Comm), d.Origin.ParentPID, oneLine(d.Origin.ParentComm))
}

// truncRunes cuts s to at most n runes.
func truncRunes(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}
