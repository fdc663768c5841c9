package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/rs/zerolog"

	"github.com/oomwatch/oomwatch/alert"
	"github.com/oomwatch/oomwatch/internal/cgroupfs"
	"github.com/oomwatch/oomwatch/internal/config"
	"github.com/oomwatch/oomwatch/internal/history"
	"github.com/oomwatch/oomwatch/internal/procfs"
	"github.com/oomwatch/oomwatch/internal/statusd"
	"github.com/oomwatch/oomwatch/policy"
	"github.com/oomwatch/oomwatch/report"
	"github.com/oomwatch/oomwatch/test/fixture"
	"github.com/oomwatch/oomwatch/test/testhost"
	"github.com/oomwatch/oomwatch/watchdog"
)

// hostileNames are cgroup names a container can give its delegated cgroups.
var hostileNames = []string{
	"nl\nforged   limit none  usage 0B  tasks 0",
	`q"uo'te`,
	"$(touch pwned)",
	"`id`",
	"bad\xff\xfeutf8",
	"esc\x1b[31mred\rcr\ttab",
	"rtl\u202etxt.exe",
	strings.Repeat("L", 255),
}

// hostileComms are process names (comm is at most 15 bytes, raw in stat).
var hostileComms = []string{"a\nb", `"x'`, "$(reboot)", "`rm`", "\xff\xfe", "x) R 1 (y", "\x1b[2J", "ok\r"}

