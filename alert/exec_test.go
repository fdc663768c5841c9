package alert

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/oomwatch/oomwatch/test/testhost"
)

// hookScript writes a /bin/sh script; hooks are run from argv, the script
// is a fixed file, never event data.
func hookScript(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "hook.sh")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func execConfig(argv ...string) Config {
	return Config{Exec: []ExecConfig{{Delivery: Delivery{Name: "hook"}, Command: argv}}}
}

// setOwnAdj sets the test process's oom_score_adj and restores it. Raising
// needs no privilege; lowering back works down to the floor the process
// inherited (oom_score_adj_min), which is what the original value was.
func setOwnAdj(t *testing.T, v int) {
	t.Helper()
	orig, err := os.ReadFile("/proc/self/oom_score_adj")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile("/proc/self/oom_score_adj", []byte(strconv.Itoa(v)), 0); err != nil {
		t.Fatalf("raise own oom_score_adj to %d: %v", v, err)
	}
	t.Cleanup(func() {
		if err := os.WriteFile("/proc/self/oom_score_adj", bytes.TrimSpace(orig), 0); err != nil {
			t.Errorf("restore oom_score_adj %s: %v", orig, err)
		}
	})
}

func TestExecHookStdinEnvAdj(t *testing.T) {
	out := t.TempDir()
	hook := hookScript(t, `cat > "$1/stdin"; env > "$1/env"; cat /proc/self/oom_score_adj > "$1/adj"`)
	cfg := execConfig("/bin/sh", hook, out)
	cfg.Exec[0].Env = []string{"HOOK_TEST_PASS"}
	t.Setenv("NOTIFY_SOCKET", "/run/systemd/notify")
	t.Setenv("WATCHDOG_USEC", "30000000")
	t.Setenv("SOME_SECRET", "hunter2")
	t.Setenv("HOOK_TEST_PASS", "yes")
	// The daemon runs at -900 under systemd; this host lacks
	// CAP_SYS_RESOURCE, so the test cannot go below 0 and simulates the
	// inherited value with a positive one: the reset path is the same.
	setOwnAdj(t, 100)

	d, err := New(cfg, fastOpts(""), testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	doc := testDoc(TypeDetected, "inc-exec")
	d.Send(doc)
	waitFor(t, "hook", func() bool { return stat(d, "hook").Sent == 1 })
	closeNow(t, d, time.Second)

	stdin, _ := os.ReadFile(filepath.Join(out, "stdin"))
	want, _ := json.Marshal(doc)
	if !bytes.Equal(stdin, want) {
		t.Errorf("stdin:\n%s\nwant exactly the document:\n%s", stdin, want)
	}
	checkDocument(t, stdin)

	envb, _ := os.ReadFile(filepath.Join(out, "env"))
	env := map[string]string{}
	for _, line := range strings.Split(string(envb), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, " ") {
			env[k] = v
		}
	}
	for k, v := range map[string]string{
		"OOMWATCH_EVENT": doc.EventID, "OOMWATCH_INCIDENT": "inc-exec", "OOMWATCH_TYPE": "detected",
		"OOMWATCH_STATUS": "firing", "OOMWATCH_SEVERITY": "critical", "OOMWATCH_CONTAINER": "web1`x`",
		"OOMWATCH_UNIT": "lxc@web1.service", "OOMWATCH_HOST": "host-1", "HOOK_TEST_PASS": "yes", "LANG": env["LANG"],
	} {
		if env[k] != v || v == "" {
			t.Errorf("env %s=%q, want %q", k, env[k], v)
		}
	}
	if !strings.Contains(string(envb), "OOMWATCH_CGROUP=/lxc.payload.web1/evil\n\"$(reboot)\"\\xc3") {
		t.Errorf("OOMWATCH_CGROUP not passed verbatim (as data):\n%s", envb)
	}
	for _, k := range []string{"NOTIFY_SOCKET", "WATCHDOG_USEC", "SOME_SECRET"} {
		if _, ok := env[k]; ok {
			t.Errorf("hook got %s", k)
		}
	}
	if adj, _ := os.ReadFile(filepath.Join(out, "adj")); strings.TrimSpace(string(adj)) != "0" {
		t.Errorf("hook oom_score_adj %q, want 0 (oomwatch at 100)", adj)
	}
}

