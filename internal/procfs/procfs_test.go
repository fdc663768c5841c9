package procfs

import (
	"github.com/oomwatch/oomwatch/test/fixture"
	"golang.org/x/sys/unix"

	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// checkFDs fails t if it ends with more open fds than it started with. Call
// it first so its cleanup runs after every other cleanup (children reaped).
func checkFDs(t *testing.T) {
	t.Helper()
	before := fixture.CountFDs(t)
	t.Cleanup(func() {
		if after := fixture.CountFDs(t); after != before {
			t.Errorf("fd leak: %d open fds before, %d after", before, after)
		}
	})
}

// fakeProc describes one process of a fake /proc tree.
type fakeProc struct {
	pid, ppid int
	comm      string
	state     byte // 'S' if 0
	flags     uint
	uid       int
	rssKB     int // -1: no VmRSS line (kthread, zombie)
	cmdline   []string
	adj       string  // oom_score_adj content; "" → derived from adjN
	adjN      int     // oom_score_adj value when adj == ""
	oomAdj    *string // nil: file absent
	cgroup    string
	omit      []string // files not to write (vanished mid-read)
}

func (p fakeProc) write(t *testing.T, root string) {
	t.Helper()
	dir := filepath.Join(root, strconv.Itoa(p.pid))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	state := p.state
	if state == 0 {
		state = 'S'
	}
	files := map[string]string{
		"stat":    fixture.StatLine(p.pid, p.comm, state, p.ppid, p.flags),
		"status":  fmt.Sprintf("Name:\t%s\nState:\t%c\nTgid:\t%d\nPid:\t%d\nPPid:\t%d\nUid:\t%d\t%d\t%d\t%d\n", strings.ReplaceAll(p.comm, "\n", `\n`), state, p.pid, p.pid, p.ppid, p.uid, p.uid, p.uid, p.uid),
		"cmdline": "",
		"cgroup":  p.cgroup,
	}
	if p.rssKB >= 0 {
		files["status"] += fmt.Sprintf("VmRSS:\t%8d kB\n", p.rssKB)
	}
	files["status"] += "Threads:\t1\n"
	for _, a := range p.cmdline {
		files["cmdline"] += a + "\x00"
	}
	if p.cgroup == "" {
		files["cgroup"] = "0::/\n"
	}
	if p.adj != "" {
		files["oom_score_adj"] = p.adj
	} else {
		files["oom_score_adj"] = strconv.Itoa(p.adjN) + "\n"
	}
	if p.oomAdj != nil {
		files["oom_adj"] = *p.oomAdj
	}
	for _, o := range p.omit {
		delete(files, o)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func strp(s string) *string { return &s }

// sshdTree is the classic inherited-protection incident: an sshd that kept -1000 across a
// SIGHUP re-exec passed it to a login shell and from there to a JVM.
func sshdTree(t *testing.T) string {
	root := t.TempDir()
	for _, p := range []fakeProc{
		{pid: 1, ppid: 0, comm: "systemd", rssKB: 12000, cmdline: []string{"/sbin/init"}, adjN: 0, oomAdj: strp("0\n")},
		{pid: 2, ppid: 0, comm: "kthreadd", flags: 0x00208040, rssKB: -1, adjN: 0, oomAdj: strp("0\n")},
		{pid: 100, ppid: 1, comm: "sshd", rssKB: 8000, cmdline: []string{"sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups"}, adjN: -1000, oomAdj: strp("-17\n"),
			cgroup: "0::/system.slice/ssh.service\n"},
		{pid: 200, ppid: 100, comm: "bash", rssKB: 4000, cmdline: []string{"-bash"}, adjN: -1000, oomAdj: strp("-17\n"), uid: 1000,
			cgroup: "0::/user.slice/user-1000.slice/session-1.scope\n"},
		{pid: 300, ppid: 200, comm: "java", rssKB: 2 << 20, cmdline: []string{"java", "-Xmx4g", "-jar", "app.jar"}, adjN: -1000, uid: 1000,
			cgroup: "0::/user.slice/user-1000.slice/session-1.scope\n"}, // no oom_adj file: not read (derived)
		{pid: 301, ppid: 300, comm: "a) b (c", rssKB: -1, state: 'Z', flags: PFExiting, adjN: -1000, oomAdj: strp("-17\n")},
	} {
		p.write(t, root)
	}
	return root
}

func TestFSProc(t *testing.T) {
	checkFDs(t)
	fsys := New(sshdTree(t))
	tests := []struct {
		pid  int
		want Proc
	}{
		{100, Proc{PID: 100, PPID: 1, Comm: "sshd", Cmdline: []string{"sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups"}, State: 'S',
			RSS: 8000 * 1024, OOMScoreAdj: -1000}},
		{300, Proc{PID: 300, PPID: 200, Comm: "java", Cmdline: []string{"java", "-Xmx4g", "-jar", "app.jar"}, State: 'S', UID: 1000,
			RSS: 2 << 30, OOMScoreAdj: -1000}},
		{2, Proc{PID: 2, PPID: 0, Comm: "kthreadd", State: 'S', Flags: 0x00208040, Kthread: true}},
		{301, Proc{PID: 301, PPID: 300, Comm: "a) b (c", State: 'Z', Flags: PFExiting, OOMScoreAdj: -1000}},
	}
	for _, tt := range tests {
		got, err := fsys.Proc(tt.pid)
		if err != nil {
			t.Fatalf("Proc(%d): %v", tt.pid, err)
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Proc(%d) =\n %+v, want\n %+v", tt.pid, got, tt.want)
		}
	}
}

func TestFSProcErrors(t *testing.T) {
	checkFDs(t)
	root := t.TempDir()
	for _, p := range []fakeProc{
		{pid: 10, ppid: 1, comm: "nostatus", omit: []string{"status"}},
		{pid: 11, ppid: 1, comm: "noadj", omit: []string{"oom_score_adj"}},
		{pid: 12, ppid: 1, comm: "nocmdline", omit: []string{"cmdline"}},
		{pid: 13, ppid: 1, comm: "badadj", adj: "minus one\n"},
		{pid: 14, ppid: 1, comm: "rangeadj", adj: "-1001\n"},
		{pid: 15, ppid: 1, comm: "rangeoomadj", oomAdj: strp("-18\n")}, // never read: no error
		{pid: 16, ppid: 1, comm: "x", rssKB: 5},
	} {
		p.write(t, root)
	}
	// pid 16's stat claims to be pid 17.
	if err := os.WriteFile(filepath.Join(root, "16", "stat"), []byte("17 (x)"+statTail), 0o644); err != nil {
		t.Fatal(err)
	}
	fsys := New(root)

	for _, pid := range []int{10, 11, 12, 99} {
		_, err := fsys.Proc(pid)
		if !errors.Is(err, ErrGone) {
			t.Errorf("Proc(%d) error = %v, want ErrGone", pid, err)
		}
	}
	for _, tt := range []struct {
		pid        int
		file, text string
	}{
		{13, "13/oom_score_adj", `"minus one" is not a decimal integer`},
		{14, "14/oom_score_adj", "-1001 outside -1000..1000"},
		{16, "16/stat", "pid field is 17, want 16"},
	} {
		_, err := fsys.Proc(tt.pid)
		var pe *ParseError
		if !errors.As(err, &pe) {
			t.Errorf("Proc(%d) error = %v, want *ParseError", tt.pid, err)
			continue
		}
		if pe.File != filepath.Join(root, tt.file) || !strings.Contains(err.Error(), tt.text) || !strings.Contains(err.Error(), pe.File) {
			t.Errorf("Proc(%d) error = %q (file %q), want file %s and %q", tt.pid, err, pe.File, tt.file, tt.text)
		}
		if errors.Is(err, ErrGone) {
			t.Errorf("Proc(%d): parse error %v must not be ErrGone", tt.pid, err)
		}
	}
	if _, err := fsys.Proc(0); err == nil {
		t.Error("Proc(0) succeeded")
	}
}

func TestAncestryAndOrigin(t *testing.T) {
	checkFDs(t)
	fsys := New(sshdTree(t))
	chain, err := fsys.Ancestry(300)
	if err != nil {
		t.Fatalf("Ancestry(300): %v", err)
	}
	var pids []int
	for _, p := range chain {
		pids = append(pids, p.PID)
	}
	if want := []int{300, 200, 100, 1}; !reflect.DeepEqual(pids, want) {
		t.Fatalf("Ancestry(300) pids = %v, want %v", pids, want)
	}
	if o := Origin(chain); o != 2 || chain[o].Comm != "sshd" {
		t.Errorf("Origin = %d, want 2 (sshd)", o)
	}

	// The zombie child of java: same origin.
	chain, err = fsys.Ancestry(301)
	if err != nil {
		t.Fatal(err)
	}
	if o := Origin(chain); o != 3 || chain[o].PID != 100 {
		t.Errorf("Origin(301 chain) = %d, want 3 (sshd)", o)
	}

	// kthreadd: ppid 0 ends the chain.
	chain, err = fsys.Ancestry(2)
	if err != nil || len(chain) != 1 || !chain[0].Kthread {
		t.Errorf("Ancestry(2) = %+v, %v; want just kthreadd", chain, err)
	}
	if o := Origin(chain); o != -1 {
		t.Errorf("Origin(kthreadd) = %d, want -1", o)
	}

	if _, err := fsys.Ancestry(999); !errors.Is(err, ErrGone) {
		t.Errorf("Ancestry(missing) error = %v, want ErrGone", err)
	}
}

// Ancestors are read briefly, and once per inspection through the memo.
func TestAncestryOfMemo(t *testing.T) {
	checkFDs(t)
	root := sshdTree(t)
	fsys := New(root)
	p, err := fsys.Proc(300)
	if err != nil {
		t.Fatal(err)
	}
	memo := map[int]Proc{}
	chain, err := fsys.AncestryOf(p, memo)
	if err != nil || len(chain) != 4 {
		t.Fatalf("AncestryOf(300) = %+v, %v", chain, err)
	}
	if chain[0].RSS == 0 || chain[2].Comm != "sshd" || len(chain[2].Cmdline) == 0 || chain[2].OOMScoreAdj != OOMScoreAdjMin {
		t.Fatalf("chain %+v: want the task in full, ancestors with comm, cmdline and oom_score_adj", chain)
	}
	if len(memo) != 3 {
		t.Fatalf("memo holds %d ancestors, want 3", len(memo))
	}
	// The sibling 301 shares 200, 100, 1: answered from the memo even
	// though their /proc entries are gone now.
	for _, pid := range []string{"200", "100", "1"} {
		if err := os.RemoveAll(filepath.Join(root, pid)); err != nil {
			t.Fatal(err)
		}
	}
	q, err := fsys.Proc(301)
	if err != nil {
		t.Fatal(err)
	}
	chain, err = fsys.AncestryOf(q, memo)
	if err != nil || len(chain) != 5 || Origin(chain) != 3 {
		t.Fatalf("AncestryOf(301) from the memo = %d procs, origin %d, %v", len(chain), Origin(chain), err)
	}
}

// OriginChain stops at the first unprotected ancestor: PID 1 here is
// never read (its stat is garbage, which AncestryOf reports).
func TestOriginChainStopsAtFirstUnprotected(t *testing.T) {
	checkFDs(t)
	root := t.TempDir()
	for _, p := range []fakeProc{
		{pid: 1, ppid: 0, comm: "init"},
		{pid: 50, ppid: 1, comm: "supervisor"},
		{pid: 60, ppid: 50, comm: "runtime", adjN: -1000},
		{pid: 70, ppid: 60, comm: "app", adjN: -1000},
	} {
		p.write(t, root)
	}
	if err := os.WriteFile(filepath.Join(root, "1", "stat"), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	fsys := New(root)
	p, err := fsys.Proc(70)
	if err != nil {
		t.Fatal(err)
	}
	chain, err := fsys.OriginChain(p, nil)
	if err != nil || len(chain) != 3 || chain[2].PID != 50 {
		t.Fatalf("OriginChain(70) = %+v, %v; want app, runtime, supervisor", chain, err)
	}
	if o := Origin(chain); o != 1 || chain[o].Comm != "runtime" {
		t.Errorf("Origin = %d, want 1 (runtime)", o)
	}
	if _, err := fsys.AncestryOf(p, nil); err == nil {
		t.Error("AncestryOf read up to PID 1 without the parse error")
	}
	// An unprotected task has no origin: nothing above it is read.
	q, err := fsys.Proc(50)
	if err != nil {
		t.Fatal(err)
	}
	if chain, err := fsys.OriginChain(q, nil); err != nil || len(chain) != 1 {
		t.Errorf("OriginChain(50) = %+v, %v; want the task only", chain, err)
	}
}

func TestAncestryVanishedParent(t *testing.T) {
	checkFDs(t)
	root := t.TempDir()
	fakeProc{pid: 50, ppid: 40, comm: "child", adjN: -1000}.write(t, root)
	fakeProc{pid: 40, ppid: 30, comm: "parent", adjN: -1000, omit: []string{"oom_score_adj"}}.write(t, root) // exits mid-read
	chain, err := New(root).Ancestry(50)
	if err != nil {
		t.Fatalf("Ancestry: %v", err)
	}
	if len(chain) != 1 || chain[0].PID != 50 {
		t.Fatalf("Ancestry = %+v, want the child only", chain)
	}
	if last := chain[len(chain)-1]; last.PID == 1 || last.PPID == 0 {
		t.Error("truncated chain looks complete")
	}
	if o := Origin(chain); o != 0 {
		t.Errorf("Origin = %d, want 0", o)
	}
}

func TestAncestryCycle(t *testing.T) {
	checkFDs(t)
	root := t.TempDir()
	fakeProc{pid: 500, ppid: 501, comm: "a"}.write(t, root)
	fakeProc{pid: 501, ppid: 502, comm: "b"}.write(t, root)
	fakeProc{pid: 502, ppid: 500, comm: "c"}.write(t, root)
	fakeProc{pid: 600, ppid: 600, comm: "self"}.write(t, root)
	for _, pid := range []int{500, 600} {
		chain, err := New(root).Ancestry(pid)
		if !errors.Is(err, ErrCycle) || chain != nil {
			t.Errorf("Ancestry(%d) = %v, %v; want ErrCycle", pid, chain, err)
		}
	}
}

func TestFSCgroups(t *testing.T) {
	checkFDs(t)
	root := t.TempDir()
	fakeProc{pid: 7, ppid: 1, comm: "c", cgroup: "4:memory:/lxc/c1\n9:name=systemd:/lxc/c1\n0::/lxc/c1 (deleted)\n"}.write(t, root)
	fakeProc{pid: 8, ppid: 1, comm: "bad", cgroup: "garbage\n"}.write(t, root)
	fsys := New(root)
	got, err := fsys.Cgroups(7)
	if err != nil {
		t.Fatal(err)
	}
	want := []CgroupLine{
		{ID: 4, Controllers: []string{"memory"}, Path: "/lxc/c1"},
		{ID: 9, Controllers: []string{"name=systemd"}, Path: "/lxc/c1"},
		{ID: 0, Path: "/lxc/c1", Deleted: true},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Cgroups = %+v, want %+v", got, want)
	}
	var pe *ParseError
	if _, err := fsys.Cgroups(8); !errors.As(err, &pe) || pe.File != filepath.Join(root, "8", "cgroup") {
		t.Errorf("Cgroups(bad) error = %v, want ParseError naming the file", err)
	}
	if _, err := fsys.Cgroups(9); !errors.Is(err, ErrGone) {
		t.Errorf("Cgroups(missing) error = %v, want ErrGone", err)
	}
}

// The real /proc, read-only: ourselves and kthreadd.
func TestFSProcReal(t *testing.T) {
	checkFDs(t)
	fsys := New("/proc")
	self, err := fsys.Proc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if self.PPID != os.Getppid() || self.UID != os.Getuid() || self.RSS == 0 || self.Kthread || self.Exiting() ||
		len(self.Cmdline) == 0 || self.Cmdline[0] != os.Args[0] {
		t.Errorf("Proc(self) = %+v", self)
	}
	chain, err := fsys.Ancestry(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if last := chain[len(chain)-1]; last.PID != 1 && last.PPID != 0 {
		t.Errorf("Ancestry(self) ends at %+v", last)
	}
	lines, err := fsys.Cgroups(os.Getpid())
	if err != nil || len(lines) == 0 {
		t.Errorf("Cgroups(self) = %v, %v", lines, err)
	}
	if kt, err := fsys.Proc(2); err == nil { // kthreadd, when our pid namespace shows it
		if !kt.Kthread || kt.RSS != 0 || kt.Cmdline != nil || !kt.Unkillable() {
			t.Errorf("Proc(2) = %+v, want a kernel thread", kt)
		}
	}
}

// The legacy oom_adj as the kernel computes it from oom_score_adj
// [6.12 fs/proc/base.c:oom_adj_read].
func TestOOMAdjDerived(t *testing.T) {
	for adj, want := range map[int]int{-1000: -17, -941: -15, -999: -16, -59: -1, -1: 0, 0: 0, 58: 0, 59: 1, 500: 8, 999: 16, 1000: 15} {
		if got := (Proc{OOMScoreAdj: adj}).OOMAdj(); got != want {
			t.Errorf("oom_score_adj %d: oom_adj %d, want %d", adj, got, want)
		}
	}
}

func TestUnkillableIsMinus1000OrAKernelThread(t *testing.T) {
	tests := []struct {
		p    Proc
		want bool
	}{
		{Proc{OOMScoreAdj: -1000}, true},
		{Proc{OOMScoreAdj: -999}, false},
		{Proc{OOMScoreAdj: 0}, false},
		{Proc{OOMScoreAdj: 1000}, false},
		{Proc{OOMScoreAdj: 0, Kthread: true}, true},
		{Proc{OOMScoreAdj: -941}, false},
	}
	for _, tt := range tests {
		if got := tt.p.Unkillable(); got != tt.want {
			t.Errorf("%+v.Unkillable() = %v, want %v", tt.p, got, tt.want)
		}
	}
}

func TestExitingIsZombieDeadOrPFExiting(t *testing.T) {
	tests := []struct {
		p    Proc
		want bool
	}{
		{Proc{State: 'R'}, false},
		{Proc{State: 'S'}, false},
		{Proc{State: 'D'}, false},
		{Proc{State: 'T'}, false},
		{Proc{State: 'Z'}, true},
		{Proc{State: 'X'}, true},
		{Proc{State: 'x'}, true},
		{Proc{State: 'D', Flags: PFExiting}, true},
		{Proc{State: 'R', Flags: PFKthread}, false},
	}
	for _, tt := range tests {
		if got := tt.p.Exiting(); got != tt.want {
			t.Errorf("%+v.Exiting() = %v, want %v", tt.p, got, tt.want)
		}
	}
}

func TestOriginIsTheTopOfTheUnbrokenMinus1000Chain(t *testing.T) {
	p := func(pid, adj int) Proc { return Proc{PID: pid, OOMScoreAdj: adj} }
	kt := Proc{PID: 2, Kthread: true, OOMScoreAdj: -1000}
	tests := []struct {
		name  string
		chain []Proc
		want  int
	}{
		{"empty", nil, -1},
		{"task killable", []Proc{p(300, 0), p(200, -1000), p(1, 0)}, -1},
		{"task -999", []Proc{p(300, -999), p(1, -1000)}, -1},
		{"only task", []Proc{p(300, -1000)}, 0},
		{"parent killable", []Proc{p(300, -1000), p(200, 0), p(1, 0)}, 0},
		{"sshd", []Proc{p(300, -1000), p(200, -1000), p(100, -1000), p(1, 0)}, 2},
		{"gap", []Proc{p(300, -1000), p(200, -1000), p(150, 0), p(100, -1000), p(1, 0)}, 1},
		{"init itself", []Proc{p(300, -1000), p(1, -1000)}, 1},
		{"truncated", []Proc{p(300, -1000), p(200, -1000)}, 1},
		{"kthread task", []Proc{kt}, -1},
		{"kthread parent", []Proc{p(300, -1000), kt}, 0},
	}
	for _, tt := range tests {
		if got := Origin(tt.chain); got != tt.want {
			t.Errorf("%s: Origin = %d, want %d", tt.name, got, tt.want)
		}
	}
}

func TestKernelReleaseReadsOsrelease(t *testing.T) {
	root := t.TempDir()
	if got := New(root).KernelRelease(); got != "" {
		t.Errorf("no osrelease: %q, want \"\"", got)
	}
	if err := os.MkdirAll(filepath.Join(root, "sys/kernel"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "sys/kernel/osrelease"), []byte("5.15.0-91-generic\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := New(root).KernelRelease(); got != "5.15.0-91-generic" {
		t.Errorf("%q, want 5.15.0-91-generic", got)
	}
	if got := New("/proc").KernelRelease(); got == "" {
		t.Error("the host's /proc/sys/kernel/osrelease read as empty")
	}
}

// The shipped unit hides /proc/sys (ProcSubset=pid): the host's release
// then comes from uname(2); a root that is not the host's never does.
func TestKernelReleaseWithProcSysHidden(t *testing.T) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "sys/kernel/osrelease")
	if got, want := kernelRelease(missing, true), unix.ByteSliceToString(u.Release[:]); got != want || got == "" {
		t.Errorf("host with /proc/sys hidden: %q, want uname's %q", got, want)
	}
	if got := kernelRelease(missing, false); got != "" {
		t.Errorf("another root with no osrelease: %q, want \"\"", got)
	}
}
