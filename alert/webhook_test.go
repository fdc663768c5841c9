package alert

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oomwatch/oomwatch/test/testhost"
	"github.com/rs/zerolog"
)

const testSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" // the Standard Webhooks spec's example secret

// verifyStandardWebhook checks a request the way the Standard Webhooks
// reference libraries do, independently of sign().
func verifyStandardWebhook(secret string, h http.Header, body []byte, now time.Time) error {
	id, ts, sigs := h.Get("webhook-id"), h.Get("webhook-timestamp"), h.Get("webhook-signature")
	if id == "" || ts == "" || sigs == "" {
		return fmt.Errorf("missing webhook-* headers: id %q ts %q sig %q", id, ts, sigs)
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("timestamp %q: %v", ts, err)
	}
	if d := now.Sub(time.Unix(sec, 0)); d > 5*time.Minute || d < -5*time.Minute {
		return fmt.Errorf("timestamp skew %v", d)
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		return err
	}
	mac := hmac.New(sha256.New, key)
	fmt.Fprintf(mac, "%s.%s.%s", id, ts, body)
	want := mac.Sum(nil)
	for _, s := range strings.Fields(sigs) { // space-separated list of versioned signatures
		v, b64, ok := strings.Cut(s, ",")
		if !ok || v != "v1" {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(b64)
		if err == nil && hmac.Equal(got, want) {
			return nil
		}
	}
	return fmt.Errorf("no valid v1 signature in %q", sigs)
}

// receiver is a webhook endpoint that validates every request and answers
// with a scripted sequence of statuses (then 200).
type receiver struct {
	t      *testing.T
	secret string
	header map[string]string // headers every request must carry

	mu       sync.Mutex
	script   []int
	requests int
	docs     []Document
	ids      map[string]int // event_id → deliveries
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.requests++
	if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" || r.Header.Get("User-Agent") != "oomwatch/test" {
		rc.t.Errorf("request %s, Content-Type %q, User-Agent %q", r.Method, r.Header.Get("Content-Type"), r.Header.Get("User-Agent"))
	}
	for k, v := range rc.header {
		if r.Header.Get(k) != v {
			rc.t.Errorf("header %s = %q, want %q", k, r.Header.Get(k), v)
		}
	}
	if rc.secret != "" {
		if err := verifyStandardWebhook(rc.secret, r.Header, body, time.Now()); err != nil {
			rc.t.Errorf("signature: %v", err)
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
	}
	if len(rc.script) > 0 {
		code := rc.script[0]
		rc.script = rc.script[1:]
		if code == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", "1")
		}
		if code != http.StatusOK {
			http.Error(w, "scripted", code)
			return
		}
	}
	d := checkDocument(rc.t, body)
	if rc.secret != "" && r.Header.Get("webhook-id") != d.EventID {
		rc.t.Errorf("webhook-id %q, want the event_id %q", r.Header.Get("webhook-id"), d.EventID)
	}
	if rc.ids == nil {
		rc.ids = map[string]int{}
	}
	rc.ids[d.EventID]++
	rc.docs = append(rc.docs, d)
	w.WriteHeader(http.StatusNoContent)
}

func (rc *receiver) delivered() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.docs)
}

func (rc *receiver) reqs() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.requests
}

func webhookConfig(url string) Config {
	return Config{Webhook: []WebhookConfig{{Delivery: Delivery{Name: "hook"}, HTTPConfig: HTTPConfig{URL: url}}}}
}