func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// A zombie waits for its (re)parent to reap it: it is dead.
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || b[i+2] != 'Z'
}

func TestExecHookTimeoutKillsGroup(t *testing.T) {
	out := t.TempDir()
	hook := hookScript(t, `sleep 100 & echo $! > "$1/grandchild"; echo $$ > "$1/hook"; sleep 100`)
	cfg := execConfig("/bin/sh", hook, out)
	cfg.Exec[0].Timeout = 300 * time.Millisecond
	cfg.Exec[0].MaxAttempts = 1
	d, err := New(cfg, fastOpts(""), testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	d.Send(testDoc(TypeDetected, "hang"))
	waitFor(t, "timeout", func() bool { return stat(d, "hook").Failed == 1 })
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("hung hook took %v to be given up", took)
	}
	closeNow(t, d, time.Second)
	for _, f := range []string{"hook", "grandchild"} {
		b, err := os.ReadFile(filepath.Join(out, f))
		if err != nil {
			t.Fatalf("%s pid: %v", f, err)
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		waitFor(t, f+" gone", func() bool { return !alive(pid) })
		if pid > 0 && syscall.Kill(pid, 0) == nil && alive(pid) {
			t.Errorf("%s %d still alive", f, pid)
		}
	}
}

func TestExecHookFailureRetriedBounded(t *testing.T) {
	out := t.TempDir()
	hook := hookScript(t, `echo run >> "$1/runs"; echo boom >&2; exit 3`)
	var logs testhost.SyncBuf
	d, err := New(execConfig("/bin/sh", hook, out), fastOpts(""), zerologTo(&logs))
	if err != nil {
		t.Fatal(err)
	}
	d.Send(testDoc(TypeDetected, "fail"))
	waitFor(t, "given up", func() bool { return stat(d, "hook").Failed == 1 })
	time.Sleep(100 * time.Millisecond)
	closeNow(t, d, time.Second)
	runs, _ := os.ReadFile(filepath.Join(out, "runs"))
	if n := strings.Count(string(runs), "run"); n != 3 {
		t.Errorf("hook ran %d times, want max_attempts 3", n)
	}
	if s := stat(d, "hook"); s.Retried != 2 || s.Sent != 0 {
		t.Errorf("stats %+v", s)
	}
	if !strings.Contains(logs.String(), `"stderr":"boom\n"`) || !strings.Contains(logs.String(), "exit status 3") {
		t.Errorf("failure not reported with its output:\n%s", logs.String())
	}
}

func TestExecHookOutputCapped(t *testing.T) {
	hook := hookScript(t, `cat >/dev/null; head -c 1000000 /dev/zero | tr '\0' x; head -c 200000 /dev/zero >&2`)
	var logs testhost.SyncBuf
	d, err := New(execConfig("/bin/sh", hook), Options{Version: "test"}, zerologTo(&logs).Level(-1))
	if err != nil {
		t.Fatal(err)
	}
	d.Send(testDoc(TypeDetected, "loud"))
	waitFor(t, "hook", func() bool { return stat(d, "hook").Sent == 1 })
	closeNow(t, d, time.Second)
	var line struct {
		Stdout    string `json:"stdout"`
		Truncated bool   `json:"output_truncated"`
	}
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "hook ran") {
			json.Unmarshal([]byte(l), &line)
		}
	}
	if len(line.Stdout) != maxHookOutput || !line.Truncated {
		t.Errorf("stdout logged: %d bytes, truncated %t; want %d, true", len(line.Stdout), line.Truncated, maxHookOutput)
	}
}

func TestExecEnvValidation(t *testing.T) {
	for _, name := range []string{"NOTIFY_SOCKET", "WATCHDOG_PID", "OOMWATCH_CGROUP", "LD_PRELOAD", "bad-name"} {
		cfg := execConfig("/bin/true")
		cfg.Exec[0].Env = []string{name}
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "alert exec[0] (hook): env") {
			t.Errorf("env %s: Validate = %v", name, err)
		}
	}
	if err := execConfig("true").Validate(); err == nil || !strings.Contains(err.Error(), "absolute path") {
		t.Errorf("relative argv[0]: %v", err)
	}
}
