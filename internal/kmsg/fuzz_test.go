package kmsg

import (
	"os"
	"path"
	"strings"
	"testing"
	"time"
)

func FuzzParse(f *testing.F) {
	for _, m := range []string{l61Invoked, l61NoKill, l61Killed, l612Killed, l618Constr, l618Usage, l618Stats, lSacrifice, l2632, lGroup, lTaskIn, lInvoked419, lGlobalKill, lConstrComma} {
		f.Add([]byte("6,1,2,-;" + m + "\n"))
	}
	f.Add([]byte("6,10,20,-;usb\n SUBSYSTEM=usb\n DEVICE=c189:1\n"))
	if raw, err := os.ReadFile("testdata/6.18-v1-memcg-kill.kmsg"); err == nil {
		for _, it := range splitRecords(raw) {
			f.Add([]byte(it.(string)))
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Parse(b)
		if err != nil {
			return
		}
		if strings.Contains(r.Message, "\n") {
			t.Fatalf("message spans lines: %q", r.Message)
		}
		l, ok := Match(r.Message)
		if !ok {
			if l != (Line{}) {
				t.Fatalf("no match but %+v", l)
			}
			return
		}
		switch l.Kind {
		case KindKilled, KindKillProcess:
			if l.PID <= 0 {
				t.Fatalf("%s with pid %d from %q", l.Kind, l.PID, r.Message)
			}
		case KindStats, KindGroup, KindTaskIn:
			if !strings.HasPrefix(l.Cgroup, "/") {
				t.Fatalf("%s without a path from %q", l.Kind, r.Message)
			}
		case KindConstraint:
			if l.Cgroup != "" && !strings.HasPrefix(l.Cgroup, "/") {
				t.Fatalf("oom-kill memcg %q from %q", l.Cgroup, r.Message)
			}
		case KindInvoked, KindNoKillable, KindUsage:
		default:
			t.Fatalf("unknown kind %q", l.Kind)
		}
		// Feed it through a reader too: no panic, bounded state.
		rd := &Reader{opts: Options{PerCgroup: 2, Cgroups: 2}, rings: map[string]*ring{}}
		rd.observe(r)
		rd.observe(r)
		rd.observe(r)
		if len(rd.rings) > 2 {
			t.Fatal("rings unbounded")
		}
		for _, rg := range rd.rings {
			if len(rg.e) > 2 {
				t.Fatal("ring unbounded")
			}
		}
	})
}

// FuzzObserve drives the attribution state machine with a whole stream of
// records, one a line (continuation lines start with a space), as reads of
// /dev/kmsg return them: reports cut short, interleaved, forged from
// userspace, naming any path. Whatever the order, the reader keeps only
// the kernel's OOM lines, files them under clean paths, and stays within
// its bounds.
func FuzzObserve(f *testing.F) {
	if raw, err := os.ReadFile("testdata/6.18-v1-memcg-kill.kmsg"); err == nil {
		f.Add(raw)
		f.Add(raw[len(raw)/2:]) // read from mid-report
		f.Add(append(append([]byte{}, raw...), raw[:len(raw)/3]...))
	}
	var loop []byte
	seq := uint64(1)
	for range 3 {
		for _, it := range loopReport(&seq, 5_000_000+seq, "/vmt-loop") {
			loop = append(loop, it.(string)...)
		}
	}
	f.Add(loop)
	f.Add([]byte(rec(1, 1, l61Invoked) + "14,2,2,-;Memory cgroup stats for /victim:\n" + rec(3, 3, lTaskIn) + rec(4, 4, lGroup) + rec(5, 5, l61NoKill)))
	f.Fuzz(func(t *testing.T, b []byte) {
		const perCgroup, cgroups = 3, 4
		rd := &Reader{opts: Options{PerCgroup: perCgroup, Cgroups: cgroups}, rings: map[string]*ring{}}
		kernel, named := map[string]bool{}, map[string]bool{} // messages, cgroups the kernel logged
		for _, it := range splitRecords(b) {
			r, err := Parse([]byte(it.(string)))
			if err != nil {
				continue
			}
			r.Time = boot.Add(time.Duration(r.Usec%(1<<40)) * time.Microsecond)
			if r.Kernel() {
				kernel[r.Message] = true
				if l, ok := Match(r.Message); ok && l.Cgroup != "" {
					named[clean(l.Cgroup)] = true
				}
			}
			rd.observe(r)
			if len(rd.dump.pending) > 8 {
				t.Fatalf("%d lines pending", len(rd.dump.pending))
			}
		}
		if len(rd.rings) > cgroups {
			t.Fatalf("%d rings", len(rd.rings))
		}
		for cg, rg := range rd.rings {
			if cg != path.Clean("/"+cg) || !named[cg] {
				t.Fatalf("ring under %q: unclean, or a path no kernel record named", cg)
			}
			if len(rg.e) > perCgroup {
				t.Fatalf("%d lines for %s", len(rg.e), cg)
			}
			for _, e := range rg.e {
				if _, ok := Match(e.msg); !ok || !kernel[e.msg] {
					t.Fatalf("%s holds %q: not an OOM line from the kernel", cg, e.msg)
				}
			}
		}
	})
}
