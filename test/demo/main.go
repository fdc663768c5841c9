// Command demo (`make demo`, or `go run ./test/demo`) shows oomwatch
// breaking a memory-cgroup OOM loop inside a throwaway qemu VM, so nothing
// happens to the host.
//
// It checks the prerequisites (running test/vmtest/fetch.sh when qemu,
// cpio, a static busybox or the kernel are missing and we are root), builds
// static cmd/oomwatch and test/testbin/hog, boots a Debian kernel through
// test/vmtest and runs guest.sh: the original incident (sshd leaving
// oom_adj -17 on a login that starts an LXC container whose java hits the
// memory limit), narrated with "==>" headings. The host reformats the
// daemon's JSON log lines and checks the outcome: exit 0 only if the loop was
// broken (java killed by the kernel, oom_kill 1, OOMs stopped).
//
//	go run ./test/demo                 # 6.1, cgroup v1 (the original incident)
//	go run ./test/demo -mode v2        # 6.1, cgroup v2
//	go run ./test/demo -kernel 6.12    # 6.12, cgroup v2 (6.12 has no v1 memory controller)
package main

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/oomwatch/oomwatch/test/vmtest"
)

//go:embed guest.sh
var guestScript string

const modulePath = "github.com/oomwatch/oomwatch"

func main() {
	os.Exit(run())
}

func run() int {
	kernel := flag.String("kernel", "6.1", "kernel to boot: 6.1 or 6.12")
	mode := flag.String("mode", "", "cgroup mode: v1 or v2 (default v1 on 6.1, v2 on 6.12)")
	console := flag.Bool("console", false, "also show the raw serial console")
	timeout := flag.Duration("timeout", 3*time.Minute, "bound on the VM run")
	noFetch := flag.Bool("no-fetch", false, "never run test/vmtest/fetch.sh; just say what is missing")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "Usage: go run ./test/demo [flags]\n\nReproduces the original OOM-loop incident in a qemu VM and shows oomwatch breaking it.\n\nFlags:\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() > 0 {
		flag.Usage()
		return 2
	}
	if *mode == "" {
		*mode = "v1"
		if *kernel != "6.1" {
			*mode = "v2"
		}
	}
	if *mode != "v1" && *mode != "v2" {
		fmt.Fprintf(os.Stderr, "demo: -mode %q: want v1 or v2\n", *mode)
		return 2
	}
	if *kernel != "6.1" && *kernel != "6.12" {
		fmt.Fprintf(os.Stderr, "demo: -kernel %q: want 6.1 or 6.12\n", *kernel)
		return 2
	}
	if *kernel == "6.12" && *mode == "v1" {
		fmt.Fprintln(os.Stderr, "demo: Debian's 6.12 kernel has no cgroup v1 memory controller (CONFIG_MEMCG_V1 unset): use -mode v2, or -kernel 6.1 for v1")
		return 2
	}

	t0 := time.Now()
	root, err := moduleRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		return 1
	}
	fmt.Printf("==> oomwatch demo: the original OOM-loop incident, replayed in a throwaway VM (kernel %s, cgroup %s)\n", *kernel, *mode)

	k, err := prerequisites(root, *kernel, *noFetch)
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		return 1
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	tmp, err := os.MkdirTemp("", "oomwatch-demo-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		return 1
	}
	defer os.RemoveAll(tmp)
	fmt.Println("==> Building static binaries: ./cmd/oomwatch ./test/testbin/hog (CGO_ENABLED=0)")
	tb := time.Now()
	if err := build(ctx, root, tmp); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		return 1
	}
	buildTime := time.Since(tb)

	fmt.Printf("==> Booting Debian %s (%s) under qemu TCG; everything below happens inside the VM\n", k.Name, k.Release)
	out := newNarrator(os.Stdout, *console)
	res, runErr := vmtest.Run(ctx, vmtest.Boot{
		Kernel: k,
		Mode:   vmtest.Mode(*mode),
		Files: map[string]string{
			"/bin/oomwatch": filepath.Join(tmp, "oomwatch"),
			"/bin/hog":      filepath.Join(tmp, "hog"),
		},
		Cmd:     guestScript,
		Env:     guestEnv(),
		Timeout: *timeout,
		// loglevel=3: not even KERN_ERR ("Memory cgroup out of memory: Killed
		// process ...") on the console; the guest shows the lines that matter
		// from dmesg, between its own headings.
		Append: "loglevel=3",
		Log:    out,
	})
	out.Flush()
	total := time.Since(t0)

	sum := out.summary()
	ok := runErr == nil && res.ExitCode == 0
	problems := sum.check()
	if runErr != nil {
		fmt.Fprintf(os.Stderr, "\ndemo: %v\n", runErr)
	} else if res.ExitCode != 0 {
		fmt.Fprintf(os.Stderr, "\ndemo: the guest script exited %d\n", res.ExitCode)
	}
	if !out.sawStart {
		fmt.Fprintf(os.Stderr, "demo: the VM never reached its /init; console tail:\n%s\n", tail(res.Output, 40))
	}

	fmt.Println()
	fmt.Println("==> Summary")
	for _, l := range sum.lines() {
		fmt.Println("    " + l)
	}
	fmt.Printf("    Timings: build %.1fs, VM boot %.1fs, VM total %.1fs, whole demo %.1fs\n",
		buildTime.Seconds(), res.Boot.Seconds(), res.Elapsed.Seconds(), total.Seconds())
	if ok && len(problems) == 0 {
		fmt.Println("    RESULT: PASS - the loop was broken: java killed by the kernel, oom_kill 1, OOMs stopped.")
		return 0
	}
	for _, p := range problems {
		fmt.Println("    problem: " + p)
	}
	fmt.Println("    RESULT: FAIL - the loop was not (verifiably) broken; the log above shows where it stopped.")
	return 1
}

