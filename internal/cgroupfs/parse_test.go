package cgroupfs

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestParseMemoryEvents(t *testing.T) {
	tests := []struct {
		name, in string
		want     MemoryEvents
		err      string
	}{
		{"6.12", "low 0\nhigh 0\nmax 17\noom 1094\noom_kill 0\noom_group_kill 0\n",
			MemoryEvents{Max: 17, OOM: 1094, HasOOMGroupKill: true}, ""},
		{"5.10 without oom_group_kill", "low 1\nhigh 2\nmax 3\noom 4\noom_kill 5\n",
			MemoryEvents{Low: 1, High: 2, Max: 3, OOM: 4, OOMKill: 5}, ""},
		{"unknown key sock_throttled is ignored", "low 0\nhigh 0\nmax 0\noom 1\noom_kill 1\noom_group_kill 0\nsock_throttled 9\n",
			MemoryEvents{OOM: 1, OOMKill: 1, HasOOMGroupKill: true}, ""},
		{"no trailing newline", "oom 2\noom_kill 1", MemoryEvents{OOM: 2, OOMKill: 1}, ""},
		{"missing oom_kill is an error, never zero", "oom 2\n", MemoryEvents{}, `missing "oom" or "oom_kill"`},
		{"empty file", "", MemoryEvents{}, "missing"},
		{"garbage value", "oom x\noom_kill 0\n", MemoryEvents{}, `line 1: value of "oom" is not an unsigned integer`},
		{"three fields", "oom 1 2\n", MemoryEvents{}, `line 1: want "key value"`},
		{"negative", "oom -1\noom_kill 0\n", MemoryEvents{}, "not an unsigned integer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseMemoryEvents("memory.events", []byte(tt.in))
			if tt.err != "" {
				var pe *ParseError
				if err == nil || !strings.Contains(err.Error(), tt.err) || !errors.As(err, &pe) || pe.File != "memory.events" {
					t.Fatalf("got err %v, want a ParseError containing %q", err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func TestParseOOMControl(t *testing.T) {
	got, err := ParseOOMControl([]byte("oom_kill_disable 1\nunder_oom 1\noom_kill 7\n"))
	if err != nil || got != (OOMControl{KillDisable: true, UnderOOM: true, OOMKill: 7, HasOOMKill: true}) {
		t.Fatalf("got %+v, %v", got, err)
	}
	got, err = ParseOOMControl([]byte("oom_kill_disable 0\nunder_oom 0\n")) // before 4.13
	if err != nil || got.HasOOMKill {
		t.Fatalf("pre-4.13: got %+v, %v", got, err)
	}
	if _, err := ParseOOMControl([]byte("under_oom 0\n")); err == nil {
		t.Fatal("missing oom_kill_disable: want an error")
	}
}

func TestParseCgroupEvents(t *testing.T) {
	got, err := ParseCgroupEvents([]byte("populated 1\nfrozen 1\n"))
	if err != nil || got != (CgroupEvents{Populated: true, Frozen: true, HasFrozen: true}) {
		t.Fatalf("got %+v, %v", got, err)
	}
	if _, err := ParseCgroupEvents([]byte("frozen 0\n")); err == nil {
		t.Fatal("missing populated: want an error")
	}
}

func TestParseLimit(t *testing.T) {
	tests := []struct {
		in   string
		want uint64
		ok   bool
	}{
		{"max\n", Unlimited, true},
		{"20971520\n", 20971520, true},
		{"9223372036854771712\n", Unlimited, true}, // v1 PAGE_COUNTER_MAX on x86-64
		{"-1", Unlimited, true},
		{"", 0, false},
		{"20M", 0, false},
	}
	for _, tt := range tests {
		got, err := ParseLimit("memory.max", []byte(tt.in))
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseLimit(%q) = %d, %v; want %d ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestParsePIDs(t *testing.T) {
	got, err := ParsePIDs("cgroup.procs", []byte("12\n0\n345\n\n"))
	if err != nil || len(got) != 2 || got[0] != 12 || got[1] != 345 {
		t.Fatalf("got %v, %v (PID 0 of another namespace must be dropped)", got, err)
	}
	if _, err := ParsePIDs("cgroup.procs", []byte("12\nabc\n")); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("got %v, want a line 2 error", err)
	}
}

func TestParseMountinfo(t *testing.T) {
	in := `31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime shared:5 - cgroup cgroup rw,freezer
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
50 31 0:40 / /mnt/with\040space rw - tmpfs tmpfs rw
`
	ms, err := parseMountinfo([]byte(in))
	if err != nil || len(ms) != 5 {
		t.Fatalf("got %v, %v", ms, err)
	}
	if ms[1] != (mount{"/sys/fs/cgroup/memory", "cgroup", "rw,memory"}) || ms[4].point != "/mnt/with space" {
		t.Fatalf("got %+v", ms)
	}
	if _, err := parseMountinfo([]byte("1 2 3\n")); err == nil {
		t.Fatal("want an error for a short line")
	}
}

func FuzzParseMemoryEvents(f *testing.F) {
	f.Add([]byte("low 0\nhigh 0\nmax 17\noom 1094\noom_kill 0\noom_group_kill 0\n"))
	f.Add([]byte("oom 1 2\n"))
	addHostSeeds(f, "memory.events")
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := ParseMemoryEvents("memory.events", b)
		if err != nil && ev != (MemoryEvents{}) {
			t.Fatalf("error with a non-zero value: %+v", ev)
		}
	})
}

func FuzzParseOOMControl(f *testing.F) {
	f.Add([]byte("oom_kill_disable 0\nunder_oom 0\noom_kill 0\n"))
	addHostSeeds(f, "memory.oom_control")
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = ParseOOMControl(b) })
}

func FuzzParseLimit(f *testing.F) {
	f.Add([]byte("max\n"))
	f.Add([]byte("9223372036854771712"))
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = ParseLimit("memory.max", b) })
}

func FuzzParseMountinfo(f *testing.F) {
	f.Add([]byte("35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"))
	f.Add([]byte(`1 2 3 4 /a\040b\1 - x y z`))
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = parseMountinfo(b) })
}

func FuzzParsePIDs(f *testing.F) {
	f.Add([]byte("1\n2\n0\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		pids, err := ParsePIDs("cgroup.procs", b)
		for _, p := range pids {
			if err == nil && p <= 0 {
				t.Fatalf("non-positive pid %d", p)
			}
		}
	})
}

// twoFields agrees with bytes.Fields on ASCII lines (kernel files are
// ASCII): exactly two fields, the same two.
func FuzzTwoFields(f *testing.F) {
	for _, s := range []string{"oom 1", " oom\t1 ", "oom", "a b c", "", "\v\fx  y\r"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, l []byte) {
		for _, c := range l {
			if c >= 0x80 {
				return
			}
		}
		a, b, ok := twoFields(l)
		want := bytes.Fields(l)
		if ok != (len(want) == 2) || ok && (!bytes.Equal(a, want[0]) || !bytes.Equal(b, want[1])) {
			t.Fatalf("twoFields(%q) = %q, %q, %v; bytes.Fields = %q", l, a, b, ok, want)
		}
	})
}
