package vmtest

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/oomwatch/oomwatch/test/benchrow"
	"github.com/oomwatch/oomwatch/test/scalebench"
	"github.com/oomwatch/oomwatch/test/testtier"
)

const guestScaleChild = "/bin/scalechild"

var scaleRE = regexp.MustCompile(`SCALEJSON (\w+) (\{.*\})\s*$`)

// scaleVM boots combo once and runs the guest scenario testRE with env; it
// returns the guest's SCALEJSON lines by kind. One run per benchmark
// whatever b.N.
func scaleVM(b testing.TB, combo Combo, testRE string, env map[string]string, memMB int, timeout time.Duration) map[string][]string {
	b.Helper()
	if testing.Short() {
		b.Skip("-short")
	}
	if err := CheckHost(); err != nil {
		testtier.Require(b, testtier.VM, err.Error())
	}
	kernels, err := Kernels()
	if err != nil {
		testtier.Require(b, testtier.VM, err.Error())
	}
	var k Kernel
	for _, x := range kernels {
		if x.Name == combo.Kernel {
			k = x
		}
	}
	root := moduleRoot(b)
	bin := b.TempDir()
	child := filepath.Join(bin, "scalechild")
	if err := scalebench.BuildChild(filepath.Join(root, "test/scalebench/scalechild"), child); err != nil {
		b.Fatal(err)
	}
	files := map[string]string{
		guestTests:      goBuild(b, root, filepath.Join(bin, "guest.test"), "test", "-c", "-tags", "vmguest", "./test/vmtest/guest"),
		guestHog:        goBuild(b, root, filepath.Join(bin, "hog"), "build", "./test/testbin/hog"),
		guestDaemon:     goBuild(b, root, filepath.Join(bin, "oomwatch"), "build", "./cmd/oomwatch"),
		guestScaleChild: child,
	}
	e := map[string]string{
		"OOMWATCH_VM_MODE": string(combo.Mode), "OOMWATCH_VM_KERNEL": combo.Kernel,
		"OOMWATCH_VM_HOG": guestHog, "OOMWATCH_VM_DAEMON": guestDaemon,
	}
	for _, n := range []string{"OOMWATCH_SCALE_SIZES", "OOMWATCH_SCALE_IDLE", "OOMWATCH_SCALE_SETTLE", "OOMWATCH_CHURN_SECS", "OOMWATCH_CHURN_RATE",
		"OOMWATCH_CHURN_LIFETIME", "OOMWATCH_SCALE_PROFILE", "OOMWATCH_VM_STORM_N", "OOMWATCH_VM_STORM_WAIT"} {
		if v := os.Getenv(n); v != "" {
			e[n] = v
		}
	}
	for kk, v := range env {
		e[kk] = v
	}
	boot := Boot{
		Kernel: k, Mode: combo.Mode, Files: files, Env: e, MemMB: memMB,
		Cmd:     fmt.Sprintf("%s -test.v -test.count=1 -test.timeout=%ds -test.run '%s'", guestTests, int((timeout - time.Minute).Seconds()), testRE),
		Timeout: timeout,
		Append:  os.Getenv("OOMWATCH_VM_APPEND"),
	}
	if os.Getenv("OOMWATCH_VM_CONSOLE") == "1" {
		boot.Log = os.Stderr
	}
	res, err := Run(context.Background(), boot)
	b.Logf("%s: qemu start→exit %.1fs, guest exit %d", combo, res.Elapsed.Seconds(), res.ExitCode)
	if err != nil {
		b.Errorf("%s: %v", combo, err)
	} else if res.ExitCode != 0 {
		b.Errorf("%s: guest exit %d; failed guest tests:\n%s\nconsole tail:\n%s", combo, res.ExitCode, failedGuestLines(res.Output), tail(res.Output, 60))
	}
	out := map[string][]string{}
	for _, l := range strings.Split(res.Output, "\n") {
		if m := scaleRE.FindStringSubmatch(l); m != nil {
			out[m[1]] = append(out[m[1]], m[2])
		}
	}
	return out
}