// moduleRoot finds the oomwatch module root from the working directory up.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil {
			if bytes.HasPrefix(bytes.TrimSpace(b), []byte("module "+modulePath)) {
				return d, nil
			}
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("run me from inside the oomwatch module (no go.mod for %s above %s)", modulePath, dir)
		}
	}
}

// missing lists what the host lacks for the VM with kernel name.
func missing(name string) []string {
	var m []string
	if _, err := exec.LookPath(vmtest.Qemu); err != nil {
		m = append(m, vmtest.Qemu+" (apt-get install qemu-system-x86)")
	}
	if _, err := exec.LookPath("cpio"); err != nil {
		m = append(m, "cpio (apt-get install cpio)")
	}
	if _, err := vmtest.Busybox(); err != nil {
		m = append(m, err.Error())
	}
	if _, err := kernel(name); err != nil {
		m = append(m, err.Error())
	}
	return m
}

func kernel(name string) (vmtest.Kernel, error) {
	ks, _ := vmtest.Kernels()
	for _, k := range ks {
		if k.Name == name {
			return k, nil
		}
	}
	return vmtest.Kernel{}, fmt.Errorf("the Debian %s cloud kernel is not in %s", name, vmtest.CacheDir())
}

// prerequisites makes sure qemu, cpio, static busybox and the kernel are
// there, running fetch.sh (apt + kernel download) as root when they are not.
func prerequisites(root, name string, noFetch bool) (vmtest.Kernel, error) {
	m := missing(name)
	if len(m) == 0 {
		return kernel(name)
	}
	fetch := filepath.Join(root, "test/vmtest/fetch.sh")
	how := "run `sudo bash test/vmtest/fetch.sh` once (Debian 12: installs qemu-system-x86, busybox-static and cpio with apt, downloads the Debian 6.1 and 6.12 cloud kernels into " + vmtest.CacheDir() + "; ~100 MB), then run the demo again"
	if noFetch || os.Geteuid() != 0 {
		return vmtest.Kernel{}, fmt.Errorf("missing:\n  - %s\n%s", strings.Join(m, "\n  - "), how)
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		return vmtest.Kernel{}, fmt.Errorf("missing:\n  - %s\nno apt-get here: fetch.sh needs Debian 12; install qemu-system-x86_64, cpio and a static busybox, and unpack a Debian 6.1 cloud kernel's vmlinuz into %s/6.1/vmlinuz", strings.Join(m, "\n  - "), vmtest.CacheDir())
	}
	fmt.Printf("==> Missing: %s\n==> Running %s (apt installs + kernel download; once)\n", strings.Join(m, "; "), "bash test/vmtest/fetch.sh")
	c := exec.Command("bash", fetch)
	c.Dir = root
	c.Stdout, c.Stderr = os.Stdout, os.Stderr
	if err := c.Run(); err != nil {
		return vmtest.Kernel{}, fmt.Errorf("test/vmtest/fetch.sh: %v; %s", err, how)
	}
	if m := missing(name); len(m) > 0 {
		return vmtest.Kernel{}, fmt.Errorf("still missing after fetch.sh:\n  - %s", strings.Join(m, "\n  - "))
	}
	return kernel(name)
}

func build(ctx context.Context, root, dir string) error {
	c := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", dir+"/", "./cmd/oomwatch", "./test/testbin/hog")
	c.Dir = root
	c.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := c.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v\n%s", err, out)
	}
	return nil
}

