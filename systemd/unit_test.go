package systemd

import (
	"bufio"
	"bytes"
	"context"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/oomwatch/oomwatch/test/testtier"
)

// directives returns the [Service] settings of the unit, key → values.
func directives(t *testing.T, section string) map[string][]string {
	t.Helper()
	d := map[string][]string{}
	cur := ""
	sc := bufio.NewScanner(bytes.NewReader(UnitFile))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[':
			cur = strings.Trim(line, "[]")
		case cur == section:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("bad unit line %q", line)
			}
			d[k] = append(d[k], v)
		}
	}
	return d
}

// TestUnitContract pins what the daemon and the issue rely on.
func TestUnitContract(t *testing.T) {
	s := directives(t, "Service")
	for k, want := range map[string]string{
		"Type":                    "notify",
		"NotifyAccess":            "main",
		"WatchdogSec":             "30s",
		"Restart":                 "always",
		"OOMScoreAdjust":          "-900",
		"Nice":                    "-10",
		"ExecReload":              "/bin/kill -HUP $MAINPID",
		"StateDirectory":          "oomwatch",
		"RuntimeDirectory":        "oomwatch",
		"LimitNOFILE":             "1048576",
		"ProtectSystem":           "strict",
		"CapabilityBoundingSet":   "CAP_DAC_OVERRIDE CAP_KILL CAP_SYS_RESOURCE",
		"RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
		// a bad config or flag (exit 78, 64) must not restart every 2 s
		"RestartPreventExitStatus": "64 78",
	} {
		if got := s[k]; len(got) != 1 || got[0] != want {
			t.Errorf("%s=%q, want %q", k, got, want)
		}
	}
	if ex := s["ExecStart"]; len(ex) != 1 || !strings.HasPrefix(ex[0], "/usr/bin/oomwatch run") {
		t.Errorf("ExecStart=%q, want /usr/bin/oomwatch run …", ex)
	}
	if len(s["MemoryMin"])+len(s["MemoryLow"]) == 0 {
		t.Error("no MemoryMin=/MemoryLow= reservation for the daemon")
	}
	// each of these would stop oomwatch from writing cgroupfs or
	// /proc/PID/oom_score_adj, seeing other users' tasks, or alerting
	for _, k := range []string{"ProtectControlGroups", "ProtectProc",
		"PrivateNetwork", "PrivateUsers", "SecureBits", "User", "DynamicUser", "IPAddressDeny"} {
		if v, ok := s[k]; ok {
			t.Errorf("%s=%q breaks oomwatch", k, v)
		}
	}
	if i := directives(t, "Install"); len(i["WantedBy"]) != 1 || i["WantedBy"][0] != "multi-user.target" {
		t.Errorf("WantedBy=%q", i["WantedBy"])
	}
}

// systemdAnalyze returns the systemd-analyze binary or skips (fails when
// the VM tier is required: the systemd tier's tools come with it).
func systemdAnalyze(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("systemd-analyze")
	if err != nil {
		testtier.Require(t, testtier.VM, "systemd-analyze not found (apt-get install systemd; PID 1 need not be systemd)")
	}
	return p
}

// writeUnit writes the unit to a temp dir as oomwatch.service with
// /usr/bin/oomwatch replaced by bin (verify checks that ExecStart exists;
// the VM test verifies the installed unit unchanged).
func writeUnit(t *testing.T, bin string) string {
	t.Helper()
	u := UnitFile
	if bin != "" {
		u = bytes.ReplaceAll(u, []byte("/usr/bin/oomwatch "), []byte(bin+" "))
	}
	p := filepath.Join(t.TempDir(), "oomwatch.service")
	if err := os.WriteFile(p, u, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func analyze(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, systemdAnalyze(t), args...)
	cmd.Env = append(os.Environ(), "SYSTEMD_COLORS=0", "SYSTEMD_PAGER=", "SYSTEMD_LOG_COLOR=0")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestUnitVerify(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the daemon")
	}
	systemdAnalyze(t)
	p := writeUnit(t, buildDaemon(t))
	// --man=no: Documentation=man:oomwatch(8) is in the package, not on this host
	if out, err := analyze(t, "verify", "--man=no", p); err != nil || strings.TrimSpace(out) != "" {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

var exposureRE = regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+) (\S+)`)

// TestUnitSecurity enforces the exposure threshold, both by parsing the
// overall level and with systemd-analyze's own --threshold.
func TestUnitSecurity(t *testing.T) {
	systemdAnalyze(t)
	p := writeUnit(t, "")
	out, err := analyze(t, "security", "--offline=yes", "--no-pager", p)
	m := exposureRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("systemd-analyze security: %v; no exposure line in\n%s", err, out)
	}
	level, perr := strconv.ParseFloat(m[1], 64)
	if perr != nil {
		t.Fatal(perr)
	}
	t.Logf("systemd-analyze security --offline=yes: exposure %s %s", m[1], m[2])
	if level > MaxExposure {
		t.Fatalf("exposure %.1f > %.1f:\n%s", level, MaxExposure, out)
	}
	thr := strconv.Itoa(int(math.Round(MaxExposure * 10)))
	if out, err := analyze(t, "security", "--offline=yes", "--no-pager", "--threshold="+thr, p); err != nil {
		t.Fatalf("systemd-analyze security --threshold=%s: %v\n%s", thr, err, out)
	}
}