// hostileTree builds a v2 tree with one limited cgroup per hostile name,
// each holding one -1000 task with a hostile comm, protected by a -1000
// ancestor with another hostile comm.
func hostileTree(t *testing.T) (cgRoot, procRoot string) {
	t.Helper()
	cgRoot, procRoot = t.TempDir(), t.TempDir()
	write := func(p, c string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	proc := func(pid, ppid, adj int, comm string) {
		dir := filepath.Join(procRoot, fmt.Sprint(pid))
		// stat carries comm raw; status escapes it like the kernel does.
		write(filepath.Join(dir, "stat"), fixture.StatLine(pid, comm, 'S', ppid, 0))
		write(filepath.Join(dir, "status"), "Name:\t"+strings.NewReplacer("\\", `\\`, "\n", `\n`).Replace(comm)+"\nUid:\t0\t0\t0\t0\nVmRSS:\t 1000 kB\n")
		write(filepath.Join(dir, "cmdline"), comm+"\x00--flag=$(x)\x00")
		write(filepath.Join(dir, "oom_score_adj"), fmt.Sprintf("%d\n", adj))
		write(filepath.Join(dir, "oom_adj"), "0\n")
		write(filepath.Join(dir, "cgroup"), "0::/\n")
	}
	write(filepath.Join(cgRoot, "cgroup.controllers"), "memory\n")
	write(filepath.Join(cgRoot, "cgroup.procs"), "1\n")
	proc(1, 0, 0, "init")
	for i, name := range hostileNames {
		origin, task := 1000+2*i, 1001+2*i
		proc(origin, 1, -1000, hostileComms[i])
		proc(task, origin, -1000, hostileComms[len(hostileComms)-1-i])
		write(filepath.Join(cgRoot, name, "cgroup.procs"), fmt.Sprintf("%d\n", task))
		write(filepath.Join(cgRoot, name, "memory.max"), "20971520\n")
		write(filepath.Join(cgRoot, name, "memory.current"), "20000000\n")
	}
	return cgRoot, procRoot
}

// checkText fails for raw control characters (other than the newlines
// that end lines) and invalid UTF-8 in out.
func checkText(t *testing.T, what, out string) {
	t.Helper()
	checkRaw(t, what, out, true)
}

// checkJSONText is checkText for JSON documents: JSON carries any valid
// UTF-8, so only C0/DEL control characters count (bidi overrides are a
// display matter for whoever renders the document).
func checkJSONText(t *testing.T, what, out string) {
	t.Helper()
	checkRaw(t, what, out, false)
}

func checkRaw(t *testing.T, what, out string, human bool) {
	t.Helper()
	if !utf8.ValidString(out) {
		t.Errorf("%s is not valid UTF-8", what)
	}
	for i, l := range strings.Split(out, "\n") {
		for _, r := range l {
			if r < 0x20 && r != '\t' || r == 0x7f || human && (r >= 0x80 && r < 0xa0 || r >= '\u202a' && r <= '\u202e' || r >= '\u2066' && r <= '\u2069') {
				t.Errorf("%s line %d holds a raw control character %U: %q", what, i+1, r, l)
				break
			}
		}
	}
}

// TestFaultHostileNamesScan: `oomwatch scan` on cgroups and processes with
// hostile names. Human output: one line per cgroup and per task, nothing
// raw; --json: valid JSON without raw control characters, every cgroup
// reported.
func TestFaultHostileNamesScan(t *testing.T) {
	cg, proc := hostileTree(t)
	code, out, errs := call("scan", "--cgroup-root", cg, "--proc-root", proc)
	if code != exitRisk {
		t.Fatalf("exit %d, want %d: %s", code, exitRisk, errs)
	}
	checkText(t, "scan output", out)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	// header; per cgroup: blank, cgroup line, table header, one task; blank;
	// the near-limit summary; the would-loop summary
	if want := 1 + 4*len(hostileNames) + 3; len(lines) != want {
		t.Errorf("scan printed %d lines, want %d (one per entry):\n%s", len(lines), want, out)
	}
	cgLines := 0
	for _, l := range lines {
		if strings.HasPrefix(l, "!! ") {
			cgLines++
			if !strings.Contains(l, "WOULD LOOP") {
				t.Errorf("cgroup line split or garbled: %q", l)
			}
		}
	}
	if cgLines != len(hostileNames) {
		t.Errorf("%d cgroup lines, want %d", cgLines, len(hostileNames))
	}

	code, out, _ = call("scan", "--json", "--cgroup-root", cg, "--proc-root", proc)
	checkJSONText(t, "scan --json", out)
	var res watchdog.ScanResult
	if err := json.Unmarshal([]byte(out), &res); err != nil || code != exitRisk {
		t.Fatalf("scan --json: exit %d, %v:\n%s", code, err, out)
	}
	if res.Risks != len(hostileNames) {
		t.Errorf("scan --json: %d risks, want %d", res.Risks, len(hostileNames))
	}
	got := map[string]bool{}
	for _, c := range res.Cgroups {
		got[c.Cgroup] = true
	}
	for _, n := range hostileNames {
		if !got["/"+n] && !got[string([]rune("/"+n))] {
			t.Errorf("scan --json lost cgroup %q", n)
		}
	}
}

// TestFaultHostileNamesIncidents: the incident journal (`oomwatch
// incidents`) and the alert document carry hostile names inertly.
func TestFaultHostileNamesIncidents(t *testing.T) {
	dir := t.TempDir()
	j := history.Open(dir, history.Options{})
	for i, n := range hostileNames {
		inc := &watchdog.Incident{ID: fmt.Sprintf("inc%d", i), Verdict: watchdog.VerdictLoop, Cgroup: "/" + n, Version: 2,
			Started: time.Now().Add(-time.Minute), Evidence: watchdog.Evidence{Window: time.Second, OOMs: 9},
			Candidates: []watchdog.Candidate{{PID: 10 + i, Comm: hostileComms[i], OOMScoreAdj: -1000, Unkillable: true}},
			Origin:     &watchdog.Origin{PID: 5, Comm: hostileComms[len(hostileComms)-1-i], ParentComm: hostileComms[i]}}
		if err := j.Append(history.Opened(inc, history.Names{Container: n}, []string{"kernel: " + n})); err != nil {
			t.Fatal(err)
		}
		act := policy.Action{Name: "reset-adj", PID: 10 + i, Comm: hostileComms[i], Done: true, Verified: true, Detail: n}
		if err := j.Append(history.Step(inc, act)); err != nil {
			t.Fatal(err)
		}
		doc := alert.NewDocument(alert.TypeRemediated, inc, alert.Names{Container: n}, []policy.Action{{Name: "reset-adj", Comm: hostileComms[i], Detail: n}}, "host", time.Now())
		b, err := json.Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		checkJSONText(t, "alert document", string(b))
	}
	j.Close()

	code, out, errs := call("incidents", "--state-dir", dir, "--limit", "0")
	if code != 0 {
		t.Fatalf("incidents: exit %d %s", code, errs)
	}
	checkText(t, "incidents output", out)
	// header, one line per incident, two footer lines (legend, journal)
	if lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n"); len(lines) != len(hostileNames)+3 {
		t.Errorf("incidents printed %d lines, want %d:\n%s", len(lines), len(hostileNames)+3, out)
	}
	code, out, _ = call("incidents", "--state-dir", dir, "--json")
	checkJSONText(t, "incidents --json", out)
	var incs []history.Incident
	if err := json.Unmarshal([]byte(out), &incs); err != nil || code != 0 || len(incs) != len(hostileNames) {
		t.Fatalf("incidents --json: exit %d, %v, %d incidents", code, err, len(incs))
	}
}