// narrator turns the serial console into the demo's output: the guest's
// lines between the start and exit markers, oomwatch's JSON lines ("LOG
// {...}") shortened to their key fields, the DEMO_* lines kept for the
// summary. Kernel messages (none at loglevel=3 unless something panics) are
// shown with a "kernel:" prefix.
type narrator struct {
	mu       sync.Mutex
	w        io.Writer
	raw      bool
	buf      []byte
	sawStart bool
	done     bool
	events   []map[string]any
	result   map[string]string
	failure  string
	failLog  bool
}

func newNarrator(w io.Writer, raw bool) *narrator { return &narrator{w: w, raw: raw} }

func (n *narrator) Write(p []byte) (int, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.buf = append(n.buf, p...)
	for {
		i := bytes.IndexByte(n.buf, '\n')
		if i < 0 {
			break
		}
		line := strings.TrimRight(string(n.buf[:i]), "\r")
		n.buf = n.buf[i+1:]
		n.line(line)
	}
	return len(p), nil
}

func (n *narrator) Flush() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.buf) > 0 {
		n.line(strings.TrimRight(string(n.buf), "\r"))
		n.buf = nil
	}
}

func (n *narrator) line(l string) {
	if n.raw {
		fmt.Fprintln(n.w, "console| "+l)
	}
	switch {
	case !n.sawStart:
		if strings.Contains(l, vmtest.StartMarker) {
			n.sawStart = true
		}
		return
	case n.done:
		return
	case strings.Contains(l, vmtest.ExitMarker):
		n.done = true
		return
	case strings.HasPrefix(l, "LOG "):
		var ev map[string]any
		if err := json.Unmarshal([]byte(l[4:]), &ev); err != nil {
			n.print(l)
			return
		}
		n.events = append(n.events, ev)
		if !n.raw {
			fmt.Fprintln(n.w, "    oomwatch| "+formatEvent(ev))
		}
		return
	case strings.HasPrefix(l, "DEMO_RESULT "):
		n.result = map[string]string{}
		for _, f := range strings.Fields(l)[1:] {
			k, v, _ := strings.Cut(f, "=")
			n.result[k] = v
		}
		return
	case strings.HasPrefix(l, "DEMO_FAIL "):
		n.failure = strings.TrimPrefix(l, "DEMO_FAIL ")
		n.failLog = true
		n.print("!!! " + n.failure)
		return
	case kernelLine(l) && !n.failLog:
		n.print("kernel: " + l)
		return
	}
	n.print(l)
}

func (n *narrator) print(l string) {
	if !n.raw {
		fmt.Fprintln(n.w, l)
	}
}

// kernelLine: a printk line on the console, "[   12.345678] ...".
func kernelLine(l string) bool {
	if !strings.HasPrefix(l, "[") {
		return false
	}
	end := strings.IndexByte(l, ']')
	if end < 2 {
		return false
	}
	_, err := strconv.ParseFloat(strings.TrimSpace(l[1:end]), 64)
	return err == nil
}