func TestWebhookSignedHeadersAndHostileData(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	os.WriteFile(tokenFile, []byte("Bearer s3cr3t\n"), 0o600)
	rc := &receiver{t: t, secret: testSecret, header: map[string]string{"Authorization": "Bearer s3cr3t", "X-Team": "ops"}}
	srv := newServer(t, rc.ServeHTTP)
	cfg := webhookConfig(srv.URL + "/hook")
	cfg.Webhook[0].Secret = testSecret
	cfg.Webhook[0].Headers = map[string]Secret{"X-Team": "ops"}
	cfg.Webhook[0].HeaderFiles = map[string]string{"Authorization": tokenFile}
	d, err := New(cfg, fastOpts(t.TempDir()), testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	sent := testDoc(TypeDetected, "inc-1")
	d.Send(sent)
	waitFor(t, "delivery", func() bool { return rc.delivered() == 1 })
	closeNow(t, d, time.Second)
	got := rc.docs[0]
	if got.EventID != sent.EventID || got.Candidates[1].Comm != sent.Candidates[1].Comm || got.Cgroup != sent.Cgroup {
		t.Errorf("received %+v, want what was sent", got)
	}
	if s := stat(d, "hook"); s.Sent != 1 || s.Failed != 0 || s.Kind != "webhook" {
		t.Errorf("stats %+v", s)
	}
}

func TestWebhookRetriesOn500And429(t *testing.T) {
	rc := &receiver{t: t, script: []int{500, 503, 429}}
	srv := newServer(t, rc.ServeHTTP)
	d, err := New(webhookConfig(srv.URL), fastOpts(""), testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	d.Send(testDoc(TypeDetected, "inc-1"))
	waitFor(t, "delivery", func() bool { return rc.delivered() == 1 })
	if took := time.Since(start); took < time.Second {
		t.Errorf("delivered after %v: Retry-After: 1 not honoured", took)
	}
	closeNow(t, d, time.Second)
	if s := stat(d, "hook"); s.Sent != 1 || s.Retried != 3 || s.Failed != 0 || rc.reqs() != 4 {
		t.Errorf("stats %+v after %d requests, want sent 1 retried 3 after 4", s, rc.reqs())
	}
}

func TestWebhookNoRetryOn400(t *testing.T) {
	rc := &receiver{t: t, script: []int{400, 400}}
	srv := newServer(t, rc.ServeHTTP)
	d, err := New(webhookConfig(srv.URL), fastOpts(t.TempDir()), testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	d.Send(testDoc(TypeDetected, "inc-1"))
	waitFor(t, "failure", func() bool { return stat(d, "hook").Failed == 1 })
	time.Sleep(100 * time.Millisecond) // room for a wrong retry
	closeNow(t, d, time.Second)
	if s := stat(d, "hook"); s.Sent != 0 || s.Retried != 0 || rc.reqs() != 1 || s.QueueDepth != 0 {
		t.Errorf("stats %+v after %d requests, want one attempt, failed", s, rc.reqs())
	}
}

// freePort reserves a loopback port nobody listens on (connection refused).
func freePort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func serveOn(t *testing.T, addr string, h http.Handler) func() {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(l)
	return func() { srv.Close() }
}

// An endpoint that is down for a while, then up: every document arrives,
// exactly once, in order.
func TestWebhookOutageThenUp(t *testing.T) {
	addr := freePort(t)
	d, err := New(webhookConfig("http://"+addr+"/hook"), fastOpts(t.TempDir()), testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	var sent []Document
	for i := range 5 {
		doc := testDoc(TypeDetected, fmt.Sprintf("inc-%d", i))
		sent = append(sent, doc)
		d.Send(doc)
	}
	waitFor(t, "retries while down", func() bool { return stat(d, "hook").Retried >= 3 })
	if s := stat(d, "hook"); s.QueueDepth != 5 || s.Sent != 0 {
		t.Errorf("while down: %+v, want 5 queued", s)
	}
	rc := &receiver{t: t}
	stop := serveOn(t, addr, rc)
	defer stop()
	waitFor(t, "all delivered", func() bool { return rc.delivered() == 5 })
	closeNow(t, d, time.Second)
	for i, doc := range rc.docs {
		if doc.EventID != sent[i].EventID || rc.ids[doc.EventID] != 1 {
			t.Errorf("delivery %d: %s (%d times), want %s once", i, doc.EventID, rc.ids[doc.EventID], sent[i].EventID)
		}
	}
	if s := stat(d, "hook"); s.Sent != 5 || s.Dropped != 0 || s.Failed != 0 || s.QueueDepth != 0 {
		t.Errorf("stats %+v", s)
	}
}

// A restart while the endpoint is down loses nothing: Close spools, the next
// Dispatcher on the same state directory delivers.
func TestSpoolSurvivesRestart(t *testing.T) {
	state := t.TempDir()
	addr := freePort(t)
	cfg := webhookConfig("http://" + addr + "/hook")
	d1, err := New(cfg, fastOpts(state), testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	var sent []Document
	for i := range 3 {
		doc := testDoc(TypeDetected, fmt.Sprintf("inc-%d", i))
		sent = append(sent, doc)
		d1.Send(doc)
	}
	waitFor(t, "a failed attempt", func() bool { return stat(d1, "hook").Retried >= 1 })
	closeNow(t, d1, 50*time.Millisecond) // the endpoint is down: drain gives up, spools
	files, _ := filepath.Glob(filepath.Join(state, "spool", "hook", "*.json"))
	if len(files) != 3 {
		t.Fatalf("%d spool files after close, want 3: %v", len(files), files)
	}
	// Every spool file is a complete document.
	for _, f := range files {
		b, _ := os.ReadFile(f)
		checkDocument(t, b)
	}

	rc := &receiver{t: t}
	stop := serveOn(t, addr, rc)
	defer stop()
	d2, err := New(cfg, fastOpts(state), testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "replayed delivery", func() bool { return rc.delivered() == 3 })
	closeNow(t, d2, time.Second)
	for i, doc := range rc.docs {
		if doc.EventID != sent[i].EventID || rc.ids[doc.EventID] != 1 {
			t.Errorf("delivery %d: %s ×%d, want %s once", i, doc.EventID, rc.ids[doc.EventID], sent[i].EventID)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(state, "spool", "hook", "*")); len(left) != 0 {
		t.Errorf("spool not emptied: %v", left)
	}
}

// A crash (no Close) loses nothing either: documents are spooled as they
// are queued.
func TestSpoolWrittenBeforeDelivery(t *testing.T) {
	state := t.TempDir()
	addr := freePort(t)
	d, err := New(webhookConfig("http://"+addr), fastOpts(state), testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	defer closeNow(t, d, 10*time.Millisecond)
	d.Send(testDoc(TypeDetected, "inc-1"))
	waitFor(t, "spool file", func() bool {
		f, _ := filepath.Glob(filepath.Join(state, "spool", "hook", "*.json"))
		return len(f) == 1
	})
}

func TestDedupAndRateLimit(t *testing.T) {
	rc := &receiver{t: t}
	srv := newServer(t, rc.ServeHTTP)
	cfg := webhookConfig(srv.URL)
	cfg.Webhook[0].RatePerMinute = 2
	d, err := New(cfg, fastOpts(""), testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	d.Send(testDoc(TypeDetected, "a"))
	d.Send(testDoc(TypeDetected, "a")) // same incident and type: deduplicated
	d.Send(testDoc(TypeDetected, "b"))
	d.Send(testDoc(TypeDetected, "c")) // over 2/min: dropped, c is suppressed
	d.Send(testDoc(TypeDetected, "d"))
	d.Send(testDoc(TypeRemediated, "a")) // over the limit, but a was announced
	d.Send(testDoc(TypeResolved, "a"))   // resolutions of announced incidents always go
	d.Send(testDoc(TypeResolved, "c"))   // c was never announced: nothing to resolve
	waitFor(t, "deliveries", func() bool { return rc.delivered() == 3 })
	time.Sleep(50 * time.Millisecond)
	closeNow(t, d, time.Second)
	var got []string
	for _, doc := range rc.docs {
		got = append(got, doc.IncidentID+"/"+doc.Type)
	}
	if strings.Join(got, " ") != "a/detected b/detected a/resolved" {
		t.Errorf("delivered %v", got)
	}
	if s := stat(d, "hook"); s.Deduped != 1 || s.RateLimited != 4 || s.Dropped != 4 || s.Sent != 3 {
		t.Errorf("stats %+v, want deduped 1, rate-limited 4", s)
	}
}

func TestQueueDropsOldest(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	var got []string
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		<-release
		b, _ := io.ReadAll(r.Body)
		d := checkDocument(t, b)
		mu.Lock()
		got = append(got, d.IncidentID)
		mu.Unlock()
	})
	cfg := webhookConfig(srv.URL)
	cfg.Webhook[0].QueueSize = 2
	d, err := New(cfg, fastOpts(t.TempDir()), testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	d.Send(testDoc(TypeDetected, "0")) // in flight, blocked
	waitFor(t, "in flight", func() bool { return stat(d, "hook").QueueDepth == 1 })
	time.Sleep(20 * time.Millisecond)
	for _, id := range []string{"1", "2", "3"} {
		d.Send(testDoc(TypeDetected, id))
	}
	if s := stat(d, "hook"); s.Dropped != 2 || s.QueueDepth != 2 {
		t.Errorf("stats %+v, want 2 dropped, depth 2", s)
	}
	close(release)
	waitFor(t, "delivery", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 2 })
	closeNow(t, d, time.Second)
	if strings.Join(got, ",") != "0,3" {
		t.Errorf("delivered %v, want the in-flight 0 and the newest 3", got)
	}
}

// A state directory that cannot be written: delivery goes on from memory.
func TestUnwritableStateDir(t *testing.T) {
	file := filepath.Join(t.TempDir(), "not-a-dir")
	os.WriteFile(file, nil, 0o600)
	rc := &receiver{t: t}
	srv := newServer(t, rc.ServeHTTP)
	var logs testhost.SyncBuf
	d, err := New(webhookConfig(srv.URL), fastOpts(file), zerologTo(&logs))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		d.Send(testDoc(TypeDetected, strconv.Itoa(i)))
	}
	waitFor(t, "delivery", func() bool { return rc.delivered() == 3 })
	closeNow(t, d, time.Second)
	if n := strings.Count(logs.String(), "alert spool not writable"); n != 1 {
		t.Errorf("spool error reported %d times, want once:\n%s", n, logs.String())
	}
}

func TestCloseWithoutSpoolReportsLoss(t *testing.T) {
	d, err := New(webhookConfig("http://"+freePort(t)), fastOpts(""), testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	d.Send(testDoc(TypeDetected, "x"))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := d.Close(ctx); err == nil || !strings.Contains(err.Error(), "neither delivered nor spooled") {
		t.Errorf("Close = %v, want the loss reported", err)
	}
	d.Send(testDoc(TypeDetected, "after")) // must not panic or block
	if s := stat(d, "hook"); s.Dropped != 1 {
		t.Errorf("send after close: %+v", s)
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Duration{
		"": 0, "3": 3 * time.Second, "junk": 0, "-1": 0,
		now.Add(90 * time.Second).Format(http.TimeFormat): 90 * time.Second,
	} {
		if got := retryAfter(in, now); got != want {
			t.Errorf("retryAfter(%q) = %v, want %v", in, got, want)
		}
	}
}

// A spool that holds more documents than the queue (an outage longer than
// the queue, a state dir copied in) is read only as far as the queue can
// hold: the newest QueueSize documents, the older ones removed and counted
// as dropped; a file too large to be a document is removed unread.
func TestSpoolLoadIsBoundedByTheQueue(t *testing.T) {
	sp := newSpool(t.TempDir(), "s", zerolog.Nop())
	var paths []string
	for i := 0; i < 10; i++ {
		b, err := json.Marshal(testDoc(TypeDetected, fmt.Sprintf("inc%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		p, err := sp.write(b)
		if err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	big := filepath.Join(sp.dir, fmt.Sprintf("%020d-%010d.json", time.Now().UnixNano(), 999))
	if err := os.WriteFile(big, bytes.Repeat([]byte(" "), maxSpooledDoc+1), 0o600); err != nil {
		t.Fatal(err)
	}
	got, dropped := sp.load(4)
	if dropped != 7 || len(got) != 3 {
		t.Fatalf("loaded %d, dropped %d: want the newest 4 files (3 documents and the oversized file), 7 dropped", len(got), dropped)
	}
	for i, e := range got {
		if want := fmt.Sprintf("inc%d", 7+i); e.doc.IncidentID != want {
			t.Errorf("document %d is %s, want %s", i, e.doc.IncidentID, want)
		}
	}
	for _, p := range append(paths[:7:7], big) {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still spooled: %v", p, err)
		}
	}
}
