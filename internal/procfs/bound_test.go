package procfs

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/oomwatch/oomwatch/test/testtier"
)

// A process chooses its argv and, as root in its user namespace, its
// supplementary groups (up to 65,536: a 400 KB Groups: line in status).
// Reading it costs oomwatch MaxCmdline of cmdline kept and a read buffer,
// whatever their size. Real kernel, a real child.
func TestFSProcRealHugeArgvAndGroups(t *testing.T) {
	checkFDs(t)
	if os.Geteuid() != 0 {
		testtier.Require(t, testtier.Host, "needs root (setgroups with 65,536 groups)")
	}
	args := []string{"-c", "sleep 30; :", "sh"} // "; :" keeps sh from exec'ing sleep: its argv stays
	for i := 0; i < 8; i++ {
		args = append(args, strings.Repeat(strconv.Itoa(i), 120000))
	}
	groups := make([]uint32, 65536)
	for i := range groups {
		groups[i] = uint32(100000 + i)
	}
	cmd := exec.Command("sh", args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 0, Gid: 0, Groups: groups}}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start sh: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	pid := cmd.Process.Pid
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
		if strings.HasPrefix(string(b), "sh\x00-c\x00") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sh's cmdline is %.40q after 5s", b)
		}
	}
	st, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil || len(st) < 256<<10 {
		t.Fatalf("status of %d bytes (%v): the child did not get its 65,536 groups", len(st), err)
	}

	fsys := New("/proc")
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	p, err := fsys.Proc(pid)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if p.UID != 0 || p.RSS == 0 || p.PPID != os.Getpid() {
		t.Errorf("Proc = pid %d ppid %d uid %d rss %d, want uid 0 and an RSS from the status after the Groups line", p.PID, p.PPID, p.UID, p.RSS)
	}
	joined := strings.Join(p.Cmdline, " ")
	if !p.CmdlineTruncated || len(joined) > MaxCmdline || !strings.HasPrefix(joined, "sh -c sleep 30; : sh 000") || !strings.HasSuffix(joined, CmdlineCut) {
		t.Errorf("cmdline %.40q… of %d bytes, truncated %v; want its first %d bytes ending in %q",
			joined, len(joined), p.CmdlineTruncated, MaxCmdline, CmdlineCut)
	}
	// Bytes allocated by the read itself: the Proc and its cmdline (a read
	// buffer comes from the pool, or one more of 8 KiB).
	if n := after.TotalAlloc - before.TotalAlloc; n > 32<<10 {
		t.Errorf("reading a %d-byte status and a 960 KB cmdline allocated %d bytes, want at most 32 KiB", len(st), n)
	}
}

// Files the kernel prints short, found long (a fake tree): an error naming
// the file and the bound, never the memory.
func TestFSProcOversizedFiles(t *testing.T) {
	checkFDs(t)
	root := sshdTree(t)
	fsys := New(root)
	write := func(pid int, name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(root, strconv.Itoa(pid), name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(100, "stat", "100 ("+strings.Repeat("x", maxStat)+") S 1 100 100 0 -1 0 0 0 0 0\n")
	write(200, "cgroup", "0::/"+strings.Repeat("a/", maxCgroup/2)+"\n")
	write(300, "oom_score_adj", strings.Repeat("0", maxAdj+1))
	for _, tt := range []struct {
		pid  int
		read func(int) error
		file string
	}{
		{100, func(pid int) error { _, err := fsys.Proc(pid); return err }, "stat"},
		{200, func(pid int) error { _, err := fsys.Cgroups(pid); return err }, "cgroup"},
		{300, func(pid int) error { _, err := fsys.Brief(pid); return err }, "oom_score_adj"},
	} {
		err := tt.read(tt.pid)
		var pe *ParseError
		if !errors.As(err, &pe) || pe.File != filepath.Join(root, strconv.Itoa(tt.pid), tt.file) || !strings.Contains(err.Error(), "longer than") {
			t.Errorf("pid %d: error %v, want a ParseError for %s: longer than its bound", tt.pid, err, tt.file)
		}
	}

	// A status of any size: a long line the parser does not use is skipped.
	write(200, "status", "Name:\tbash\nGroups:\t"+strings.Repeat("1000 ", 200000)+"\nUid:\t1000\t1000\t1000\t1000\nVmRSS:\t    4000 kB\n")
	p, err := fsys.Proc(200)
	if err != nil || p.UID != 1000 || p.RSS != 4000<<10 {
		t.Errorf("Proc(200) with a 1 MB Groups line = uid %d rss %d, %v; want uid 1000, rss 4000 kB", p.UID, p.RSS, err)
	}
	// A line it does use, too long to be real, is an error.
	write(200, "status", "Name:\tbash\nUid:\t"+strings.Repeat("1", readBufSize)+"\n")
	_, err = fsys.Proc(200)
	var pe *ParseError
	if !errors.As(err, &pe) || pe.Line != 2 || !strings.Contains(err.Error(), "Uid line longer than") {
		t.Errorf("Proc(200) with an 8 KiB Uid line: %v, want a ParseError at line 2", err)
	}
}

// A cmdline longer than MaxCmdline in a fake tree: its start, marked.
func TestFSProcCmdlineCut(t *testing.T) {
	root := sshdTree(t)
	long := "java\x00-cp\x00" + strings.Repeat("/opt/app/lib/x.jar:", 1000) + "\x00Main\x00"
	if err := os.WriteFile(filepath.Join(root, "300", "cmdline"), []byte(long), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := New(root).Proc(300)
	if err != nil {
		t.Fatal(err)
	}
	want := strings.ReplaceAll(long[:MaxCmdline-len(CmdlineCut)], "\x00", " ") + CmdlineCut
	if got := strings.Join(p.Cmdline, " "); !p.CmdlineTruncated || got != want || len(p.Cmdline) != 3 {
		t.Errorf("cmdline %q (%d args, truncated %v), want %q", got, len(p.Cmdline), p.CmdlineTruncated, want)
	}
}

// Two fork chains of 2,100 protected tasks each: both chains are read in
// full, and the memo of one inspection keeps at most maxMemo ancestors.
func TestOriginChainMemoBounded(t *testing.T) {
	root := t.TempDir()
	if _, err := os.Stat("/dev/shm"); err == nil { // 25,000 files: in memory, not on a disk
		if root, err = os.MkdirTemp("/dev/shm", "oomwatch-procfs-test-"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(root) })
	}
	(fakeProc{pid: 1, ppid: 0, comm: "init", rssKB: 1}).write(t, root)
	const depth = 2100
	leaves := []int{}
	for c := 0; c < 2; c++ {
		ppid := 1
		for i := 0; i < depth; i++ {
			pid := 10 + c*depth + i
			(fakeProc{pid: pid, ppid: ppid, comm: "w", rssKB: 1, adjN: -1000, cmdline: []string{"w", strconv.Itoa(pid)}}).write(t, root)
			ppid = pid
		}
		leaves = append(leaves, ppid)
	}
	fsys := New(root)
	memo := map[int]Proc{}
	for _, leaf := range leaves {
		p, err := fsys.Proc(leaf)
		if err != nil {
			t.Fatal(err)
		}
		chain, err := fsys.OriginChain(p, memo)
		if err != nil || len(chain) != depth+1 || Origin(chain) != depth-1 {
			t.Fatalf("OriginChain(%d) = %d procs, origin %d, %v; want %d, %d", leaf, len(chain), Origin(chain), err, depth+1, depth-1)
		}
	}
	if len(memo) > maxMemo {
		t.Errorf("memo holds %d ancestors, want at most %d", len(memo), maxMemo)
	}
}