// formatEvent renders one oomwatch JSON log line as "event  message  k=v ...".
func formatEvent(ev map[string]any) string {
	var b strings.Builder
	name, _ := ev["event"].(string)
	fmt.Fprintf(&b, "%-12s", name)
	if lvl, _ := ev["level"].(string); lvl == "warn" || lvl == "error" {
		b.WriteString(strings.ToUpper(lvl) + " ")
	}
	if m, _ := ev["message"].(string); m != "" {
		b.WriteString(m)
	}
	var keys []string
	switch name {
	case "ready":
		keys = []string{"cgroups", "arm_time"}
	case "incident":
		keys = []string{"verdict", "cgroup", "oom_events", "oom_kills", "window", "tasks", "origin"}
	case "action":
		keys = []string{"pid", "comm", "done", "verified", "took", "detail", "error"}
	case "ladder_done":
		keys = []string{"outcome"}
	case "resolved":
		keys = []string{"why"}
	default:
		for k := range ev {
			switch k {
			case "time", "level", "message", "event", "component", "incident":
			default:
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
	}
	sep := "\n    oomwatch|             "
	parts := []string{}
	for _, k := range keys {
		var v any
		if k == "origin" {
			c, ok := ev["origin_comm"]
			if !ok {
				continue
			}
			v = fmt.Sprintf("%v(pid %v)", c, num(ev["origin_pid"]))
		} else {
			var ok bool
			if v, ok = ev[k]; !ok {
				continue
			}
		}
		s := fmt.Sprint(num(v))
		if durationKeys[k] {
			s = ms(v)
		}
		if strings.ContainsAny(s, " ,") {
			s = strconv.Quote(s)
		}
		parts = append(parts, k+"="+s)
	}
	if len(parts) > 0 {
		if f := strings.Join(parts, " "); b.Len()+len(f) < 100 {
			b.WriteString("  " + f)
		} else {
			b.WriteString(sep + f)
		}
	}
	return b.String()
}

// durationKeys are logged by zerolog as float milliseconds.
var durationKeys = map[string]bool{"window": true, "took": true, "arm_time": true, "uptime": true}

// ms renders zerolog's float milliseconds as a Go duration.
func ms(v any) string {
	f, ok := v.(float64)
	if !ok {
		return fmt.Sprint(v)
	}
	d := time.Duration(f * float64(time.Millisecond))
	switch {
	case d >= time.Second:
		d = d.Round(10 * time.Millisecond)
	case d >= time.Millisecond:
		d = d.Round(100 * time.Microsecond)
	}
	return d.String()
}

// num prints JSON numbers without exponent or trailing zeros.
func num(v any) any {
	if f, ok := v.(float64); ok {
		return strconv.FormatFloat(f, 'f', -1, 64)
	}
	return v
}

type summary struct {
	events  []map[string]any
	result  map[string]string
	failure string
}

func (n *narrator) summary() summary {
	n.mu.Lock()
	defer n.mu.Unlock()
	return summary{events: n.events, result: n.result, failure: n.failure}
}

func (s summary) find(event string) map[string]any {
	for _, e := range s.events {
		if e["event"] == event {
			return e
		}
	}
	return nil
}

func (s summary) lines() []string {
	var out []string
	r := s.result
	if r == nil {
		r = map[string]string{}
	}
	if inc := s.find("incident"); inc != nil {
		out = append(out, fmt.Sprintf("oomwatch flagged an OOM %v in %v (%v OOMs, %v kills within %s),",
			inc["verdict"], inc["cgroup"], num(inc["oom_events"]), num(inc["oom_kills"]), ms(inc["window"])))
		out = append(out, fmt.Sprintf("  and traced the -1000 to %v (pid %v), the ancestor that set it.", inc["origin_comm"], num(inc["origin_pid"])))
	} else {
		out = append(out, "oomwatch logged no incident.")
	}
	for _, e := range s.events {
		if e["event"] == "action" {
			out = append(out, fmt.Sprintf("It acted: %v on %v (pid %v): done=%v verified=%v in %s.", e["action"], e["comm"], num(e["pid"]), e["done"], e["verified"], ms(e["took"])))
		}
	}
	if r["java_killed"] != "" {
		loop := ""
		if r["loop_s"] != "" {
			loop = fmt.Sprintf(" after a %ss kill-less loop", r["loop_s"])
		}
		out = append(out, fmt.Sprintf("The kernel then killed java%s", loop))
		what := "memory.events oom"
		if r["mode"] == "v1" {
			what = "failed charges"
		}
		out = append(out, fmt.Sprintf("  (%s %s, %s 'no killable processes' dumps); oom_kill=%s; OOMs stopped: %s.",
			r["ooms"], what, r["nokill_lines"], r["oom_kill"], yesNo(r["stopped"] == "1")))
	}
	if s.failure != "" {
		out = append(out, "Guest check failed: "+s.failure)
	}
	return out
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// check is the host's own verdict on what the guest reported.
func (s summary) check() []string {
	var p []string
	r := s.result
	if r == nil {
		return []string{"the guest printed no DEMO_RESULT line"}
	}
	if n, _ := strconv.Atoi(r["java_killed"]); n < 1 {
		p = append(p, "the kernel never killed java")
	}
	if r["oom_kill"] != "1" {
		p = append(p, fmt.Sprintf("oom_kill is %q, want 1", r["oom_kill"]))
	}
	if r["stopped"] != "1" {
		p = append(p, "OOMs kept counting after the kill")
	}
	inc := s.find("incident")
	switch {
	case inc == nil:
		p = append(p, "no incident in oomwatch's log")
	case inc["verdict"] != "loop":
		p = append(p, fmt.Sprintf("incident verdict %v, want loop", inc["verdict"]))
	case inc["origin_comm"] != "sshd":
		p = append(p, fmt.Sprintf("incident origin %v, want sshd", inc["origin_comm"]))
	}
	verified := false
	for _, e := range s.events {
		if e["event"] == "action" && e["action"] == "reset-adj" && e["verified"] == true {
			verified = true
		}
	}
	if !verified {
		p = append(p, "no verified reset-adj action in oomwatch's log")
	}
	return p
}

func tail(s string, n int) string {
	sc := bufio.NewScanner(strings.NewReader(s))
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// guestEnv passes the DEMO_* knobs through: DEMO_DEBUG=1 dumps the raw
// oomwatch log and kernel OOM lines at the end, DEMO_LOG_LEVEL sets
// oomwatch's --log-level.
func guestEnv() map[string]string {
	env := map[string]string{}
	for _, k := range []string{"DEMO_DEBUG", "DEMO_LOG_LEVEL"} {
		if v := os.Getenv(k); v != "" {
			env[k] = v
		}
	}
	return env
}
