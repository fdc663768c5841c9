//go:build vmguest

package guest

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchMarker prefixes the one-line JSON samples TestBenchLoops prints on the
// console for the host (test/vmtest TestVMBench).
const BenchMarker = "VMBENCH "

// BenchSample is one measured loop.
type BenchSample struct {
	Combo  string `json:"combo"`
	Method string `json:"method"` // "oomwatch" or "naive-1s"
	I      int    `json:"i"`
	// LoopMS: kmsg timestamp of the first "Out of memory and no killable
	// processes" record to that of the "Killed process <hog>" record.
	LoopMS float64 `json:"loop_ms"`
	// KmsgOOMs: "no killable processes" records in that interval.
	KmsgOOMs int `json:"kmsg_ooms"`
	// CounterOOMs: kill-less OOMs by the cgroup's own counter from the hog's
	// start to the kill (v2 memory.events oom - oom_kill; v1 notifications
	// on our eventfd - oom_kill); the cgroup is fresh, so that is the loop.
	CounterOOMs int64 `json:"counter_ooms"`
	KmsgLost    int   `json:"kmsg_lost,omitempty"`
	// oomwatch only, guest clock from the hog being ready: incident and
	// action lines read from the daemon's stderr.
	IncidentMS float64 `json:"incident_ms,omitempty"`
	ActionMS   float64 `json:"action_ms,omitempty"`
	// oomwatch only, kernel clock from the first "no killable processes"
	// record (the daemon's millisecond log times mapped onto it through a
	// marker written to /dev/kmsg): the incident opened, oom_score_adj
	// written.
	DetectMS float64 `json:"detect_ms,omitempty"`
	ResetMS  float64 `json:"reset_ms,omitempty"`
	// The daemon's own account in its incident line: first OOM
	// notification → verdict, and verdict → handler (task inspection).
	DaemonDetectMS  float64 `json:"daemon_detect_ms,omitempty"`
	DaemonInspectMS float64 `json:"daemon_inspect_ms,omitempty"`
	DaemonHandlerMS float64 `json:"daemon_handler_ms,omitempty"`
	DaemonToHandler float64 `json:"daemon_to_handler_ms,omitempty"`
	Err             string  `json:"err,omitempty"`
}

// TestBenchLoops measures how long OOM loops last with oomwatch at its
// defaults and with a naive once-a-second poller. It runs only when the host
// sets OOMWATCH_VM_BENCH_N (TestVMBench); otherwise it declares itself
// unsupported, which the normal tier reports as a skip.
func TestBenchLoops(t *testing.T) {
	e := Setup(t)
	nStr := os.Getenv("OOMWATCH_VM_BENCH_N")
	if nStr == "" {
		Unsupported(t, "benchmark: run by make bench (BenchmarkVMLoopBreak)")
	}
	RequireDaemon(t, e)
	n, err := strconv.Atoi(nStr)
	if err != nil || n < 1 {
		t.Fatalf("OOMWATCH_VM_BENCH_N=%q", nStr)
	}
	combo := e.Kernel + "-" + e.Mode
	var samples []BenchSample

	d := StartDaemon(t, e, "run")
	for i := 0; i < n; i++ {
		s := benchOne(t, e, i, nil, d)
		s.Combo, s.Method = combo, "oomwatch"
		samples = append(samples, s)
	}
	d.Stop(t)
	for i := 0; i < n; i++ {
		s := benchOne(t, e, i, naivePoller, nil)
		s.Combo, s.Method = combo, "naive-1s"
		samples = append(samples, s)
	}
	for _, s := range samples {
		t.Logf("%s #%d: loop %.0f ms, %d kmsg OOMs, counter %d, incident +%.0f ms, action +%.0f ms (guest clock from hog ready)%s",
			s.Method, s.I, s.LoopMS, s.KmsgOOMs, s.CounterOOMs, s.IncidentMS, s.ActionMS, s.Err)
		b, _ := json.Marshal(s)
		fmt.Printf("%s%s\n", BenchMarker, b)
		if s.Err != "" {
			t.Errorf("%s #%d: %s", s.Method, s.I, s.Err)
		}
	}
	for _, m := range []string{"oomwatch", "naive-1s"} {
		var ms []float64
		for _, s := range samples {
			if s.Method == m && s.Err == "" {
				ms = append(ms, s.LoopMS)
			}
		}
		sort.Float64s(ms)
		t.Logf("%s %s: loop ms %v", combo, m, ms)
	}
}

