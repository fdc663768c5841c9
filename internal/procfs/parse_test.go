package procfs

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// Real lines captured on the 6.18 host (self, kthreadd) plus hostile comms.
const (
	statCat      = "5257 (cat) R 5255 5255 3966 0 -1 4194304 102 0 1 0 0 0 0 0 20 0 1 0 23170 3133440 379 18446744073709551615 94606702931968 94606702951849 140721905979184 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 94606702967856 94606702969472 94607294029824 140721905986243 140721905986263 140721905986263 140721905987563 0\n"
	statKthreadd = "2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 0 0 0 20 0 1 0 15 0 0 18446744073709551615 0 0 0 0 0 0 0 2147483647 0 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n"
	statTail     = " S 1 42 42 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 100 0 0 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n"
	statZombie   = "77 (java) Z 1 77 77 0 -1 4227084 0 0 0 0 0 0 0 0 20 0 1 0 100 0 0 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n"

	statusSelf = "Name:\thead\nUmask:\t0022\nState:\tR (running)\nTgid:\t5259\nNgid:\t0\nPid:\t5259\nPPid:\t5255\nTracerPid:\t0\n" +
		"Uid:\t1000\t1001\t1002\t1003\nGid:\t0\t0\t0\t0\nFDSize:\t256\nGroups:\t \nVmPeak:\t    3776 kB\nVmSize:\t    3760 kB\n" +
		"VmRSS:\t    1928 kB\nVmSwap:\t       0 kB\nThreads:\t1\n"
	statusKthread = "Name:\tkthreadd\nUmask:\t0000\nState:\tS (sleeping)\nTgid:\t2\nPid:\t2\nPPid:\t0\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nThreads:\t1\n"
)