// logLineRE matches a test's own log line ("    file_test.go:123: ..."), not
// the daemon log a failing test dumps after it.
var logLineRE = regexp.MustCompile(`^\s*[\w.]+\.go:\d+: `)

// failedGuestLines returns, for each guest test that did not pass, its
// result and its own log lines: the console tail alone is often the daemon
// log dumped after the failure, not the failure.
func failedGuestLines(out string) string {
	var b strings.Builder
	for _, g := range ParseGoTest(out) {
		if g.Result == "PASS" || g.Result == "SKIP" {
			continue
		}
		fmt.Fprintf(&b, "%s: %s\n", g.Name, cmp.Or(g.Result, "no result (crash or timeout)"))
		for _, l := range strings.Split(g.Output, "\n") {
			if logLineRE.MatchString(l) {
				fmt.Fprintf(&b, "%s\n", l)
			}
		}
	}
	return b.String()
}

func combosFromEnv(def ...Combo) []Combo {
	s := os.Getenv("OOMWATCH_VM_COMBOS")
	if s == "" {
		return def
	}
	var cs []Combo
	for _, c := range Combos {
		if strings.Contains(","+s+",", ","+c.String()+",") {
			cs = append(cs, c)
		}
	}
	return cs
}

// BenchmarkVMScale is measurement 2 on cgroup v2 (6.12): oomwatch vs
// containerd/cgroups EventChan() per cgroup at 1,000/5,000/10,000 cgroups.
func BenchmarkVMScale(b *testing.B) {
	out := scaleVM(b, Combo{"6.12", V2}, "^TestScaleV2$", map[string]string{"OOMWATCH_VM_SCALE": "1"}, 4096, 90*time.Minute)
	for _, s := range out["sysctl"] {
		b.Logf("guest sysctls: %s", s)
		fmt.Printf("guest sysctls: %s\n", s)
	}
	if dir := os.Getenv("OOMWATCH_SCALE_PROFILE_OUT"); dir != "" {
		for _, s := range out["profile"] {
			var p struct{ Name, B64 string }
			if json.Unmarshal([]byte(s), &p) == nil {
				if raw, err := base64.StdEncoding.DecodeString(p.B64); err == nil {
					os.WriteFile(filepath.Join(dir, p.Name), raw, 0o644)
				}
			}
		}
	}
	var rs []scalebench.Result
	for _, s := range out["scale"] {
		var r scalebench.Result
		if json.Unmarshal([]byte(s), &r) == nil {
			rs = append(rs, r)
		}
	}
	for _, r := range rs {
		if r.End.RSSKiB == 0 {
			continue
		}
		p := fmt.Sprintf("%s-%d-", r.Method, r.Cgroups)
		b.ReportMetric(float64(r.End.RSSKiB)/1024, p+"RSS-MiB")
		b.ReportMetric(float64(r.End.Goroutines), p+"goroutines")
		b.ReportMetric(r.ArmSec, p+"arm-s")
		b.ReportMetric(r.WakeupsPS, p+"wakeups/s")
	}
	t := scalebench.ScaleTable(rs)
	b.Log("\n" + t)
	fmt.Print(t)
	rows := scalebench.ScaleRows(b.Name(), rs)
	if len(rows) == 0 {
		rows = append(rows, noResult(b, benchrow.Scale, "v2 VM 6.12"))
	}
	benchrow.Emit(rows...)
}

