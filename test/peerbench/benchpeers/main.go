// Command benchpeers is `make bench-peers`: it boots the systemd VM's peers
// image once per peer (the kernel alone, earlyoom, systemd-oomd tight and at
// its defaults, oomwatch from the .deb), runs the same OOM loop in each
// (test/peerbench/payload/run.sh: a transient unit and the LXC container
// web1, init and hog at oom_score_adj -1000) and prints one table of every
// run with p50/p95 per peer (peerbench.Write).
//
//	go run ./test/peerbench/benchpeers            # measure (root, qemu; minutes per peer)
//	go run ./test/peerbench/benchpeers LOG...     # the table again from saved logs (a peer's
//	                                              # last boot per kernel counts)
//
// Environment: OOMWATCH_PEERS (peers, comma-separated; default all),
// OOMWATCH_PEERS_RUNS (stand-in runs per peer, 5), OOMWATCH_PEERS_LXC_RUNS
// (LXC runs per peer, default the same; 0 none), OOMWATCH_PEERS_CAP (90s),
// OOMWATCH_PEERS_LOG (bin/bench-peers.log: every guest's output, appended),
// OOMWATCH_SDVM_KPKG (the Debian kernel package the image boots).
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/oomwatch/oomwatch/test/peerbench"
	"github.com/oomwatch/oomwatch/test/sdvm"
)

func env(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func envInt(k string, def int) int {
	v, err := strconv.Atoi(env(k, strconv.Itoa(def)))
	if err != nil || v < 0 {
		fatalf("%s: want a count, have %q", k, os.Getenv(k))
	}
	return v
}

func fatalf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "benchpeers: "+format+"\n", a...)
	os.Exit(1)
}

func logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "%s benchpeers: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, a...))
}

func main() {
	if len(os.Args) > 1 {
		retable(os.Args[1:])
		return
	}
	peers := strings.Split(env("OOMWATCH_PEERS", strings.Join(peerbench.Peers, ",")), ",")
	for _, p := range peers {
		if !contains(peerbench.Peers, p) {
			fatalf("OOMWATCH_PEERS: unknown peer %q (have %s)", p, strings.Join(peerbench.Peers, ", "))
		}
	}
	runs := envInt("OOMWATCH_PEERS_RUNS", 5)
	lxcRuns := envInt("OOMWATCH_PEERS_LXC_RUNS", runs)
	capDur, err := time.ParseDuration(env("OOMWATCH_PEERS_CAP", "90s"))
	if err != nil || capDur <= 0 {
		fatalf("OOMWATCH_PEERS_CAP: %v", err)
	}
	logPath := env("OOMWATCH_PEERS_LOG", filepath.Join("bin", "bench-peers.log"))
	if err := sdvm.CheckHost(); err != nil {
		fatalf("%v", err)
	}
	ctx := context.Background()
	img, err := sdvm.EnsureImage(ctx, sdvm.Peers, func(s string) { logf("%s", s) })
	if err != nil {
		fatalf("%v", err)
	}
	logf("image %s, kernel %s, accel %s", img.Dir, img.Release, sdvm.Accel())

	work, err := os.MkdirTemp("", "oomwatch-benchpeers-")
	if err != nil {
		fatalf("%v", err)
	}
	defer os.RemoveAll(work)
	common := filepath.Join(work, "common")
	if err := os.MkdirAll(common, 0o755); err != nil {
		fatalf("%v", err)
	}
	top := filepath.Join(sdvm.Dir(), "..", "..")
	bin, err := sdvm.GoBuild(work, "oomwatch", "github.com/oomwatch/oomwatch/cmd/oomwatch", "-s -w -X main.version=0.0~peers")
	must(err)
	_, err = sdvm.GoBuild(common, "hog", "github.com/oomwatch/oomwatch/test/testbin/hog", "-s -w")
	must(err)
	_, err = sdvm.GoBuild(common, "peerprobe", "github.com/oomwatch/oomwatch/test/peerbench/peerprobe", "-s -w")
	must(err)
	deb, err := sdvm.BuildDeb(top, bin, "0.0~peers", common)
	must(err)
	logf("package %s", filepath.Base(deb))
	script, err := os.ReadFile(filepath.Join(top, "test", "peerbench", "payload", "run.sh"))
	must(err)
	must(os.MkdirAll(filepath.Dir(logPath), 0o755))
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	must(err)
	defer logFile.Close()
	fmt.Fprintf(logFile, "BENCHPEERS-HOST %s\n", hostLine(img))

	var all []peerbench.Run
	var notes []string
	for _, peer := range peers {
		payload := filepath.Join(work, "payload-"+peer)
		must(os.MkdirAll(payload, 0o755))
		for _, f := range []string{"hog", "peerprobe", filepath.Base(deb)} {
			must(copyFile(filepath.Join(common, f), filepath.Join(payload, f)))
		}
		must(os.WriteFile(filepath.Join(payload, "run.sh"), script, 0o755))
		must(os.WriteFile(filepath.Join(payload, "peer.env"),
			fmt.Appendf(nil, "PEER=%s\nRUNS=%d\nLXC_RUNS=%d\nCAP=%d\n", peer, runs, lxcRuns, int(capDur.Seconds())), 0o644))
		timeout := 10*time.Minute + time.Duration(runs+lxcRuns)*(capDur+45*time.Second)
		logf("peer %s: booting (%d stand-in + %d LXC runs, cap %v; waits for the VM lock)", peer, runs, lxcRuns, capDur)
		t0 := time.Now()
		res, err := sdvm.Run(ctx, img, payload, filepath.Join(work, "vm-"+peer), timeout)
		fmt.Fprintf(logFile, "BENCHPEERS-BOOT peer=%s kernel=%s exit=%d err=%v elapsed=%v\n%s\n", peer, img.Release, res.ExitCode, err, res.Elapsed.Round(time.Second), res.Output)
		if err != nil {
			logf("peer %s: %v", peer, err)
			if c, rerr := os.ReadFile(res.Console); rerr == nil {
				fmt.Fprintf(logFile, "BENCHPEERS-CONSOLE peer=%s\n%s\n", peer, tail(string(c), 8192))
			}
			notes = append(notes, fmt.Sprintf("%s: the VM run failed: %v", peer, err))
		}
		got, errs := peerbench.ParseRuns(res.Output)
		for _, e := range errs {
			notes = append(notes, fmt.Sprintf("%s: %v", peer, e))
		}
		notes = append(notes, peerbench.ParseNotes(res.Output, peer)...)
		logf("peer %s: %d runs in %v (qemu %v)", peer, len(got), time.Since(t0).Round(time.Second), res.Elapsed.Round(time.Second))
		all = append(all, got...)
	}
	title := fmt.Sprintf("kernel %s, cgroup v2, qemu %s, %s", img.Release, sdvm.Accel(), machine())
	peerbench.Write(os.Stdout, title, all)
	for _, n := range notes {
		fmt.Println("note: " + n)
	}
	logf("every guest's output: %s", logPath)
}