// benchOne runs one -1000 hog in a fresh 20M cgroup until it is killed by
// whatever breaks the loop (the running daemon, or poller if not nil).
func benchOne(t *testing.T, e Env, i int, poller func(stop <-chan struct{}, cg *Cgroup, efd *OOMEventfd), d *Daemon) (s BenchSample) {
	s.I = i
	cg := NewCgroup(t, e, 20)
	defer cg.Destroy()
	var efd, pollEfd *OOMEventfd
	if e.V1() {
		efd = RegisterOOMEventfd(t, cg)
		pollEfd = RegisterOOMEventfd(t, cg)
	}
	km := OpenKmsg(t)
	var recs []KmsgRecord
	if poller != nil {
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() { defer close(done); poller(stop, cg, pollEfd) }()
		defer func() { close(stop); <-done }()
	}
	sync := kmsgSync(t)
	p := StartHog(t, e, cg, 64, -1000)
	t0 := time.Now()
	var notes uint64
	deadline := time.Now().Add(60 * time.Second)
	for !p.Exited() && time.Now().Before(deadline) {
		recs = append(recs, km.ReadRecords()...)
		if efd != nil {
			notes += efd.Take()
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !p.Exited() {
		s.Err = fmt.Sprintf("loop not broken after 60s (%s)", cg.Counters(t))
		return s
	}
	time.Sleep(50 * time.Millisecond)
	recs = append(recs, km.ReadRecords()...)
	s.KmsgLost = km.Lost
	k := cg.Counters(t)
	if efd != nil {
		notes += efd.Take()
		s.CounterOOMs = int64(notes) - k.OOMKill
	} else {
		s.CounterOOMs = k.OOM - k.OOMKill
	}
	if d != nil {
		if evs := d.Events(isIncident(cg, "")); len(evs) > 0 {
			s.IncidentMS = float64(evs[0][RxKey].(time.Time).Sub(t0).Microseconds()) / 1000
			if acts := d.Events(isAction(evs[0]["incident"], "")); len(acts) > 0 {
				s.ActionMS = float64(acts[0][RxKey].(time.Time).Sub(t0).Microseconds()) / 1000
			}
		}
	}
	var start, end uint64
	killed := fmt.Sprintf("Killed process %d (", p.Pid)
	for _, r := range recs {
		switch {
		case strings.Contains(r.Text, "Out of memory and no killable processes"):
			if end == 0 {
				if start == 0 {
					start = r.Usec
				}
				s.KmsgOOMs++
			}
		case strings.Contains(r.Text, killed):
			if end == 0 {
				end = r.Usec
			}
		}
	}
	switch {
	case start == 0:
		s.Err = fmt.Sprintf("no \"no killable processes\" record (kmsg lost %d, %d records)", km.Lost, len(recs))
	case end == 0:
		s.Err = fmt.Sprintf("no %q record (kmsg lost %d)", killed, km.Lost)
	default:
		s.LoopMS = float64(end-start) / 1000
	}
	if d != nil && start != 0 {
		off, ok := sync.offset(recs)
		at := func(m map[string]any) float64 {
			ts, err := time.Parse(time.RFC3339Nano, fmt.Sprint(m["time"]))
			if err != nil || !ok {
				return 0
			}
			return float64(ts.Sub(off).Microseconds()-int64(start)) / 1000
		}
		if evs := d.Events(isIncident(cg, "")); len(evs) > 0 {
			s.DetectMS = at(evs[0])
			s.DaemonDetectMS, _ = evs[0]["detection"].(float64)
			s.DaemonInspectMS, _ = evs[0]["inspection"].(float64)
			s.DaemonHandlerMS, _ = evs[0]["handler"].(float64)
			s.DaemonToHandler, _ = evs[0]["verdict_to_handler"].(float64)
			if rs := d.Events(func(m map[string]any) bool {
				return m["incident"] == evs[0]["incident"] && m["new_oom_score_adj"] != nil
			}); len(rs) > 0 {
				s.ResetMS = at(rs[0])
			}
		}
	}
	return s
}

// kmsgMark ties the wall clock to the kernel's log clock: a record written
// to /dev/kmsg between two readings of the wall clock.
type kmsgMark struct {
	text       string
	before, at time.Time
}

func kmsgSync(t *testing.T) kmsgMark {
	m := kmsgMark{text: fmt.Sprintf("oomwatch-bench-sync %d", time.Now().UnixNano())}
	f, err := os.OpenFile("/dev/kmsg", os.O_WRONLY, 0)
	if err != nil {
		t.Logf("no kmsg sync: %v", err)
		return m
	}
	defer f.Close()
	m.before = time.Now()
	_, err = f.WriteString(m.text + "\n")
	if err == nil {
		m.at = m.before.Add(time.Since(m.before) / 2)
	}
	return m
}

// offset returns the wall time of kernel timestamp 0, from the marker's
// record among recs.
func (m kmsgMark) offset(recs []KmsgRecord) (time.Time, bool) {
	if m.at.IsZero() {
		return time.Time{}, false
	}
	for _, r := range recs {
		if strings.Contains(r.Text, m.text) {
			return m.at.Add(-time.Duration(r.Usec) * time.Microsecond), true
		}
	}
	return time.Time{}, false
}

// naivePoller is what an oomd-style poller does: read the counters once a
// second and, after >= 3 kill-less OOMs since the last poll, write 0 to the
// oom_score_adj of every -1000 task in the cgroup.
func naivePoller(stop <-chan struct{}, cg *Cgroup, efd *OOMEventfd) {
	var total uint64
	read := func() (ooms, kills int64) {
		if cg.Mode == "v1" {
			total += efd.Take()
			kv := readKVQuiet(filepath.Join(cg.Mem, "memory.oom_control"))
			return int64(total), kv["oom_kill"]
		}
		kv := readKVQuiet(filepath.Join(cg.Mem, "memory.events"))
		return kv["oom"], kv["oom_kill"]
	}
	lastO, lastK := read()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		o, k := read()
		if o-lastO >= 3 && k == lastK {
			for _, pid := range cg.Procs() {
				if a, err := Adj(pid); err == nil && a == -1000 {
					SetAdj(pid, 0)
				}
			}
		}
		lastO, lastK = o, k
	}
}

func readKVQuiet(path string) map[string]int64 {
	m := map[string]int64{}
	b, err := os.ReadFile(path)
	if err != nil {
		return m
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 2 {
			if v, err := strconv.ParseInt(f[1], 10, 64); err == nil {
				m[f[0]] = v
			}
		}
	}
	return m
}
