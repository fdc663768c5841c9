package watchdog

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/oomwatch/oomwatch/internal/cgroupfs"
	"github.com/oomwatch/oomwatch/internal/procfs"
	"github.com/oomwatch/oomwatch/test/testhost"
)

// HostileNames are cgroup names a container can give its delegated cgroups:
// shell metacharacters, quotes, control characters, invalid UTF-8, a
// display-reversing code point and the longest name a file system allows.
var HostileNames = []string{
	"nl\nforged line",
	`q"uo'te`,
	"$(touch pwned)",
	"`id`",
	"bad\xff\xfeutf8",
	"esc\x1b[31mred\rcr\ttab",
	"rtl\u202etxt.exe",
	strings.Repeat("L", 255),
}

// HostileComms are process names (comm is at most 15 bytes).
var HostileComms = []string{
	"a\nb",
	`"x'`,
	"$(reboot)",
	"`rm`",
	"\xff\xfe",
	"x) R 1 (y",
	"\x1b[2J",
	"ok",
}

// CheckJSONLines fails for any line of out that is not one valid JSON
// object made of printable, valid UTF-8 text.
func CheckJSONLines(t *testing.T, what, out string) []map[string]any {
	t.Helper()
	var objs []map[string]any
	for i, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if !utf8.ValidString(l) {
			t.Errorf("%s line %d is not valid UTF-8: %q", what, i+1, l)
		}
		for _, r := range l {
			if r < 0x20 || r == 0x7f {
				t.Errorf("%s line %d holds a raw control character %U: %q", what, i+1, r, l)
				break
			}
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Errorf("%s line %d is not one JSON object (%v): %q", what, i+1, err, l)
			continue
		}
		objs = append(objs, m)
	}
	return objs
}

