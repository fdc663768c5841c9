package procfs

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// These tests use the real /proc, but only on children the test starts.

// startSleep starts `sleep 30`; cleanup kills and reaps it if still there.
func startSleep(t *testing.T) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatalf("start sleep: %v", err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	// Start returns once exec passed its point of no return (the CLOEXEC
	// pipe closed), which is before the new argv is in place: wait for it,
	// or a read of cmdline may find it empty.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		b, _ := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/cmdline")
		if string(b) == "sleep\x0030\x00" {
			return cmd
		}
		if time.Now().After(deadline) {
			t.Fatalf("sleep's cmdline is %q after 5s", b)
		}
	}
}

func readAdjFile(t *testing.T, pid int) string {
	t.Helper()
	return readProcFile(t, pid, "oom_score_adj")
}

func readProcFile(t *testing.T, pid int, name string) string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func anyCgroup([]CgroupLine) bool { return true }

func TestOpenSetOOMScoreAdj(t *testing.T) {
	checkFDs(t)
	cmd := startSleep(t)
	pid := cmd.Process.Pid
	before := readAdjFile(t, pid)

	h, err := New("/proc").Open(pid, anyCgroup)
	if err != nil {
		t.Fatalf("Open(%d): %v", pid, err)
	}
	defer h.Close()
	if h.PID() != pid {
		t.Errorf("PID() = %d, want %d", h.PID(), pid)
	}

	// Validation happens before any write.
	for _, v := range []int{-1001, 1001} {
		err := h.SetOOMScoreAdj(v)
		if err == nil || !strings.Contains(err.Error(), strconv.Itoa(pid)) || !strings.Contains(err.Error(), strconv.Itoa(v)) {
			t.Errorf("SetOOMScoreAdj(%d) error = %v, want one naming pid and value", v, err)
		}
	}
	if got := readAdjFile(t, pid); got != before {
		t.Fatalf("oom_score_adj changed to %s by a refused write", got)
	}

	// Raising needs no capability (this host lacks CAP_SYS_RESOURCE, so
	// lowering below the floor is not tested).
	if err := h.SetOOMScoreAdj(500); err != nil {
		t.Fatalf("SetOOMScoreAdj(500): %v", err)
	}
	if got := readAdjFile(t, pid); got != "500" {
		t.Errorf("/proc/%d/oom_score_adj = %s, want 500", pid, got)
	}
	p, err := h.Proc()
	if err != nil {
		t.Fatal(err)
	}
	// oom_adj reads oom_score_adj*17/1000. [6.12 fs/proc/base.c:oom_adj_read]
	if p.PID != pid || p.PPID != os.Getpid() || p.Comm != "sleep" || p.OOMScoreAdj != 500 ||
		p.OOMAdj() != 8 || readProcFile(t, pid, "oom_adj") != "8" || p.Unkillable() || p.Exiting() || !reflect.DeepEqual(p.Cmdline, []string{"sleep", "30"}) {
		t.Errorf("Proc() = %+v", p)
	}
	lines, err := h.Cgroups()
	if err != nil || len(lines) == 0 {
		t.Errorf("Cgroups() = %v, %v", lines, err)
	}

	if err := h.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := h.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := h.SetOOMScoreAdj(600); !errors.Is(err, fs.ErrClosed) {
		t.Errorf("SetOOMScoreAdj after Close = %v, want fs.ErrClosed", err)
	}
	if _, err := h.Proc(); !errors.Is(err, fs.ErrClosed) {
		t.Errorf("Proc after Close = %v, want fs.ErrClosed", err)
	}
	if err := h.Kill(); !errors.Is(err, fs.ErrClosed) {
		t.Errorf("Kill after Close = %v, want fs.ErrClosed", err)
	}
}

func TestHandleKill(t *testing.T) {
	checkFDs(t)
	cmd := startSleep(t)
	pid := cmd.Process.Pid
	fsys := New("/proc")
	h, err := fsys.Open(pid, anyCgroup)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()

	if err := h.Kill(); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	err = cmd.Wait()
	ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child ended with %v, want SIGKILL", err)
	}

	// Reaped: the handle never reaches whatever gets the PID next.
	if _, err := h.Proc(); !errors.Is(err, ErrGone) {
		t.Errorf("Proc after reap = %v, want ErrGone", err)
	}
	if err := h.SetOOMScoreAdj(100); !errors.Is(err, ErrGone) {
		t.Errorf("SetOOMScoreAdj after reap = %v, want ErrGone", err)
	}
	if err := h.Kill(); !errors.Is(err, ErrGone) {
		t.Errorf("Kill after reap = %v, want ErrGone", err)
	}
	if _, err := h.Cgroups(); !errors.Is(err, ErrGone) {
		t.Errorf("Cgroups after reap = %v, want ErrGone", err)
	}
	if _, err := fsys.Open(pid, anyCgroup); !errors.Is(err, ErrGone) {
		t.Errorf("Open(reaped %d) = %v, want ErrGone", pid, err)
	}
}