// retable prints the table of saved logs, one table per kernel. A later
// boot of the same peer on the same kernel replaces an earlier one (logs
// are appended to: a peer measured again is the newer measurement).
func retable(paths []string) {
	type boot struct {
		runs  []peerbench.Run
		notes []string
	}
	byKernel := map[string]map[string]boot{}
	var kernels []string
	peersOf := map[string][]string{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		must(err)
		for _, text := range strings.Split(string(b), "BENCHPEERS-BOOT ")[1:] {
			head, body, _ := strings.Cut(text, "\n")
			peer, kernel := kv(head, "peer"), kv(head, "kernel")
			if _, ok := byKernel[kernel]; !ok {
				kernels = append(kernels, kernel)
				byKernel[kernel] = map[string]boot{}
			}
			if _, ok := byKernel[kernel][peer]; !ok {
				peersOf[kernel] = append(peersOf[kernel], peer)
			}
			runs, errs := peerbench.ParseRuns(body)
			bt := boot{runs: runs}
			for _, e := range errs {
				bt.notes = append(bt.notes, fmt.Sprintf("%s %s: %v", kernel, peer, e))
			}
			for _, n := range peerbench.ParseNotes(body, peer) {
				bt.notes = append(bt.notes, kernel+" "+n)
			}
			byKernel[kernel][peer] = bt
		}
	}
	var notes []string
	for _, k := range kernels {
		var runs []peerbench.Run
		for _, p := range peersOf[k] {
			runs = append(runs, byKernel[k][p].runs...)
			notes = append(notes, byKernel[k][p].notes...)
		}
		peerbench.Write(os.Stdout, "kernel "+k+", cgroup v2, qemu TCG, "+machine(), runs)
		fmt.Println()
	}
	for _, n := range notes {
		fmt.Println("note: " + n)
	}
}

func kv(line, key string) string {
	for _, f := range strings.Fields(line) {
		if v, ok := strings.CutPrefix(f, key+"="); ok {
			return v
		}
	}
	return ""
}

func machine() string {
	return fmt.Sprintf("2 vCPUs on a %d-core host", runtime.NumCPU())
}

func hostLine(img sdvm.Image) string {
	cpu := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	return fmt.Sprintf("date=%s nproc=%d cpu=%q image=%s kernel=%s accel=%s", time.Now().UTC().Format(time.RFC3339), runtime.NumCPU(), cpu, img.Dir, img.Release, sdvm.Accel())
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o755)
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func must(err error) {
	if err != nil {
		fatalf("%v", err)
	}
}
