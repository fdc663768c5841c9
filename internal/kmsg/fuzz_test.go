package kmsg

import (
	"os"
	"strings"
	"testing"
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
