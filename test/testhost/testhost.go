// Package testhost holds what the host-tier tests of several packages share:
// a memory hog re-executed from the test binary itself, the host's cgroup v1
// memory hierarchy (or the tier gate when there is none), and a log buffer
// that tests read while a daemon writes to it.
package testhost

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/oomwatch/oomwatch/internal/cgroupfs"
	"github.com/oomwatch/oomwatch/test/fixture"
	"github.com/oomwatch/oomwatch/test/testtier"
)

// Hog is a running hog.
type Hog struct {
	Cmd  *exec.Cmd
	once sync.Once
}

// StartHog starts test/testbin/hog (-wait-stdin), writes its PID to procsFile (a
// cgroup.procs) and lets it touch mb MiB there. It is killed when the
// test ends (cleanups run last-in first-out: register the cgroup's removal
// before calling StartHog), or earlier by Kill.
func StartHog(t testing.TB, procsFile string, mb int) *Hog {
	t.Helper()
	cmd := exec.Command(hogPath(t), "-wait-stdin", "-mb", strconv.Itoa(mb))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &Hog{Cmd: cmd}
	t.Cleanup(h.Kill)
	if err := os.WriteFile(procsFile, []byte(strconv.Itoa(cmd.Process.Pid)), 0); err != nil {
		t.Fatalf("move hog pid %d to %s: %v", cmd.Process.Pid, procsFile, err)
	}
	if _, err := stdin.Write([]byte{'\n'}); err != nil {
		t.Fatal(err)
	}
	return h
}

// Pid is the hog's PID.
func (h *Hog) Pid() int { return h.Cmd.Process.Pid }

// Kill kills the hog and reaps it; later calls do nothing.
func (h *Hog) Kill() {
	h.once.Do(func() {
		_ = h.Cmd.Process.Kill()
		_ = h.Cmd.Wait()
	})
}

// V1Root returns the host's cgroup v1 memory hierarchy, or gates the test on
// the host tier (root, v1 memory, v1 memory events).
func V1Root(t testing.TB) string {
	t.Helper()
	if os.Geteuid() != 0 {
		testtier.Require(t, testtier.Host, "needs root")
	}
	h, err := cgroupfs.Detect("/proc")
	if err != nil || h.Version != 1 {
		testtier.Require(t, testtier.Host, fmt.Sprintf("needs a cgroup v1 memory hierarchy (found %v, %v)", h, err))
	}
	if _, err := os.Stat(filepath.Join(h.Root, "cgroup.event_control")); err != nil {
		testtier.Require(t, testtier.Host, "kernel without v1 memory events: "+err.Error())
	}
	return h.Root
}

// MakeStalling turns the v1 memory cgroup dir into one whose tasks stall
// under_oom at limit bytes: the limit (memsw too, where there is swap
// accounting) and oom_kill_disable=1.
func MakeStalling(t testing.TB, dir string, limit int) {
	t.Helper()
	v := strconv.Itoa(limit)
	files := []string{"memory.limit_in_bytes"}
	if _, err := os.Stat(filepath.Join(dir, "memory.memsw.limit_in_bytes")); err == nil {
		files = append(files, "memory.memsw.limit_in_bytes") // memsw ≥ limit: set after it
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(v), 0); err != nil {
			t.Fatalf("write %s to %s: %v", v, filepath.Join(dir, f), err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "memory.oom_control"), []byte("1"), 0); err != nil {
		t.Fatalf("set oom_kill_disable in %s: %v", dir, err)
	}
}

// SyncBuf is a log sink that tests read while the code under test writes.
type SyncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// BuildHog builds test/testbin/hog (static) into a temporary directory
// and returns its path. It needs the go command, as every host test run has.
func BuildHog(t testing.TB) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "hog")
	if err := buildHog(out); err != nil {
		t.Fatal(err)
	}
	return out
}

func buildHog(out string) error {
	cmd := exec.Command(fixture.GoTool(), "build", "-o", out, "github.com/oomwatch/oomwatch/test/testbin/hog")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build hog: %v\n%s", err, b)
	}
	return nil
}

// hogPath is the hog StartHog runs, built once per test binary.
var hogPath = func() func(t testing.TB) string {
	var (
		once sync.Once
		path string
		err  error
	)
	return func(t testing.TB) string {
		t.Helper()
		once.Do(func() {
			var dir string
			if dir, err = os.MkdirTemp("", "oomwatch-testhost-hog-"); err == nil {
				path = filepath.Join(dir, "hog")
				err = buildHog(path)
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		return path
	}
}()

// StartSleepers starts the hog at path as argv0 with -fork n (-fork-distinct
// if distinct) and args after its flags, moves it into procsFile's cgroup
// and returns once its n forked children exist there: n+1 sleeping tasks,
// all sharing the hog's argv (see the hog's forkSleepers). The cleanup
// stops the hog with SIGTERM, which kills and reaps the children, and
// SIGKILLs what is left in the cgroup. Register the cgroup's removal before
// calling it.
func StartSleepers(t testing.TB, path, procsFile, argv0 string, n int, distinct bool, args ...string) *exec.Cmd {
	t.Helper()
	dir := t.TempDir()
	flags := []string{"-wait-stdin", "-fork", strconv.Itoa(n), "-ready", "ready"} // a relative path: no "/" in the cmdline
	if distinct {
		flags = append(flags, "-fork-distinct")
	}
	cmd := exec.Command(path, append(append(flags, "--"), args...)...)
	cmd.Args[0], cmd.Dir = argv0, dir
	var stderr SyncBuf
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		// Anything still in the cgroup is ours (the hog's children if it died
		// before reaping them).
		if b, err := os.ReadFile(procsFile); err == nil {
			for _, f := range bytes.Fields(b) {
				if pid, err := strconv.Atoi(string(f)); err == nil {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
	})
	if err := os.WriteFile(procsFile, []byte(strconv.Itoa(cmd.Process.Pid)), 0); err != nil {
		t.Fatalf("move hog pid %d to %s: %v", cmd.Process.Pid, procsFile, err)
	}
	if _, err := stdin.Write([]byte{'\n'}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if _, err := os.Stat(filepath.Join(dir, "ready")); err == nil {
			return cmd
		}
		select {
		case <-exited:
			t.Fatalf("hog -fork %d exited before it was ready: %v; stderr: %s", n, cmd.ProcessState, stderr.String())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("hog -fork %d not ready after 2 minutes; stderr: %s", n, stderr.String())
		}
	}
}

// HugeArgv is a tenant's argv of about 1.8 MB after the program name:
// "-Dapp=web1" and 15 arguments of 120,000 bytes (the kernel takes at most
// 128 KiB per argument, and a quarter of the 8 MiB stack limit in all).
func HugeArgv() []string {
	args := []string{"-Dapp=web1"}
	for i := 0; i < 15; i++ {
		args = append(args, strings.Repeat("x", 120000))
	}
	return args
}
