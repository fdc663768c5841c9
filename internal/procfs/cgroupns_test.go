package procfs

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// nsLink gives pid of the fake tree root a /proc/PID/ns/cgroup link. The
// target need not exist: like the kernel's, it is only ever read.
func nsLink(t *testing.T, root string, pid int, target string) {
	t.Helper()
	dir := filepath.Join(root, strconv.Itoa(pid), "ns")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, filepath.Join(dir, "cgroup")); err != nil {
		t.Fatal(err)
	}
}

func TestCheckCgroupNamespace(t *testing.T) {
	const self = 4242
	const kthreadd = 0x00208040 // PF_KTHREAD | PF_NOFREEZE | PF_FORKNOEXEC
	for _, tc := range []struct {
		name  string
		procs []fakeProc
		links map[int]string // pid → ns/cgroup link target
		want  CgroupNS
		says  string // in Evidence
	}{
		{
			name:  "host: same namespace as PID 1",
			procs: []fakeProc{{pid: 1, comm: "systemd"}, {pid: self, ppid: 1, comm: "oomwatch"}},
			links: map[int]string{1: "cgroup:[4026531835]", self: "cgroup:[4026531835]"},
			want:  CgroupNS{Own: 4026531835, Host: 4026531835, HostPID: 1},
			says:  "PID 1's cgroup:[4026531835]",
		},
		{
			name: "container with a private cgroup namespace",
			procs: []fakeProc{{pid: 1, comm: "systemd", cgroup: "0::/../../..\n"},
				{pid: self, ppid: 1, comm: "oomwatch"}},
			links: map[int]string{1: "cgroup:[4026531835]", self: "cgroup:[4026532241]"},
			want:  CgroupNS{Own: 4026532241, Host: 4026531835, HostPID: 1, Private: true},
			says:  "cgroup namespace cgroup:[4026532241], PID 1's cgroup:[4026531835]",
		},
		{
			// The namespace links compare, whatever the paths look like.
			name: "private namespace rooted at the root cgroup",
			procs: []fakeProc{{pid: 1, comm: "init"},
				{pid: self, ppid: 1, comm: "oomwatch"}},
			links: map[int]string{1: "cgroup:[4026531835]", self: "cgroup:[4026532300]"},
			want:  CgroupNS{Own: 4026532300, Host: 4026531835, HostPID: 1, Private: true},
		},
		{
			name: "PID 1's link unreadable: kthreadd is the host's namespace",
			procs: []fakeProc{{pid: 1, comm: "process_api", cgroup: "0::/../..\n"},
				{pid: 2, ppid: 0, comm: "kthreadd", flags: kthreadd, rssKB: -1},
				{pid: self, ppid: 1, comm: "oomwatch"}},
			links: map[int]string{2: "cgroup:[4026531835]", self: "cgroup:[4026532241]"},
			want:  CgroupNS{Own: 4026532241, Host: 4026531835, HostPID: 2, Private: true},
			says:  "PID 2's cgroup:[4026531835]",
		},
		{
			name: "PID 1's link unreadable, kthreadd in the same namespace",
			procs: []fakeProc{{pid: 1, comm: "process_api"},
				{pid: 2, ppid: 0, comm: "kthreadd", flags: kthreadd, rssKB: -1},
				{pid: self, ppid: 1, comm: "oomwatch"}},
			links: map[int]string{2: "cgroup:[4026531835]", self: "cgroup:[4026531835]"},
			want:  CgroupNS{Own: 4026531835, Host: 4026531835, HostPID: 2},
		},
		{
			// In a private PID namespace PID 2 is an ordinary process: its
			// namespace says nothing about the host's.
			name: "PID 2 is not kthreadd: its link is not used",
			procs: []fakeProc{{pid: 1, comm: "init"},
				{pid: 2, ppid: 1, comm: "sh"},
				{pid: self, ppid: 1, comm: "oomwatch"}},
			links: map[int]string{2: "cgroup:[4026532241]", self: "cgroup:[4026532241]"},
			want:  CgroupNS{Own: 4026532241},
			says:  "cannot compare",
		},
		{
			name: "no link readable, PID 1 outside the namespace: private",
			procs: []fakeProc{{pid: 1, comm: "init", cgroup: "12:memory:/../..\n11:pids:/../..\n0::/../..\n"},
				{pid: self, ppid: 1, comm: "oomwatch"}},
			want: CgroupNS{Private: true},
			says: `PID 1's cgroup reads "/../.."`,
		},
		{
			name: "no link readable, PID 1 inside: cannot tell",
			procs: []fakeProc{{pid: 1, comm: "init", cgroup: "0::/init.scope\n"},
				{pid: self, ppid: 1, comm: "oomwatch"}},
			want: CgroupNS{},
			says: "cannot compare",
		},
		{
			// A cgroup may be named "..x": that is no way out of the namespace.
			name: "a cgroup named ..x is inside",
			procs: []fakeProc{{pid: 1, comm: "init", cgroup: "0::/..x\n"},
				{pid: self, ppid: 1, comm: "oomwatch"}},
			want: CgroupNS{},
		},
		{
			name: "a malformed link counts as unreadable",
			procs: []fakeProc{{pid: 1, comm: "init", cgroup: "0::/../x\n"},
				{pid: self, ppid: 1, comm: "oomwatch"}},
			links: map[int]string{1: "cgroup:[x]", self: "net:[4026531835]"},
			want:  CgroupNS{Private: true},
			says:  `"/../x"`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			for _, p := range tc.procs {
				p.write(t, root)
			}
			for pid, target := range tc.links {
				nsLink(t, root, pid, target)
			}
			got := New(root).CheckCgroupNamespace(self)
			ev := got.Evidence
			got.Evidence = ""
			if got != tc.want {
				t.Errorf("got %+v (%s)\nwant %+v", got, ev, tc.want)
			}
			if ev == "" || !strings.Contains(ev, tc.says) {
				t.Errorf("evidence %q, want it to say %q", ev, tc.says)
			}
		})
	}
}