// A zombie still accepts signal 0 and keeps its PID until reaped, so Open
// works and Proc reports it as exiting.
func TestOpenZombie(t *testing.T) {
	checkFDs(t)
	cmd := startSleep(t)
	pid := cmd.Process.Pid
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	fsys := New("/proc")
	deadline := time.Now().Add(10 * time.Second)
	for {
		p, err := fsys.Proc(pid)
		if err != nil {
			t.Fatal(err)
		}
		if p.State == 'Z' {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("child still in state %c", p.State)
		}
		time.Sleep(10 * time.Millisecond)
	}
	h, err := fsys.Open(pid, anyCgroup)
	if err != nil {
		t.Fatalf("Open(zombie): %v", err)
	}
	defer h.Close()
	p, err := h.Proc()
	if err != nil {
		t.Fatal(err)
	}
	if !p.Exiting() || p.RSS != 0 || p.Cmdline != nil {
		t.Errorf("zombie Proc = %+v", p)
	}
	cmd.Wait()
	if _, err := h.Proc(); !errors.Is(err, ErrGone) {
		t.Errorf("Proc after reap = %v, want ErrGone", err)
	}
}

func TestOpenNotInCgroup(t *testing.T) {
	checkFDs(t)
	cmd := startSleep(t)
	pid := cmd.Process.Pid
	fsys := New("/proc")
	before := readAdjFile(t, pid)

	var seen []CgroupLine
	h, err := fsys.Open(pid, func(l []CgroupLine) bool { seen = l; return false })
	if !errors.Is(err, ErrNotInCgroup) || h != nil {
		t.Fatalf("Open = %v, %v; want ErrNotInCgroup", h, err)
	}
	if !strings.Contains(err.Error(), strconv.Itoa(pid)) || !strings.Contains(err.Error(), "0::") {
		t.Errorf("error %q should name the pid and the cgroups found", err)
	}
	want, err := fsys.Cgroups(pid)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(seen, want) {
		t.Errorf("inCgroup saw %+v, want %+v", seen, want)
	}
	if got := readAdjFile(t, pid); got != before {
		t.Errorf("oom_score_adj changed from %s to %s", before, got)
	}
	if _, err := fsys.Open(pid, nil); err == nil {
		t.Error("Open with nil inCgroup succeeded")
	}
}

func TestOpenProtected(t *testing.T) {
	checkFDs(t)
	called := false
	in := func([]CgroupLine) bool { called = true; return true }
	for _, pid := range []int{1, 0, -1, os.Getpid()} {
		h, err := New("/proc").Open(pid, in)
		if !errors.Is(err, ErrProtected) || h != nil {
			t.Errorf("Open(%d) = %v, %v; want ErrProtected", pid, h, err)
		}
	}
	if called {
		t.Error("inCgroup was consulted for a protected pid")
	}
}

// A fake tree cannot back a Handle: the pidfd would be for a real process and
// the directory for a fake one.
func TestOpenNeedsRealProc(t *testing.T) {
	checkFDs(t)
	cmd := startSleep(t)
	pid := cmd.Process.Pid
	root := t.TempDir()
	fakeProc{pid: pid, ppid: 1, comm: "fake"}.write(t, root)
	if _, err := New(root).Open(pid, anyCgroup); !errors.Is(err, ErrNotProcRoot) {
		t.Errorf("Open on fake root = %v, want ErrNotProcRoot", err)
	}
}

// A thread ID is not a process: pidfd_open refuses it (EINVAL per the man
// page; ENOENT observed on 6.18) and we must not turn that into success or,
// unless the thread really exited meanwhile (ESRCH), into ErrGone.
func TestOpenThreadID(t *testing.T) {
	checkFDs(t)
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		tid, _ := strconv.Atoi(e.Name())
		if tid == os.Getpid() {
			continue
		}
		h, err := New("/proc").Open(tid, anyCgroup)
		if err == nil {
			h.Close()
			t.Fatalf("Open(thread %d) succeeded", tid)
		}
		if errors.Is(err, ErrGone) {
			t.Logf("thread %d exited meanwhile: %v", tid, err)
		} else if !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			t.Errorf("Open(thread %d) = %v, want EINVAL or ENOENT from pidfd_open", tid, err)
		}
		t.Logf("Open(thread %d): %v", tid, err)
		return
	}
	t.Skip("no other thread")
}