func TestParseStat(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want stat
	}{
		{"cat", statCat, stat{PID: 5257, Comm: "cat", State: 'R', PPID: 5255, Flags: 4194304}},
		{"kthreadd", statKthreadd, stat{PID: 2, Comm: "kthreadd", State: 'S', PPID: 0, Flags: 2129984}},
		{"zombie", statZombie, stat{PID: 77, Comm: "java", State: 'Z', PPID: 1, Flags: 4227084}},
		{"no trailing newline", strings.TrimSuffix(statCat, "\n"), stat{PID: 5257, Comm: "cat", State: 'R', PPID: 5255, Flags: 4194304}},
		{"parens and spaces", "42 (a) b (c)" + statTail, stat{PID: 42, Comm: "a) b (c", State: 'S', PPID: 1, Flags: 4194560}},
		{"looks like fields", "42 (x) R 99 99 99 0 -1 4 (y)" + statTail, stat{PID: 42, Comm: "x) R 99 99 99 0 -1 4 (y", State: 'S', PPID: 1, Flags: 4194560}},
		{"newline", "42 (a\nb)" + statTail, stat{PID: 42, Comm: "a\nb", State: 'S', PPID: 1, Flags: 4194560}},
		{"empty", "42 ()" + statTail, stat{PID: 42, Comm: "", State: 'S', PPID: 1, Flags: 4194560}},
		{"only parens", "42 ()()" + statTail, stat{PID: 42, Comm: ")(", State: 'S', PPID: 1, Flags: 4194560}},
		{"long kthread name", "8 (kworker/R-kvfree_rcu_reclaim)" + statTail, stat{PID: 8, Comm: "kworker/R-kvfree_rcu_reclaim", State: 'S', PPID: 1, Flags: 4194560}},
		{"invalid utf8", "42 (\xff\xfe\x00\x1b[31m)" + statTail, stat{PID: 42, Comm: "\xff\xfe\x00\x1b[31m", State: 'S', PPID: 1, Flags: 4194560}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStat([]byte(tt.in))
			if err != nil {
				t.Fatalf("parseStat: %v", err)
			}
			if got != tt.want {
				t.Errorf("parseStat = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseStatErrors(t *testing.T) {
	tests := []struct {
		name, in, msg string
	}{
		{"empty", "", "no \"(comm)\""},
		{"no parens", "42 cat S 1 2 3 4 5 6\n", "no \"(comm)\""},
		{"close before open", "42 )cat( S 1 2 3 4 5 6\n", "no \"(comm)\""},
		{"bad pid", "x (cat)" + statTail, "field 1 (pid)"},
		{"zero pid", "0 (cat)" + statTail, "field 1 (pid)"},
		{"truncated", "42 (cat) S 1 2\n", "fields after comm"},
		{"long state", "42 (cat) SS 1 42 42 0 -1 4 0\n", "field 3 (state)"},
		{"bad ppid", "42 (cat) S -1 42 42 0 -1 4 0\n", "field 4 (ppid)"},
		{"bad flags", "42 (cat) S 1 42 42 0 -1 -4 0\n", "field 9 (flags)"},
		{"flags overflow", "42 (cat) S 1 42 42 0 -1 4294967296 0\n", "field 9 (flags)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseStat([]byte(tt.in))
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("parseStat(%q) error = %v, want *ParseError", tt.in, err)
			}
			if pe.File != "stat" || !strings.Contains(err.Error(), tt.msg) || !strings.HasPrefix(err.Error(), "parse stat: ") {
				t.Errorf("error = %q (file %q), want prefix \"parse stat: \" and %q", err, pe.File, tt.msg)
			}
		})
	}
}

func TestParseStatus(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want status
	}{
		{"user", statusSelf, status{UID: 1000, RSS: 1928 * 1024}},
		{"kthread no VmRSS", statusKthread, status{UID: 0, RSS: 0}},
		{"no trailing newline", "Uid:\t5\t5\t5\t5\nVmRSS:\t1 kB", status{UID: 5, RSS: 1024}},
		{"hostile name escaped", "Name:\ta\\nUid:\\t0\nUid:\t7\t7\t7\t7\n", status{UID: 7}},
		{"line without colon is blank", "\nUid:\t7\t7\t7\t7\n\n", status{UID: 7}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStatus([]byte(tt.in))
			if err != nil {
				t.Fatalf("parseStatus: %v", err)
			}
			if got != tt.want {
				t.Errorf("parseStatus = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseStatusErrors(t *testing.T) {
	tests := []struct {
		name, in, msg string
		line          int
	}{
		{"empty", "", "no Uid line", 0},
		{"no uid", "Name:\tx\nVmRSS:\t1 kB\n", "no Uid line", 0},
		{"no colon", "Name:\tx\ngarbage\nUid:\t0\n", "no ':'", 2},
		{"empty uid", "Uid:\n", "empty Uid", 1},
		{"bad uid", "Uid:\t-1\t0\t0\t0\n", "Uid \"-1\"", 1},
		{"repeated uid", "Uid:\t0\nUid:\t1\n", "repeated Uid", 2},
		{"rss unit", "Uid:\t0\nVmRSS:\t12 MB\n", "VmRSS", 2},
		{"rss missing unit", "Uid:\t0\nVmRSS:\t12\n", "VmRSS", 2},
		{"rss bad", "Uid:\t0\nVmRSS:\tx kB\n", "VmRSS", 2},
		{"rss overflow", "Uid:\t0\nVmRSS:\t18446744073709551615 kB\n", "overflows", 2},
		{"repeated rss", "Uid:\t0\nVmRSS:\t1 kB\nVmRSS:\t1 kB\n", "repeated VmRSS", 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseStatus([]byte(tt.in))
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("parseStatus error = %v, want *ParseError", err)
			}
			if pe.File != "status" || pe.Line != tt.line || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error = %q (file %q line %d), want line %d and %q", err, pe.File, pe.Line, tt.line, tt.msg)
			}
		})
	}
}

func TestParseCmdline(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"empty", "", nil},
		{"single NUL", "\x00", nil},
		{"one", "/usr/sbin/sshd\x00", []string{"/usr/sbin/sshd"}},
		{"args", "java\x00-Xmx1g\x00-jar\x00app.jar\x00", []string{"java", "-Xmx1g", "-jar", "app.jar"}},
		{"empty arg", "sh\x00\x00x\x00", []string{"sh", "", "x"}},
		{"setproctitle no NUL", "sshd: root@pts/0", []string{"sshd: root@pts/0"}},
		{"newline and invalid utf8", "a\nb\x00\xff\x00", []string{"a\nb", "\xff"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := parseCmdline([]byte(tt.in), false); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("parseCmdline(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// TestParseCmdlineCut: the first MaxCmdline bytes of a longer cmdline keep
// MaxCmdline-3 bytes (fewer rather than half a character) and end in "…";
// past 63 NULs the arguments stay joined by spaces in the last one.
func TestParseCmdlineCut(t *testing.T) {
	keep := MaxCmdline - len(CmdlineCut)
	long := "java\x00-cp\x00" + strings.Repeat("x", MaxCmdline)
	euro := "a\x00" + strings.Repeat("b", keep-3) + "€" // "€" is 3 bytes: it straddles the cut
	many := strings.Repeat("a\x00", 100)
	tests := []struct {
		name string
		in   string
		cut  bool
		want []string
	}{
		{"cut in an argument", long[:MaxCmdline], true, []string{"java", "-cp", strings.Repeat("x", keep-len("java\x00-cp\x00")) + "…"}},
		{"cut after a NUL", "a\x00" + strings.Repeat("b", keep-3) + "\x00c", true, []string{"a", strings.Repeat("b", keep-3), "…"}},
		{"not inside a character", (euro + "z")[:MaxCmdline], true, []string{"a", strings.Repeat("b", keep-3) + "…"}},
		{"too many arguments", many, false, append(slices.Repeat([]string{"a"}, maxArgs-1), strings.TrimSuffix(strings.Repeat("a ", 100-maxArgs+1), " "))},
		{"only NULs, cut", strings.Repeat("\x00", MaxCmdline), true, append(slices.Repeat([]string{""}, maxArgs-1), strings.Repeat(" ", keep-maxArgs+1)+"…")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := parseCmdline([]byte(tt.in), tt.cut)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("parseCmdline(%.40q…, %v) = %.80q, want %.80q", tt.in, tt.cut, got, tt.want)
			}
			if n := len(strings.Join(got, " ")); n > MaxCmdline {
				t.Errorf("%d bytes kept, want at most %d", n, MaxCmdline)
			}
		})
	}
}

func TestParseInt(t *testing.T) {
	good := []struct {
		in   string
		want int
	}{
		{"0\n", 0}, {"-1000\n", -1000}, {"1000", 1000}, {"-17\n", -17}, {"15\n", 15},
	}
	for _, tt := range good {
		got, err := parseInt("oom_score_adj", []byte(tt.in))
		if err != nil || got != tt.want {
			t.Errorf("parseInt(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
	for _, in := range []string{"", "\n", "abc\n", "1 \n", " 1\n", "1\n\n", "0x10\n", "99999999999999999999\n"} {
		_, err := parseInt("oom_score_adj", []byte(in))
		var pe *ParseError
		if !errors.As(err, &pe) || pe.File != "oom_score_adj" || !strings.Contains(err.Error(), "parse oom_score_adj line 1:") {
			t.Errorf("parseInt(%q) error = %v, want ParseError naming oom_score_adj", in, err)
		}
	}
}

func TestParseCgroup(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []CgroupLine
	}{
		{"v2", "0::/system.slice/ssh.service\n", []CgroupLine{{ID: 0, Path: "/system.slice/ssh.service"}}},
		{"v2 no newline", "0::/", []CgroupLine{{ID: 0, Path: "/"}}},
		{"v2 deleted", "0::/lxc/c1 (deleted)\n", []CgroupLine{{ID: 0, Path: "/lxc/c1", Deleted: true}}},
		{"hybrid", "9:name=systemd:/\n6:freezer:/\n4:memory:/process_api/7ad9\n2:cpu,cpuacct:/x\n0::/\n", []CgroupLine{
			{ID: 9, Controllers: []string{"name=systemd"}, Path: "/"},
			{ID: 6, Controllers: []string{"freezer"}, Path: "/"},
			{ID: 4, Controllers: []string{"memory"}, Path: "/process_api/7ad9"},
			{ID: 2, Controllers: []string{"cpu", "cpuacct"}, Path: "/x"},
			{ID: 0, Path: "/"},
		}},
		{"colon in path", "0::/a:b:c\n", []CgroupLine{{ID: 0, Path: "/a:b:c"}}},
		{"space in path", "0::/a b\n", []CgroupLine{{ID: 0, Path: "/a b"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseCgroup([]byte(tt.in))
			if err != nil {
				t.Fatalf("parseCgroup: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("parseCgroup = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseCgroupErrors(t *testing.T) {
	tests := []struct {
		name, in, msg string
		line          int
	}{
		{"empty", "", "empty", 0},
		{"newline only", "\n", "empty", 0},
		{"two fields", "0:/\n", "want hierarchy-ID", 1},
		{"bad id", "x::/\n", "hierarchy ID", 1},
		{"negative id", "-1::/\n", "hierarchy ID", 1},
		{"relative", "0::a\n", "not absolute", 1},
		{"empty path", "0::\n", "not absolute", 1},
		{"blank line", "4:memory:/\n\n0::/\n", "want hierarchy-ID", 2},
		{"v1 no controllers", "4::/\n", "no controllers", 1},
		{"empty controller", "4:memory,:/\n", "empty controller", 1},
		// A cgroup named "x\n0::/elsewhere" would otherwise forge a line.
		{"forged v2 line", "0::/x\n0::/elsewhere\n", "hierarchy ID 0 repeated", 2},
		{"forged v1 line", "4:memory:/x\n7:memory:/elsewhere\n", "controller \"memory\" repeated", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseCgroup([]byte(tt.in))
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("parseCgroup error = %v, want *ParseError", err)
			}
			if pe.File != "cgroup" || pe.Line != tt.line || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error = %q (line %d), want line %d and %q", err, pe.Line, tt.line, tt.msg)
			}
		})
	}
}

func TestSafeEscapesControlInvalidAndBidiCharacters(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"sshd", "sshd"},
		{"a) b (c", "a) b (c"},
		{"a\nb\tc", `a\nb\tc`},
		{`back\slash`, `back\\slash`},
		{"\xff\xfe", `\xff\xfe`},
		{"\x1b[31mred", `\u001b[31mred`},
		{"nul\x00", `nul\u0000`},
		{"évil\u202egnp.exe", `évil\u202egnp.exe`}, // bidi override
		{"\ufffd", `\ufffd`},                       // a real U+FFFD, distinguishable from an invalid byte
		{"kworker/R-kvfree_rcu_reclaim", "kworker/R-kvfree_rcu_reclaim"},
	}
	for _, tt := range tests {
		if got := Safe(tt.in); got != tt.want {
			t.Errorf("Safe(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if got := (Proc{Comm: "a\nb"}).SafeComm(); got != `a\nb` {
		t.Errorf("SafeComm = %q", got)
	}
}