func TestParseNSLink(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint64
		ok   bool
	}{
		{"cgroup:[4026531835]", 4026531835, true},
		{"cgroup:[1]", 1, true},
		{"cgroup:[01]", 0, false},
		{"cgroup:[+1]", 0, false},
		{"cgroup:[0]", 0, false},
		{"cgroup:[]", 0, false},
		{"cgroup:[-1]", 0, false},
		{"cgroup:[4026531835", 0, false},
		{"cgroup4026531835]", 0, false},
		{"net:[4026531835]", 0, false},
		{"cgroup:[18446744073709551616]", 0, false},
		{"", 0, false},
	} {
		got, err := parseNSLink("cgroup", tc.in)
		if tc.ok != (err == nil) || got != tc.want {
			t.Errorf("parseNSLink(%q) = %d, %v; want %d, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
		var pe *ParseError
		if err != nil && !errors.As(err, &pe) {
			t.Errorf("parseNSLink(%q): error %v is not a *ParseError", tc.in, err)
		}
	}
}

// TestCheckCgroupNamespaceReal reads this host's /proc: the test runs in
// the host's cgroup namespace (the tiers run there), and at least our own
// link is readable.
func TestCheckCgroupNamespaceReal(t *testing.T) {
	fsys := New("/proc")
	own, err := fsys.CgroupNamespace(os.Getpid())
	if err != nil {
		t.Fatalf("own cgroup namespace: %v", err)
	}
	ns := fsys.CheckCgroupNamespace(os.Getpid())
	t.Logf("%+v", ns)
	if ns.Own != own {
		t.Errorf("Own %d, want %d", ns.Own, own)
	}
	if ns.Private {
		t.Errorf("the test runs in a private cgroup namespace? %s", ns.Evidence)
	}
}