// TestFaultHostileNamesLogged: loops in cgroups with hostile names, whose
// tasks and their protecting ancestors have hostile comms. Every zerolog
// line (ready, incident, resolved) stays one valid JSON object with no raw
// control character, and each incident names its cgroup.
func TestFaultHostileNamesLogged(t *testing.T) {
	cgRoot, procRoot := t.TempDir(), t.TempDir()
	must(t, os.WriteFile(filepath.Join(cgRoot, "cgroup.controllers"), []byte("memory pids\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(cgRoot, "cgroup.procs"), []byte("1\n"), 0o644))
	writeProc(t, procRoot, 1, 0, "init", 0, 1000)
	for i, name := range HostileNames {
		origin, task := 1000+2*i, 1001+2*i
		writeProc(t, procRoot, origin, 1, HostileComms[i], -1000, 100)
		writeProc(t, procRoot, task, origin, HostileComms[len(HostileComms)-1-i], -1000, 50000)
		writeCgroup(t, cgRoot, name, "20971520", task)
		// The kernel escapes the name in status (comm stays raw in stat).
		for _, pid := range []int{origin, task} {
			st, err := os.ReadFile(filepath.Join(procRoot, fmt.Sprint(pid), "status"))
			must(t, err)
			name := strings.SplitN(strings.TrimPrefix(string(st), "Name:\t"), "\nState:", 2)[0]
			esc := strings.NewReplacer("\\", `\\`, "\n", `\n`).Replace(name)
			must(t, os.WriteFile(filepath.Join(procRoot, fmt.Sprint(pid), "status"), []byte(strings.Replace(string(st), name, esc, 1)), 0o644))
		}
	}
	h, err := cgroupfs.Open(cgRoot, "")
	must(t, err)
	h.AnyFS = true
	rec := newRecorder()
	var logs testhost.SyncBuf
	ready := make(chan int, 1)
	w, err := New(Config{CG: h, Proc: procfs.New(procRoot), Detector: DefaultParams, ResolveAfter: 300 * time.Millisecond,
		Ready: func(n int) { ready <- n }}, rec, zerolog.New(&logs).With().Timestamp().Logger())
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	if n := <-ready; n != len(HostileNames)+1 {
		t.Fatalf("armed %d cgroups, want %d", n, len(HostileNames)+1)
	}
	waitBaselines(t, w)
	for _, name := range HostileNames {
		setEvents(t, cgRoot, name, 2, 0, 2)
		setEvents(t, cgRoot, name, 9, 0, 9)
	}
	defer func() {
		if t.Failed() {
			t.Logf("log:\n%s", logs.String())
			for _, i := range rec.opened {
				t.Logf("opened %q", i.Cgroup)
			}
		}
	}()
	rec.waitFor(t, "one loop incident per hostile cgroup", func() bool { return len(rec.opened) == len(HostileNames) })
	rec.waitFor(t, "every incident resolved", func() bool { return len(rec.resolved) == len(HostileNames) })
	for _, inc := range rec.opened {
		if inc.Verdict != VerdictLoop || inc.Origin == nil {
			t.Errorf("incident %q: verdict %s origin %v", inc.Cgroup, inc.Verdict, inc.Origin)
		}
	}
	cancel()
	<-done
	done <- nil

	objs := CheckJSONLines(t, "watchdog log", logs.String())
	logged := map[string]bool{}
	for _, m := range objs {
		if m["event"] == "incident" {
			logged[m["cgroup"].(string)] = true
		}
	}
	for _, name := range HostileNames {
		cg := "/" + name
		cg = string([]rune(cg)) // zerolog: one U+FFFD per invalid byte
		if !logged[cg] && !logged[procfs.Safe("/"+name)] {
			t.Errorf("no incident line names cgroup %q (logged: %q)", "/"+name, keys(logged))
		}
	}
	if t.Failed() {
		t.Logf("log:\n%s", logs.String())
	}
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestFaultCgroupRemovedDuringInspection: the looping cgroup's task exits and
// the cgroup is removed while the watchdog is reading the task (between
// cgroup.procs and /proc/PID). The stat file of the fake task is a FIFO, so
// the test knows the inspection is under way when the watchdog opens it, and
// changes the world right then. No incident may be opened for the removed
// cgroup; the cgroup is forgotten and a loop elsewhere is still found.
func TestFaultCgroupRemovedDuringInspection(t *testing.T) {
	cgRoot, procRoot := t.TempDir(), t.TempDir()
	writeV2Root(t, cgRoot)
	writeProc(t, procRoot, 1, 0, "init", 0, 1000)
	writeProc(t, procRoot, 100, 1, "java", -1000, 900000)
	writeProc(t, procRoot, 200, 1, "java", -1000, 900000)
	stat := filepath.Join(procRoot, "100", "stat")
	statText, err := os.ReadFile(stat)
	must(t, err)
	must(t, os.Remove(stat))
	must(t, unix.Mkfifo(stat, 0o600))
	writeCgroup(t, cgRoot, "gone", "20971520", 100)
	writeCgroup(t, cgRoot, "other", "20971520", 200)

	h, err := cgroupfs.Open(cgRoot, "")
	must(t, err)
	h.AnyFS = true
	rec := newRecorder()
	var logs testhost.SyncBuf
	w, err := New(Config{CG: h, Proc: procfs.New(procRoot), Detector: DefaultParams, ResolveAfter: 300 * time.Millisecond},
		rec, zerolog.New(&logs))
	must(t, err)
	startRun(t, w)
	rec.waitFor(t, "3 cgroups watched", func() bool { return w.Stats().Watched == 3 })
	waitBaselines(t, w)

	// The inspection blocks in open(stat) until this writer opens the FIFO.
	inspecting := make(chan error, 1)
	go func() {
		f, err := os.OpenFile(stat, os.O_WRONLY, 0)
		if err != nil {
			inspecting <- err
			return
		}
		// Mid-inspection: the task exits (its other /proc files go, so
		// the read after stat finds it gone) and its now empty cgroup
		// is removed. Then stat is answered.
		for _, name := range []string{"status", "cmdline", "oom_score_adj", "oom_adj", "cgroup"} {
			if err := os.Remove(filepath.Join(procRoot, "100", name)); err != nil {
				inspecting <- err
				return
			}
		}
		err = os.RemoveAll(filepath.Join(cgRoot, "gone"))
		if err == nil {
			_, err = f.Write(statText)
		}
		inspecting <- cmp.Or(err, f.Close())
	}()
	setEvents(t, cgRoot, "gone", 9, 0, 9)
	select {
	case err := <-inspecting:
		must(t, err)
	case <-time.After(10 * time.Second):
		if fd, err := unix.Open(stat, unix.O_RDONLY|unix.O_NONBLOCK, 0); err == nil {
			<-inspecting // the writer's open returns: no goroutine left behind
			unix.Close(fd)
		}
		t.Fatalf("the watchdog never inspected /gone's task; logs:\n%s", logs.String())
	}
	rec.waitFor(t, "/gone forgotten", func() bool { return w.Stats().Watched == 2 })
	if !strings.Contains(logs.String(), `"event":"gone_during_inspection","cgroup":"/gone"`) {
		t.Errorf("no gone_during_inspection event for /gone; logs:\n%s", logs.String())
	}

	// The daemon goes on: a loop in /other is found.
	setEvents(t, cgRoot, "other", 2, 0, 2)
	setEvents(t, cgRoot, "other", 9, 0, 9)
	rec.waitFor(t, "loop in /other", func() bool { return len(rec.opened) >= 1 })
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, inc := range rec.opened {
		if inc.Cgroup == "/gone" {
			t.Errorf("incident opened for the removed cgroup: %+v", inc)
		}
	}
	if got := rec.opened[0]; got.Cgroup != "/other" || got.Verdict != VerdictLoop {
		t.Errorf("incident %+v, want a loop in /other", got)
	}
}
