package alert

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/oomwatch/oomwatch/policy"
	"github.com/oomwatch/oomwatch/watchdog"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fastOpts keeps retries quick.
func fastOpts(stateDir string) Options {
	return Options{StateDir: stateDir, Version: "test", BackoffInitial: 10 * time.Millisecond, BackoffMax: 100 * time.Millisecond}
}

func testLog(t *testing.T) zerolog.Logger {
	return zerolog.New(zerolog.NewTestWriter(t)).With().Timestamp().Logger()
}

// hostileComm is what a workload could name itself: quotes, a newline,
// command substitution, backticks and bytes that are not UTF-8.
const hostileComm = "a\"\n$(rm -rf /)`id`\xff\xfe"

// testIncident is a loop in a cgroup whose name is hostile too.
func testIncident(id string) *watchdog.Incident {
	return &watchdog.Incident{
		ID:      id,
		Verdict: watchdog.VerdictLoop,
		Cgroup:  "/lxc.payload.web1/evil\n\"$(reboot)\"\xc3",
		Version: 2,
		Started: time.Date(2026, 11, 27, 10, 0, 0, 123, time.UTC),
		Evidence: watchdog.Evidence{
			Window: time.Second, OOMs: 42, Kills: 0, Limit: 3000 << 20, Usage: 3000<<20 - 4096,
		},
		Candidates: []watchdog.Candidate{
			{PID: 6016, Comm: "java", RSS: 2900 << 20, OOMScoreAdj: -1000, Unkillable: true,
				Origin: &watchdog.Origin{PID: 900, Comm: "sshd", OOMScoreAdj: -1000, ParentPID: 1, ParentComm: "systemd"}},
			{PID: 6100, Comm: hostileComm, RSS: 1 << 20, OOMScoreAdj: -1000, Unkillable: true},
		},
		Origin: &watchdog.Origin{PID: 900, Comm: "sshd", OOMScoreAdj: -1000, ParentPID: 1, ParentComm: hostileComm},
	}
}

func testDoc(typ, incident string) Document {
	return NewDocument(typ, testIncident(incident), Names{Container: "web1`x`", Unit: "lxc@web1.service"},
		[]policy.Action{{Name: "reset-adj", PID: 6016, Comm: "java", Done: true, Verified: true, Detail: "oom_score_adj -1000 → 0"}},
		"host-1", time.Now())
}

// closeNow closes d with a short deadline and fails on error.
func closeNow(t *testing.T, d *Dispatcher, within time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	if err := d.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func stat(d *Dispatcher, name string) SinkStats {
	for _, s := range d.Stats() {
		if s.Name == name {
			return s
		}
	}
	return SinkStats{}
}

// newServer starts an httptest server closed at cleanup.
func newServer(t *testing.T, h http.HandlerFunc) *httptest.Server {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func zerologTo(w io.Writer) zerolog.Logger { return zerolog.New(w) }

func writeFile(path, s string) error { return os.WriteFile(path, []byte(s), 0o600) }
