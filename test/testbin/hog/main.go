// Command hog is the allocating workload of the VM and host test tiers.
//
// It optionally protects itself from the OOM killer (-adj / -legacy-adj), joins
// cgroups (-cgroup-procs, repeatable), forks copies of itself (-children),
// signals readiness (-ready) and then allocates and touches -mb MiB in 1 MiB
// anonymous mmap steps. Afterwards it sleeps forever, or exits with -exit.
// With -fork it first forks sleeping children without exec, which share its
// memory and its argv (arguments after the flags, or after "--", are only
// there to be seen in /proc/PID/cmdline).
// Build it static (CGO_ENABLED=0); copy it as "java" or "sshd" (or pass -comm)
// to make it look like one in /proc/PID/comm.
//
// It prints nothing unless something fails (then one line on stderr, exit 1).
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

func init() {
	quietRuntime()
	// keep main on the initial thread so -comm renames the thread /proc/PID/comm shows
	runtime.LockOSThread()
}

// quietRuntime re-executes the hog with asynchronous preemption off. In a
// loop the touching goroutine spins in page faults for seconds; preempting
// it makes the scheduler hand its P to another thread, and a thread created
// then is charged to the full cgroup, fails, and the runtime exits 2 — the
// hog dies by itself, not by the OOM killer.
func quietRuntime() {
	const off = "asyncpreemptoff=1"
	env := os.Getenv("GODEBUG")
	if strings.Contains(env, off) {
		return
	}
	if env != "" {
		env += ","
	}
	exe, err := os.Executable()
	if err != nil {
		return
	}
	envv := []string{"GODEBUG=" + env + off}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GODEBUG=") {
			envv = append(envv, kv)
		}
	}
	// on failure the hog runs as it is
	_ = unix.Exec(exe, os.Args, envv)
}

func main() {
	var (
		mb        = flag.Int("mb", 0, "allocate and touch `N` MiB, 1 MiB at a time")
		adj       = flag.String("adj", "", "write `N` to /proc/self/oom_score_adj first")
		legacyAdj = flag.String("legacy-adj", "", "write `N` to /proc/self/oom_adj first")
		children  = flag.Int("children", 0, "fork-exec `N` copies of itself (same flags minus -children)")
		ready     = flag.String("ready", "", "create `PATH` once allocation starts (children: PATH.<i>)")
		exit      = flag.Bool("exit", false, "exit after allocating instead of sleeping forever")
		comm      = flag.String("comm", "", "set the process name (/proc/self/comm) to `NAME`")
		stepDelay = flag.Duration("step-delay", 0, "sleep this long between 1 MiB steps")
		waitStdin = flag.Bool("wait-stdin", false, "first wait for a byte on stdin (the caller moves this process into its cgroup meanwhile)")
		forks     = flag.Int("fork", 0, "fork `N` children without exec that sleep until SIGTERM to this process (see forkSleepers)")
		distinct  = flag.Bool("fork-distinct", false, "with -fork: each child's first argument after the flags starts with its number")
		procs     multi
	)
	flag.Var(&procs, "cgroup-procs", "write own pid into this cgroup.procs `PATH` before allocating (repeatable)")
	flag.Parse()

	if *comm != "" {
		name, err := unix.BytePtrFromString(*comm)
		if err != nil {
			fail("%v", err)
		}
		if err := unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(name)), 0, 0, 0); err != nil {
			fail("prctl(PR_SET_NAME): %v", err)
		}
		runtime.KeepAlive(name)
	}
	if *adj != "" {
		writeFile("/proc/self/oom_score_adj", *adj)
	}
	if *legacyAdj != "" {
		writeFile("/proc/self/oom_adj", *legacyAdj)
	}
	for _, p := range procs {
		writeFile(p, strconv.Itoa(os.Getpid()))
	}
	if *waitStdin {
		if _, err := os.Stdin.Read(make([]byte, 1)); err != nil {
			fail("wait for stdin: %v", err)
		}
	}
	if *forks > 0 {
		forkSleepers(*forks, *distinct)
	}
	for i := 0; i < *children; i++ {
		spawnChild(i, *ready)
	}
	if *ready != "" {
		f, err := os.Create(*ready)
		if err != nil {
			fail("%v", err)
		}
		f.Close()
	}

	const step = 1 << 20
	page := os.Getpagesize()
	for i := 0; i < *mb; i++ {
		b, err := unix.Mmap(-1, 0, step, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
		if err != nil {
			fail("mmap after %d MiB: %v", i, err)
		}
		for off := 0; off < step; off += page {
			b[off] = 1
		}
		if *stepDelay > 0 {
			time.Sleep(*stepDelay)
		}
	}
	if *exit {
		return
	}
	for {
		time.Sleep(time.Hour)
	}
}

// spawnChild re-executes this binary with the original arguments minus -children.
func spawnChild(i int, ready string) {
	var args []string
	in := os.Args[1:]
	for j := 0; j < len(in); j++ {
		a := in[j]
		name := strings.TrimLeft(a, "-")
		if strings.HasPrefix(a, "-") && (name == "children" || strings.HasPrefix(name, "children=")) {
			if name == "children" && j+1 < len(in) {
				j++ // skip the value
			}
			continue
		}
		if strings.HasPrefix(a, "-") && (name == "ready" || strings.HasPrefix(name, "ready=")) {
			if name == "ready" && j+1 < len(in) {
				j++
			}
			continue
		}
		args = append(args, a)
	}
	if ready != "" {
		args = append([]string{"-ready", fmt.Sprintf("%s.%d", ready, i)}, args...)
	}
	exe, err := os.Executable()
	if err != nil {
		fail("%v", err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Args[0] = os.Args[0] // keep argv[0] (e.g. "java")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		fail("start child %d: %v", i, err)
	}
	// no Wait: children live on their own; the parent may exit (-exit) or sleep
}

func writeFile(path, v string) {
	if err := os.WriteFile(path, []byte(v), 0); err != nil {
		fail("%v", err)
	}
}

func fail(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "hog: "+format+"\n", a...)
	os.Exit(1)
}
