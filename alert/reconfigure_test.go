package alert

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Reconfigure keeps a sink's queue and applies new settings at once to a
// document waiting out a backoff: a fixed URL is tried without waiting.
func TestReconfigureRetriesWithNewSettings(t *testing.T) {
	state := t.TempDir()
	opts := fastOpts(state)
	opts.BackoffInitial, opts.BackoffMax = time.Minute, time.Minute
	d, err := New(webhookConfig("http://"+freePort(t)), opts, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	defer closeNow(t, d, time.Second)
	doc := testDoc(TypeDetected, "inc-r")
	d.Send(doc)
	waitFor(t, "a failed attempt", func() bool { return stat(d, "hook").Retried == 1 })
	rc := &receiver{t: t}
	srv := newServer(t, rc.ServeHTTP)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := d.Reconfigure(ctx, webhookConfig(srv.URL)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "delivery to the new URL", func() bool { return rc.delivered() == 1 })
	if rc.docs[0].EventID != doc.EventID {
		t.Errorf("delivered %s, want %s", rc.docs[0].EventID, doc.EventID)
	}
	if err := d.Reconfigure(ctx, Config{Webhook: []WebhookConfig{{Delivery: Delivery{Name: "hook"}, HTTPConfig: HTTPConfig{URL: srv.URL, HeaderFiles: map[string]string{"X": "/nonexistent"}}}}}); err == nil {
		t.Error("Reconfigure with an unreadable header file: no error")
	}
	d.Send(testDoc(TypeDetected, "inc-s"))
	waitFor(t, "delivery with the settings kept", func() bool { return rc.delivered() == 2 })
}

// A sink removed by a reload drains, then spools what is left; a sink of
// that name configured again (here as another kind) delivers it. Nothing
// is read from a spool while another sink owns it.
func TestReconfigureSinksComeAndGo(t *testing.T) {
	state := t.TempDir()
	d, err := New(webhookConfig("http://"+freePort(t)), fastOpts(state), testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	defer closeNow(t, d, time.Second)
	doc := testDoc(TypeDetected, "inc-g")
	d.Send(doc)
	waitFor(t, "a failed attempt", func() bool { return stat(d, "hook").Retried >= 1 })
	rc := &receiver{t: t}
	srv := newServer(t, rc.ServeHTTP)
	other := webhookConfig(srv.URL)
	other.Webhook[0].Name = "other"
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := d.Reconfigure(ctx, other); err != nil {
		t.Fatal(err)
	}
	if files, _ := filepath.Glob(filepath.Join(state, "spool", "hook", "*.json")); len(files) != 1 {
		t.Fatalf("removed sink's spool: %v, want its document", files)
	}
	if ss := d.Stats(); len(ss) != 1 || ss[0].Name != "other" {
		t.Errorf("stats %+v, want the one configured sink", ss)
	}
	d.Send(testDoc(TypeDetected, "inc-h"))
	waitFor(t, "delivery by the new sink", func() bool { return rc.delivered() == 1 })

	// "hook" again, now an exec sink: it reads the spool the webhook left.
	out := filepath.Join(t.TempDir(), "got")
	cfg := execConfig("/bin/sh", hookScript(t, `cat >> "$1"; echo >> "$1"`), out)
	ctx2, cancel2 := context.WithTimeout(context.Background(), time.Second)
	defer cancel2()
	if err := d.Reconfigure(ctx2, cfg); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "spooled document delivered by the new sink", func() bool {
		b, _ := os.ReadFile(out)
		return strings.Contains(string(b), doc.EventID)
	})
	if ss := d.Stats(); len(ss) != 1 || ss[0].Name != "hook" || ss[0].Kind != KindExec {
		t.Errorf("stats %+v", ss)
	}
}

// Against the real Alertmanager: an incident firing across a reload stays
// active well past 4 × resend_interval, and its resolution still ends it.
func TestAlertmanagerRealFiringKeptAcrossReconfigure(t *testing.T) {
	base := startAlertmanager(t)
	const every = 200 * time.Millisecond
	cfg := func(timeout time.Duration) Config {
		return Config{Alertmanager: []AlertmanagerConfig{{
			Delivery: Delivery{Name: "am", Timeout: timeout}, HTTPConfig: HTTPConfig{URL: base},
			ResendInterval: every, ResolveResend: 600 * time.Millisecond,
		}}}
	}
	d, err := New(cfg(time.Second), fastOpts(t.TempDir()), testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	defer closeNow(t, d, time.Second)
	firing := testDoc(TypeDetected, "inc-long")
	d.Send(firing)
	active := func() bool {
		a := findAlert(listAlerts(t, base), firing.Cgroup)
		return a != nil && a.Status.State == "active" && a.EndsAt.After(time.Now())
	}
	waitFor(t, "alert active", active)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := d.Reconfigure(ctx, cfg(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(8 * every)
	if !active() {
		t.Fatalf("firing alert no longer active %v after the reload (endsAt is 4 × resend_interval = %v ahead)", 8*every, 4*every)
	}
	d.Send(testDoc(TypeResolved, "inc-long"))
	waitFor(t, "alert resolved", func() bool { return !active() })
}
