//go:build vmguest

package guest

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestFaultSIGKILLFrozenReportedAlertsSpooled: a loop contained by freeze
// while the alert endpoint is down; oomwatch is then SIGKILLed. The
// restarted daemon must report the cgroup it left frozen (event=still_frozen,
// from frozen.json), deliver the alerts the first one could only spool, and
// the incident journal must still hold the incident.
func TestFaultSIGKILLFrozenReportedAlertsSpooled(t *testing.T) {
	e := Setup(t)
	RequireDaemon(t, e)
	state := t.TempDir()

	// The endpoint: a loopback port with nothing listening until the restart.
	LoopbackUp(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	conf := filepath.Join(t.TempDir(), "oomwatch.yaml")
	mustWrite(t, conf, fmt.Sprintf("alerts:\n  webhook:\n    - name: pager\n      url: http://%s/hook\n", addr))
	if err := os.Chmod(conf, 0o600); err != nil {
		t.Fatal(err)
	}
	flags := []string{"run", "--ladder", "freeze", "--state-dir", state, "--config", conf}

	cg := NewCgroup(t, e, 20)
	d1 := StartDaemon(t, e, flags...)
	p := StartHog(t, e, cg, 64, -1000)
	// Cleanups run last-in first-out: thaw (the test may end with the
	// cgroup frozen), then the hog's own cleanup can kill it.
	t.Cleanup(func() { freeze(cg, false) })
	inc := d1.WaitEvent(t, detectTimeout, "incident verdict=loop", isIncident(cg, "loop"))
	id := fmt.Sprint(inc["incident"])
	d1.WaitEvent(t, actionTimeout, "action freeze", isAction(inc["incident"], "freeze"))
	if ok, s := cg.Frozen(t); !ok {
		t.Fatalf("cgroup not frozen: %s", s)
	}
	// Kill once the spool holds the detected document: a complete file
	// (NAME.json, renamed into place), not the .tmp-* it is written to
	// first — a SIGKILL before the rename loses that document, which the
	// next start removes.
	spool := filepath.Join(state, "spool", "pager")
	Eventually(t, 20*time.Second, "detected alert spooled", func() (bool, string) {
		names := dirNames(spool)
		for _, n := range names {
			if strings.HasSuffix(n, ".json") {
				return true, ""
			}
		}
		return false, fmt.Sprint(names)
	})
	d1.sigkill(t)
	t.Logf("daemon SIGKILLed with %s frozen; spool: %v", cg.Rel(), dirNames(spool))

	// The endpoint comes up, then the daemon.
	var mu sync.Mutex
	var docs []map[string]any
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var d map[string]any
		if json.Unmarshal(b, &d) == nil {
			mu.Lock()
			docs = append(docs, d)
			mu.Unlock()
		}
	})}
	l, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("re-listen on %s: %v", addr, err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })

	d2 := StartDaemon(t, e, flags...)
	d2.WaitEvent(t, 30*time.Second, "event=still_frozen for "+cg.Rel(), Ev("event", "still_frozen", "cgroup", cg.Rel(), "incident", id))
	Eventually(t, 60*time.Second, "spooled alerts of "+id+" delivered", func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		var types []string
		for _, d := range docs {
			if d["incident_id"] == id {
				types = append(types, fmt.Sprint(d["type"]))
			}
		}
		return slices.Contains(types, "detected"), fmt.Sprint(types)
	})
	Eventually(t, 20*time.Second, "spool drained", func() (bool, string) {
		n := dirNames(spool)
		return len(n) == 0, fmt.Sprint(n)
	})
	if ok, s := cg.Frozen(t); !ok {
		t.Errorf("the restart thawed the cgroup (%s): a frozen cgroup stays frozen until the operator thaws it", s)
	}

	out, errs, code := oomwatch(t, e, "incidents", "--state-dir", state, "--json")
	var incs []map[string]any
	if err := json.Unmarshal([]byte(out), &incs); code != 0 || err != nil {
		t.Fatalf("oomwatch incidents: exit %d, %v: %s %s", code, err, out, errs)
	}
	found := false
	for _, i := range incs {
		if i["id"] == id {
			found = true
			if i["cgroup"] != cg.Rel() || i["verdict"] != "loop" || !strings.Contains(fmt.Sprint(i["actions"]), "freeze") {
				t.Errorf("journal record %v, want %s loop with the freeze", i, cg.Rel())
			}
		}
	}
	if !found {
		t.Errorf("incident %s missing from the journal after the SIGKILL: %v", id, incs)
	}

	// Stop the daemon before thawing, or it would freeze the loop again.
	d2.Stop(t)
	if err := SetAdj(p.Pid, 0); err != nil {
		t.Fatal(err)
	}
	cg.Thaw(t)
	waitKilled(t, p, cg)
}

func dirNames(dir string) []string {
	ents, _ := os.ReadDir(dir)
	var n []string
	for _, e := range ents {
		n = append(n, e.Name())
	}
	return n
}