// BenchmarkVMChurn is measurement 4 on cgroup v2 (6.12).
func BenchmarkVMChurn(b *testing.B) {
	k, err := scalebench.FromEnv() // the knobs scaleVM passes to the guest
	if err != nil {
		b.Fatal(err)
	}
	var cs []scalebench.ChurnResult
	var rows []benchrow.Row
	for _, c := range combosFromEnv(Combo{"6.12", V2}) {
		n := len(cs)
		out := scaleVM(b, c, "^TestScaleChurnV2$", map[string]string{"OOMWATCH_VM_CHURN": "1"}, 2048, 20*time.Minute)
		for _, s := range out["churn"] {
			var cr scalebench.ChurnResult
			if json.Unmarshal([]byte(s), &cr) == nil {
				cs = append(cs, cr)
				if cr.Before != nil {
					b.ReportMetric(float64(cr.Missed), c.String()+"-missed")
					b.ReportMetric(cr.Rate, c.String()+"-created/s")
				}
				rows = append(rows, scalebench.ChurnRows(b.Name(), cr, k)...)
			}
		}
		if len(cs) == n {
			rows = append(rows, noResult(b, benchrow.Churn, c.String()+" VM"))
		}
	}
	t := scalebench.ChurnTable(cs)
	b.Log("\n" + t)
	fmt.Print(t)
	benchrow.Emit(rows...)
}

type stormResult struct {
	Combo        string         `json:"combo"`
	Args         string         `json:"args"`
	Loops        int            `json:"loops"`
	Broken       int            `json:"broken"`
	Incidents    int            `json:"incidents"`
	Actions      int            `json:"actions"`
	RateLimited  int            `json:"rate_limited"`
	Outcomes     map[string]int `json:"outcomes"`
	FirstToLast  float64        `json:"first_to_last_ms"`
	KillMS       []float64      `json:"kill_ms"`
	KmsgLost     int            `json:"kmsg_lost"`
	WaitedS      float64        `json:"waited_s"`
	Err          string         `json:"err"`
	ActionErrors []string       `json:"action_errors"`
}

// BenchmarkVMStorm is measurement 3: 50 loops at once under the real daemon
// at its defaults and with --max-actions-per-minute 100 (6.12-v2; set
// OOMWATCH_VM_COMBOS=6.12-v2,6.1-v1 for v1 too).
func BenchmarkVMStorm(b *testing.B) {
	var rs []stormResult
	var rows []benchrow.Row
	for _, c := range combosFromEnv(Combo{"6.12", V2}) {
		out := scaleVM(b, c, "^TestScaleStorm$", map[string]string{"OOMWATCH_VM_STORM": "1"}, 2048, 20*time.Minute)
		n := len(rs)
		for _, s := range out["storm"] {
			var r stormResult
			if json.Unmarshal([]byte(s), &r) == nil {
				rs = append(rs, r)
				rows = append(rows, stormRows(b.Name(), r)...)
			}
		}
		if len(rs) == n {
			rows = append(rows, noResult(b, benchrow.Storm, c.String()+" VM"))
		}
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "storm: loops started together; last = first kmsg \"no killable\" → last \"Killed process\" of a storm hog\n")
	fmt.Fprintf(&sb, "%-8s %-38s %5s %6s %9s %7s %11s %9s %9s %9s  %s\n", "combo", "daemon", "loops", "broken", "incidents", "actions", "rate-waits", "p50 ms", "last ms", "lost kmsg", "ladder outcomes")
	for _, r := range rs {
		p50 := "-"
		if len(r.KillMS) > 0 {
			p50 = strconv.FormatFloat(pct(r.KillMS, 50), 'f', 0, 64)
		}
		fmt.Fprintf(&sb, "%-8s %-38s %5d %6d %9d %7d %11d %9s %9.0f %9d  %v %s %v\n", r.Combo, "oomwatch "+r.Args, r.Loops, r.Broken, r.Incidents, r.Actions, r.RateLimited,
			p50, r.FirstToLast, r.KmsgLost, r.Outcomes, r.Err, r.ActionErrors)
		b.ReportMetric(float64(r.Broken), strings.ReplaceAll(r.Combo+"-"+r.Args, " ", "_")+"-broken")
	}
	b.Log("\n" + sb.String())
	fmt.Print(sb.String())
	benchrow.Emit(rows...)
}
