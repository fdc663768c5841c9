package sdvm

import (
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// goBuild builds a static binary of pkg into dir.
func goBuild(t *testing.T, dir, name, pkg string, ldflags string) string {
	t.Helper()
	out, err := GoBuild(dir, name, pkg, ldflags)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestDebInSystemd installs the .deb into Debian 12 booted with systemd as
// PID 1 and checks, in the guest (payload/run.sh): the unit is enabled and
// active after READY=1, WatchdogSec=30s and pings arriving, the journal;
// structured fields through JournalWriter; an OOM loop in a transient unit
// (MemoryMax=32M, OOMScoreAdjust=-1000) detected and broken by reset-adj;
// MemoryMax of a unit changed through systemd.Units (D-Bus) from a process
// in oomwatch.service's sandbox, surviving daemon-reload; the daemon's
// raise-limit of a MemoryMax=48M unit (10% steps not whole pages) through
// systemd, put back exactly after the hold; a SIGSTOPped
// daemon killed by systemd's watchdog and restarted; dpkg -r and -P leaving
// nothing behind.
func TestDebInSystemd(t *testing.T) {
	res := guestTest{variant: Base, payload: "payload", version: "0.0~sdvm", timeout: 5 * time.Minute,
		helpers: []string{"github.com/oomwatch/oomwatch/test/testbin/hog", "github.com/oomwatch/oomwatch/test/sdvm/sdctl"}}.run(t)
	if sec, err := os.ReadFile(filepath.Join(res.ResultsDir, "security.txt")); err == nil {
		t.Logf("in the guest: %s", strings.TrimSpace(grep(string(sec), "Overall exposure level")))
	}
}

// buildDeb runs packaging/build-deb.sh with bin into dir.
func buildDeb(t *testing.T, top, bin, dir string) string {
	t.Helper()
	deb, err := BuildDeb(top, bin, "0.0~sdvm", dir)
	if err != nil {
		t.Fatal(err)
	}
	return deb
}

func marks(m map[string]string) string {
	type kv struct {
		k string
		v float64
	}
	var s []kv
	for k, v := range m {
		f, _ := strconv.ParseFloat(v, 64)
		s = append(s, kv{k, f})
	}
	sort.Slice(s, func(i, j int) bool { return s[i].v < s[j].v })
	var b strings.Builder
	for _, e := range s {
		b.WriteString(e.k + "=" + strconv.FormatFloat(e.v, 'f', 1, 64) + " ")
	}
	return strings.TrimSpace(b.String())
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func grep(s, sub string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}
