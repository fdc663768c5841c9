package alert

import (
	"encoding/base64"
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/oomwatch/oomwatch/watchdog"
)

func FuzzHmacKey(f *testing.F) {
	for _, s := range []string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", " whsec_AAAA ", "whsec_", "whsec_!!!!", "whsec_whsec_AAAAAAAAAAAAAAAAAAAAAA=="} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		key, err := hmacKey(s)
		if err != nil {
			// A longer secret never appears in the message (a short one
			// may, by chance, as a word of it).
			if key != nil || len(s) >= 8 && strings.Contains(err.Error(), s) {
				t.Fatalf("error %v with key %x (the secret must never be echoed)", err, key)
			}
			return
		}
		if len(key) < 16 {
			t.Fatalf("%d-byte key accepted", len(key))
		}
		again, err := hmacKey("whsec_" + base64.StdEncoding.EncodeToString(key))
		if err != nil || string(again) != string(key) {
			t.Fatalf("re-encoded key decodes to %x, %v; want %x", again, err, key)
		}
	})
}

func FuzzRetryAfter(f *testing.F) {
	now := time.Date(2026, 12, 7, 6, 0, 0, 0, time.UTC)
	for _, s := range []string{"120", "0", "-5", " 7 ", "Mon, 07 Dec 2026 06:02:00 GMT", "Monday, 07-Dec-26 06:02:00 GMT", "Mon Dec  7 06:02:00 2026", "Sun, 06 Dec 2026 06:00:00 GMT", "9223372036854775807", "1e3", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if d := retryAfter(s, now); d < 0 {
			t.Fatalf("retryAfter(%q) = %v: a wait is never negative", s, d)
		}
	})
}

// redactURL keeps the scheme and host only: never a path, query, fragment
// or user info, where webhook tokens live.
func FuzzRedactURL(f *testing.F) {
	for _, s := range []string{
		"https://hooks.slack.com/services/T000/B000/XXXXXXXX", "https://user:pass@example.com:8443/x?token=abc#frag",
		"http://127.0.0.1:9093", "http://[::1]:9093/", "https://example.com", "not a url", "https:opaque/token", "//host/path", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		got := redactURL(raw)
		if got == redacted {
			return
		}
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" {
			t.Fatalf("redactURL(%q) = %q for what does not parse to a host", raw, got)
		}
		base := u.Scheme + "://" + u.Host
		if got != base && got != base+"/…" {
			t.Fatalf("redactURL(%q) = %q, want %q or %q", raw, got, base, base+"/…")
		}
		if strings.Contains(u.Host, "@") {
			t.Fatalf("user info in host %q", u.Host)
		}
	})
}

// The spool is read back at every start: a file there that is torn, not
// JSON, of another schema or not ours must be skipped or removed, never
// crash the dispatcher or be delivered.
func FuzzSpoolLoad(f *testing.F) {
	inc := &watchdog.Incident{ID: "0123456789abcdef", Verdict: watchdog.VerdictLoop, Cgroup: "/lxc.payload.web1", Container: "web1", Version: 2,
		Started: time.Date(2026, 12, 7, 6, 0, 0, 0, time.UTC), Candidates: []watchdog.Candidate{{PID: 4242, Comm: "java", OOMScoreAdj: -1000, Unkillable: true}}}
	doc, err := json.Marshal(NewDocument(TypeDetected, inc, Names{Container: "web1"}, nil, "host1", inc.Started))
	if err != nil {
		f.Fatal(err)
	}
	name := "01796623200000000000-0000000001.json"
	f.Add(name, doc)
	f.Add(name, doc[:len(doc)/2])
	f.Add(name, []byte(strings.Replace(string(doc), Schema, "oomwatch.alert/v0", 1)))
	f.Add(".tmp-123", doc)
	f.Add("notes.txt", []byte("hello"))
	f.Add("-1.json", doc)
	stateDir := f.TempDir() // one per fuzz process: its inputs run one at a time
	f.Fuzz(func(t *testing.T, name string, body []byte) {
		if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") || len(name) > 200 {
			return
		}
		sp := newSpool(stateDir, "s", zerolog.Nop())
		if err := os.RemoveAll(sp.dir); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(sp.dir, 0o700); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(sp.dir, name)
		if err := os.WriteFile(path, body, 0o600); err != nil {
			t.Skip(err) // a name the filesystem refuses
		}
		got, _ := sp.load(0)
		if len(got) > 1 {
			t.Fatalf("%d documents from one file", len(got))
		}
		_, statErr := os.Stat(path)
		if len(got) == 1 {
			if got[0].doc.Schema != Schema || got[0].path != path {
				t.Fatalf("loaded %+v from %q", got[0], name)
			}
			if statErr != nil {
				t.Fatalf("a loaded document's file is gone: %v", statErr)
			}
			return
		}
		if strings.HasPrefix(name, ".tmp-") && statErr == nil {
			t.Fatal("a leftover temp file was kept")
		}
		ns, _, cut := strings.Cut(name, "-")
		_, perr := strconv.ParseInt(ns, 10, 64)
		switch ours := cut && perr == nil && strings.HasSuffix(name, ".json"); {
		case ours && !os.IsNotExist(statErr):
			t.Fatalf("an unreadable document %q was neither loaded nor removed", name)
		case !ours && !strings.HasPrefix(name, ".tmp-") && statErr != nil:
			t.Fatalf("a file that is not ours (%q) was removed", name)
		}
	})
}