// TestFaultConfigWritableByOthersRefused: running as root, a config file
// (or its directory, or the directory of a symlink's target) that is not
// root's or that group or others can write is refused, at start and on
// reload (SIGHUP), with what to do.
func TestFaultConfigWritableByOthersRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the check applies when running as root")
	}
	body := "dry_run: true\n"
	mk := func(dirMode, fileMode os.FileMode, uid int) string {
		d := filepath.Join(t.TempDir(), "etc")
		if err := os.Mkdir(d, dirMode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(d, dirMode)
		p := filepath.Join(d, "oomwatch.yaml")
		if err := os.WriteFile(p, []byte(body), fileMode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, fileMode)
		if uid != 0 {
			if err := os.Chown(p, uid, uid); err != nil {
				t.Fatal(err)
			}
		}
		return p
	}
	symlinked := func() string {
		target := mk(0o777, 0o600, 0) // root's file in a world-writable directory
		link := filepath.Join(t.TempDir(), "oomwatch.yaml")
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
		return link
	}
	tests := []struct {
		name, path, want string
	}{
		{"group-writable file", mk(0o755, 0o664, 0), "writable by group or other"},
		{"world-writable file", mk(0o755, 0o646, 0), "writable by group or other"},
		{"file of another user", mk(0o755, 0o600, 1000), "owned by uid 1000"},
		{"world-writable directory", mk(0o777, 0o600, 0), "its directory"},
		{"group-writable directory", mk(0o775, 0o600, 0), "its directory"},
		{"symlink into a world-writable directory", symlinked(), "writable by group or other"},
	}
	cg, proc := fakeTree(t), fakeProcs(t)
	for _, tt := range tests {
		code, _, errs := call("run", "--config", tt.path, "--cgroup-root", cg, "--proc-root", proc, "--state-dir", t.TempDir(),
			"--status-socket", "", "--metrics-listen", "")
		if code == 0 || !strings.Contains(errs, tt.want) {
			t.Errorf("%s: run exit %d, %q: want refused with %q", tt.name, code, errs, tt.want)
		}
		if code, _, errs := call("check-config", tt.path); code == 0 || !strings.Contains(errs, tt.want) {
			t.Errorf("%s: check-config exit %d, %q", tt.name, code, errs)
		}
	}
	ok := mk(0o755, 0o600, 0)
	if code, out, errs := call("check-config", ok); code != 0 {
		t.Fatalf("root's 0600 file in a 0755 directory: exit %d %q %q", code, out, errs)
	}

	// Reload: a file that became group-writable is refused, the old config stays.
	cfg, err := config.LoadWith(ok, config.LoadOptions{Explicit: true, RequireRootOwned: true})
	if err != nil {
		t.Fatal(err)
	}
	holder := config.NewHolder(cfg, config.LoadOptions{Explicit: true, RequireRootOwned: true})
	w, err := watchdog.New(watchdog.Config{CG: cgroupfs.Hierarchy{Version: 2, Root: t.TempDir()}, Proc: procfs.New("/proc"), Detector: watchdog.DefaultParams}, nopHandler{}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ok, []byte("dry_run: false\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Chmod(ok, 0o620)
	var logs bytes.Buffer
	f := runFlags{configPath: ok, Overrides: config.Overrides{Set: map[string]bool{"config": true}}}
	disp := &report.Alerts{}
	reload(zerolog.New(&logs), &f, holder, w, disp, "")
	if !holder.Current().TopLevel().Policy.DryRun || !strings.Contains(logs.String(), `"event":"reload_failed"`) || !strings.Contains(logs.String(), "writable by group or other") {
		t.Errorf("reload of a group-writable file: dry_run now %v, log %s", holder.Current().TopLevel().Policy.DryRun, logs.String())
	}
}

// TestFaultSecretsNeverShown: alert secrets given inline and from files
// (webhook HMAC key, bearer header, URL path token, PagerDuty routing key)
// never appear in the daemon's log or in `oomwatch status` (human and
// JSON), nor in the errors of a config that is refused (check-config,
// start, reload).
func TestFaultSecretsNeverShown(t *testing.T) {
	cfgPath, _, secrets := secretConfig(t)
	leak := func(what, text string) {
		t.Helper()
		for _, s := range secrets {
			if strings.Contains(text, s) {
				t.Errorf("%s shows the secret %q:\n%s", what, s, text)
			}
		}
	}

	sock := filepath.Join(t.TempDir(), "oomwatch.sock")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs testhost.SyncBuf
	f := runFlags{roots: rootFlags{cgroupRoot: fakeTree(t), procRoot: fakeProcs(t)}, configPath: cfgPath, level: "debug", statusSocket: sock, Overrides: config.Overrides{StateDir: t.TempDir(), Policy: policy.DefaultOptions(), Detector: watchdog.DefaultParams, Set: map[string]bool{"config": true, "state-dir": true, "metrics-listen": true}}}
	done := make(chan error, 1)
	go func() { done <- run(ctx, zerolog.New(&logs).Level(zerolog.DebugLevel), f) }()
	var st statusd.Status
	var qerr error
	for i := 0; i < 250; i++ {
		if st, qerr = statusd.Query(sock); qerr == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if qerr != nil {
		cancel()
		t.Fatalf("status: %v\nlog:\n%s", qerr, logs.String())
	}
	if len(st.Alerts) != 4 {
		t.Errorf("status lists %d sinks, want 4: %+v", len(st.Alerts), st.Alerts)
	}
	b, _ := json.Marshal(st)
	leak("status --json", string(b))
	var human bytes.Buffer
	printStatus(&human, st, time.Now())
	leak("status", human.String())
	code, out, errs := call("status", "--socket", sock, "--json")
	leak("oomwatch status --json", out+errs)
	if code != 0 {
		t.Errorf("oomwatch status: exit %d %s", code, errs)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("run: %v", err)
	}
	leak("daemon log", logs.String())
}

// secretConfig writes a config whose alert sinks hold secrets inline and in
// files; it returns its path, its text and the secret values.
func secretConfig(t *testing.T) (string, string, []string) {
	t.Helper()
	dir := t.TempDir()
	hmacInline := base64.StdEncoding.EncodeToString([]byte("inline-hmac-key-0123456789abcdef"))
	hmacFile := base64.StdEncoding.EncodeToString([]byte("file-hmac-key-0123456789abcdefgh"))
	secrets := []string{hmacInline, hmacFile, "BEARER-TOKEN-SECRET", "URLPATHTOKENSECRET", "ROUTINGKEYINLINESECRET", "ROUTINGKEYFILESECRET"}
	write := func(name, c string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(c), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	secFile := write("hook-secret", "whsec_"+hmacFile+"\n")
	pdFile := write("pd-key", "ROUTINGKEYFILESECRET\n")
	good := fmt.Sprintf(`alerts:
  webhook:
    - name: chat
      url: https://hooks.example.com/services/T0/B0/URLPATHTOKENSECRET
      headers: {Authorization: "Bearer BEARER-TOKEN-SECRET"}
      secret: whsec_%s
    - name: chat2
      url: http://127.0.0.1:1/hook
      secret_file: %s
  pagerduty:
    - name: pd
      routing_key: ROUTINGKEYINLINESECRET
      url: http://127.0.0.1:1/enqueue
    - name: pd2
      routing_key_file: %s
      url: http://127.0.0.1:1/enqueue
`, hmacInline, secFile, pdFile)
	cfgPath := write("oomwatch.yaml", good)
	return cfgPath, good, secrets
}

// TestFaultSecretsNotInConfigErrors: a refused config (check-config, start,
// reload) is reported with an excerpt of the file; the excerpt must not
// show the alert secrets on the lines around the error.
func TestFaultSecretsNotInConfigErrors(t *testing.T) {
	cfgPath, good, secrets := secretConfig(t)
	leak := func(what, text string) {
		t.Helper()
		for _, s := range secrets {
			if strings.Contains(text, s) {
				t.Errorf("BUG: %s shows the secret %q:\n%s", what, s, text)
			}
		}
	}
	// A reload with a bad file whose error points next to the secrets.
	bad := strings.Replace(good, "      secret: whsec_", "      sekret: oops\n      secret: whsec_", 1)
	if err := os.WriteFile(cfgPath, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	_, out, errs := call("check-config", cfgPath)
	leak("check-config error", out+errs)
	holder := config.NewHolder(config.Defaults(), config.LoadOptions{Explicit: true})
	w, err := watchdog.New(watchdog.Config{CG: cgroupfs.Hierarchy{Version: 2, Root: t.TempDir()}, Proc: procfs.New("/proc"), Detector: watchdog.DefaultParams}, nopHandler{}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	var rl bytes.Buffer
	disp := &report.Alerts{}
	rf := runFlags{configPath: cfgPath, Overrides: config.Overrides{Set: map[string]bool{"config": true}, Policy: policy.DefaultOptions(), Detector: watchdog.DefaultParams}}
	reload(zerolog.New(&rl), &rf, holder, w, disp, "")
	if !strings.Contains(rl.String(), "reload_failed") {
		t.Errorf("bad reload not reported: %s", rl.String())
	}
	leak("reload_failed log", rl.String())
	code, _, errs := call("run", "--config", cfgPath, "--cgroup-root", fakeTree(t), "--proc-root", fakeProcs(t), "--status-socket", "", "--metrics-listen", "")
	if code == 0 {
		t.Errorf("run accepted the bad file")
	}
	leak("run start error", errs)
}

// TestFaultCheckConfigMatchesRun: check-config must refuse what run refuses:
// an unknown key in the alerts section.
func TestFaultCheckConfigMatchesRun(t *testing.T) {
	p := writeConfig(t, "alerts:\n  webhook:\n    - name: w\n      urll: http://127.0.0.1:1/x\n")
	os.Chmod(p, 0o600)
	code, _, runErrs := call("run", "--config", p, "--cgroup-root", fakeTree(t), "--proc-root", fakeProcs(t), "--status-socket", "", "--metrics-listen", "")
	if code == 0 || !strings.Contains(runErrs, "urll") {
		t.Fatalf("run: exit %d %q: want the unknown alerts key refused", code, runErrs)
	}
	if code, out, errs := call("check-config", p); code == 0 {
		t.Errorf("BUG: check-config says %q (exit 0) for a file run refuses with %q", strings.TrimSpace(out+errs), firstLine(runErrs))
	}
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
