package alert

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

const testRoutingKey = "R0UT1NGK3Y0123456789abcdefABCDEF" // 32 characters, like an integration key

// pdReceiver validates Events API v2 requests against the published schema.
type pdReceiver struct {
	t      *testing.T
	mu     sync.Mutex
	script []int
	events []pdEvent
	reqs   int
}

func (p *pdReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reqs++
	if len(p.script) > 0 {
		code := p.script[0]
		p.script = p.script[1:]
		if code == 429 {
			w.Header().Set("Retry-After", "0")
		}
		w.WriteHeader(code)
		return
	}
	t := p.t
	body, _ := io.ReadAll(r.Body)
	if r.URL.Path != "/v2/enqueue" || r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
		t.Errorf("%s %s %q", r.Method, r.URL.Path, r.Header.Get("Content-Type"))
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		t.Errorf("not a JSON object: %v", err)
		http.Error(w, `{"status":"invalid event"}`, 400)
		return
	}
	var ev pdEvent
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ev); err != nil {
		t.Errorf("decode: %v", err)
	}
	if ev.RoutingKey != testRoutingKey {
		t.Errorf("routing_key %q", ev.RoutingKey)
	}
	if ev.EventAction != "trigger" && ev.EventAction != "resolve" && ev.EventAction != "acknowledge" {
		t.Errorf("event_action %q", ev.EventAction)
	}
	if ev.DedupKey == "" || len(ev.DedupKey) > 255 {
		t.Errorf("dedup_key %q", ev.DedupKey)
	}
	if ev.EventAction == "trigger" {
		pl := ev.Payload
		if pl == nil {
			t.Fatalf("trigger without payload")
		}
		if pl.Summary == "" || utf8.RuneCountInString(pl.Summary) > 1024 || pl.Source == "" {
			t.Errorf("payload summary %q source %q", pl.Summary, pl.Source)
		}
		switch pl.Severity {
		case "critical", "error", "warning", "info":
		default:
			t.Errorf("payload severity %q", pl.Severity)
		}
		if _, err := time.Parse(time.RFC3339Nano, pl.Timestamp); err != nil {
			t.Errorf("payload timestamp %q", pl.Timestamp)
		}
		var pr map[string]json.RawMessage
		json.Unmarshal(raw["payload"], &pr)
		checkDocument(t, pr["custom_details"])
	}
	p.events = append(p.events, ev)
	w.WriteHeader(http.StatusAccepted)
	io.WriteString(w, `{"status":"success","message":"Event processed","dedup_key":"`+ev.DedupKey+`"}`)
}

// actions lists the event_action of every event received, comma-separated.
func (p *pdReceiver) actions() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, ev := range p.events {
		out = append(out, ev.EventAction)
	}
	return strings.Join(out, ",")
}

func (p *pdReceiver) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.events)
}

func TestPagerDutyTriggerResolve(t *testing.T) {
	pd := &pdReceiver{t: t, script: []int{503, 429}}
	srv := newServer(t, pd.ServeHTTP)
	keyFile := t.TempDir() + "/key"
	if err := writeFile(keyFile, testRoutingKey+"\n"); err != nil {
		t.Fatal(err)
	}
	cfg := Config{PagerDuty: []PagerDutyConfig{{HTTPConfig: HTTPConfig{URL: srv.URL + "/v2/enqueue"}, RoutingKeyFile: keyFile}}}
	d, err := New(cfg, fastOpts(t.TempDir()), testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	firing := testDoc(TypeDetected, "inc-7")
	d.Send(firing)
	d.Send(testDoc(TypeRemediated, "inc-7"))
	d.Send(testDoc(TypeResolved, "inc-7"))
	waitFor(t, "3 events", func() bool { return pd.count() == 3 })
	closeNow(t, d, time.Second)
	for _, ev := range pd.events {
		if ev.DedupKey != "oomwatch-inc-7" {
			t.Errorf("dedup_key %q, want oomwatch-inc-7 for every event of the incident", ev.DedupKey)
		}
	}
	if got := pd.actions(); got != "trigger,trigger,resolve" {
		t.Errorf("actions %v", got)
	}
	first := pd.events[0].Payload
	if first.Severity != "critical" || first.Source != "host-1" || first.Component != firing.Cgroup || first.Group != firing.Container || first.Class != "loop" {
		t.Errorf("payload %+v", first)
	}
	if strings.ContainsAny(first.Summary, "\n\r") {
		t.Errorf("summary %q: one line wanted", first.Summary)
	}
	if s := stat(d, "pagerduty-0"); s.Sent != 3 || s.Retried != 2 || s.Kind != "pagerduty" {
		t.Errorf("stats %+v", s)
	}
}

func TestPagerDutyNoRetryOn400(t *testing.T) {
	pd := &pdReceiver{t: t, script: []int{400}}
	srv := newServer(t, pd.ServeHTTP)
	cfg := Config{PagerDuty: []PagerDutyConfig{{HTTPConfig: HTTPConfig{URL: srv.URL + "/v2/enqueue"}, RoutingKey: testRoutingKey}}}
	d, err := New(cfg, fastOpts(""), testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	d.Send(testDoc(TypeDetected, "x"))
	waitFor(t, "failure", func() bool { return stat(d, "pagerduty-0").Failed == 1 })
	time.Sleep(50 * time.Millisecond)
	closeNow(t, d, time.Second)
	if pd.reqs != 1 {
		t.Errorf("%d requests, want 1", pd.reqs)
	}
}

func TestPagerDutyDedupKeyBounded(t *testing.T) {
	if k := pdDedupKey(strings.Repeat("x", 400)); utf8.RuneCountInString(k) > 255 {
		t.Errorf("dedup_key of %d runes", utf8.RuneCountInString(k))
	}
}
