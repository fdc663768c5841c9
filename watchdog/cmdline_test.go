package watchdog

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"github.com/oomwatch/oomwatch/internal/cgroupfs"
	"github.com/oomwatch/oomwatch/internal/procfs"
)

// TestInspectorSharesCmdlines: tasks forked from one process show one
// cmdline; the candidates keep it once, cut at procfs.MaxCmdline, and a
// task with another cmdline keeps its own.
func TestInspectorSharesCmdlines(t *testing.T) {
	cgRoot, procRoot := t.TempDir(), t.TempDir()
	writeV2Root(t, cgRoot)
	long := "php-fpm: pool www\x00" + strings.Repeat("x", 10000) + "\x00"
	for pid := 100; pid < 104; pid++ {
		writeProc(t, procRoot, pid, 1, "php-fpm", 0, 1000+pid)
		cmd := long
		if pid == 103 {
			cmd = "php-fpm: master\x00" + strings.Repeat("y", 10000) + "\x00"
		}
		must(t, os.WriteFile(filepath.Join(procRoot, strconv.Itoa(pid), "cmdline"), []byte(cmd), 0o644))
	}
	writeCgroup(t, cgRoot, "web", "max", 100, 101, 102, 103)
	h, err := cgroupfs.Open(cgRoot, "")
	must(t, err)
	cands, err := Inspector{CG: h, Proc: procfs.New(procRoot)}.Candidates("/web")
	if err != nil || len(cands) != 4 {
		t.Fatalf("Candidates = %d, %v; want 4", len(cands), err)
	}
	data := map[int]*byte{}
	for _, c := range cands {
		joined := strings.Join(c.Cmdline, " ")
		if !c.CmdlineTruncated || len(joined) > procfs.MaxCmdline || !strings.HasSuffix(joined, procfs.CmdlineCut) {
			t.Errorf("pid %d: cmdline of %d bytes, truncated %v", c.PID, len(joined), c.CmdlineTruncated)
		}
		data[c.PID] = unsafe.StringData(c.Cmdline[1])
	}
	if data[100] != data[101] || data[100] != data[102] {
		t.Error("tasks with one cmdline keep a copy each")
	}
	if data[103] == data[100] {
		t.Error("a task with another cmdline got the shared one")
	}
}
