package cgroupfs

import (
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// fakeV2 builds a cgroup v2 tree under a temp dir: dirs maps cgroup → files.
func fakeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for p, content := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestOpenV2(t *testing.T) {
	root := fakeTree(t, map[string]string{
		"cgroup.controllers":    "cpu io memory pids\n",
		"cgroup.procs":          "1\n",
		"a/cgroup.procs":        "10\n11\n",
		"a/memory.max":          "20971520\n",
		"a/memory.current":      "20000000\n",
		"a/memory.events":       "low 0\nhigh 0\nmax 1\noom 9\noom_kill 0\n",
		"a/memory.events.local": "low 0\nhigh 0\nmax 1\noom 9\noom_kill 0\n",
		"a/b/cgroup.procs":      "12\n",
		"a/b/memory.max":        "max\n",
		"a/b/cgroup.events":     "populated 1\nfrozen 0\n",
		"a/b/cgroup.freeze":     "0\n",
		"other/cgroup.procs":    "",
	})
	h, err := Open(root, "")
	if err != nil || h.Version != 2 {
		t.Fatalf("Open: %+v, %v", h, err)
	}
	h.AnyFS = true
	var seen []string
	if err := h.Walk("/", 0, func(cg string) error { seen = append(seen, cg); return nil }); err != nil {
		t.Fatal(err)
	}
	if seen[0] != "/" {
		t.Fatalf("walk must start at the root: %v", seen)
	}
	sort.Strings(seen)
	if strings.Join(seen, " ") != "/ /a /a/b /other" {
		t.Fatalf("walk: %v", seen)
	}
	if err := h.Walk("/", 2, func(string) error { return nil }); !errors.Is(err, ErrTooMany) {
		t.Fatalf("bounded walk: %v", err)
	}
	if lim, err := h.Limit("/a"); err != nil || lim != 20971520 {
		t.Fatalf("limit: %d, %v", lim, err)
	}
	if lim, err := h.Limit("/a/b"); err != nil || lim != Unlimited {
		t.Fatalf("limit max: %d, %v", lim, err)
	}
	if ev, err := h.MemoryEvents("/a"); err != nil || ev.OOM != 9 {
		t.Fatalf("events: %+v, %v", ev, err)
	}
	pids, err := h.SubtreeProcs("/a", 0)
	if err != nil || len(pids) != 3 {
		t.Fatalf("subtree procs: %v, %v", pids, err)
	}
	if _, err := h.MemoryEvents("/gone"); !errors.Is(err, ErrGone) {
		t.Fatalf("missing cgroup: %v, want ErrGone", err)
	}
	if err := h.SetFrozen("/a/b", true); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "a/b/cgroup.freeze")); strings.TrimSpace(string(b)) != "1" {
		t.Fatalf("cgroup.freeze = %q", b)
	}
	if err := h.FreezeSupported("/a"); err == nil {
		t.Fatal("no cgroup.freeze in /a: want an error")
	}
}

// Walk trusts a v2 parent's nr_descendants: equal to its number of
// children, the children are leaves and are not listed. The fake count
// here hides a grandchild to show the shortcut is taken; a count above the
// number of children, or none, lists them.
func TestWalkDescendantCount(t *testing.T) {
	for _, tt := range []struct {
		stat string
		want string
	}{
		{"nr_descendants 2\nnr_dying_descendants 0\n", "/ /a /b"},
		{"nr_descendants 3\nnr_dying_descendants 5\n", "/ /a /a/c /b"},
		{"", "/ /a /a/c /b"},
		{"nr_dying_descendants 0\n", "/ /a /a/c /b"},
		{"nr_descendants lots\n", "/ /a /a/c /b"},
	} {
		files := map[string]string{"cgroup.controllers": "memory\n", "a/c/cgroup.procs": "", "b/cgroup.procs": ""}
		if tt.stat != "" {
			files["cgroup.stat"] = tt.stat
		}
		h := Hierarchy{Root: fakeTree(t, files), Version: 2, AnyFS: true}
		var seen []string
		if err := h.Walk("/", 0, func(cg string) error { seen = append(seen, cg); return nil }); err != nil {
			t.Fatal(err)
		}
		sort.Strings(seen)
		if got := strings.Join(seen, " "); got != tt.want {
			t.Errorf("cgroup.stat %q: walk %q, want %q", tt.stat, got, tt.want)
		}
	}
}

func TestOpenV1(t *testing.T) {
	base := fakeTree(t, map[string]string{
		"memory/memory.oom_control":          "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
		"memory/memory.limit_in_bytes":       "9223372036854771712\n",
		"memory/cgroup.procs":                "",
		"memory/lxc/web1/memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
		"freezer/cgroup.procs":               "",
		"freezer/lxc/web1/freezer.state":     "THAWED\n",
	})
	h, err := Open(base, "") // the parent of memory/ is accepted too
	if err != nil || h.Version != 1 || h.Root != filepath.Join(base, "memory") || h.Freezer != filepath.Join(base, "freezer") {
		t.Fatalf("Open: %+v, %v", h, err)
	}
	h.AnyFS = true
	if lim, _ := h.Limit("/"); lim != Unlimited {
		t.Fatalf("v1 unlimited: %d", lim)
	}
	if oc, err := h.OOMControl("/lxc/web1"); err != nil || oc.OOMKill != 3 {
		t.Fatalf("oom_control: %+v, %v", oc, err)
	}
	if err := h.SetFrozen("/lxc/web1", true); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(base, "freezer/lxc/web1/freezer.state")); strings.TrimSpace(string(b)) != "FROZEN" {
		t.Fatalf("freezer.state = %q", b)
	}
	ec, oc := h.EventControlPaths("/lxc/web1")
	if filepath.Dir(ec) != filepath.Dir(oc) {
		t.Fatalf("event control and oom control in different dirs: %s %s", ec, oc)
	}
}

func TestOpenRejects(t *testing.T) {
	if _, err := Open(t.TempDir(), ""); !errors.Is(err, ErrNotMemcg) {
		t.Fatalf("empty dir: %v", err)
	}
	root := fakeTree(t, map[string]string{"cgroup.controllers": "cpu pids\n"})
	if _, err := Open(root, ""); !errors.Is(err, ErrNotMemcg) || !strings.Contains(err.Error(), "memory") {
		t.Fatalf("v2 without memory: %v", err)
	}
}

func TestDetectFindsHybridMountsOrAsksForCgroupRoot(t *testing.T) {
	proc := fakeTree(t, map[string]string{"self/mountinfo": `31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`})
	h, err := Detect(proc)
	if err != nil || h.Version != 1 || h.Root != "/sys/fs/cgroup/memory" || h.Freezer != "/sys/fs/cgroup/freezer" || h.Layout != "hybrid" {
		t.Fatalf("hybrid: %+v, %v", h, err)
	}
	proc = fakeTree(t, map[string]string{"self/mountinfo": "23 1 0:21 / /proc rw - proc proc rw\n"})
	if _, err := Detect(proc); !errors.Is(err, ErrNotMemcg) || !strings.Contains(err.Error(), "--cgroup-root") {
		t.Fatalf("no cgroups: %v", err)
	}
}

func TestWriteGuards(t *testing.T) {
	root := fakeTree(t, map[string]string{"a/cgroup.freeze": "0", "a/notes": ""})
	if err := write(root, "/a", "notes", "x"); err == nil || !strings.Contains(err.Error(), "allowlist") {
		t.Fatalf("non-allowlisted file: %v", err)
	}
	if err := write(root, "/../../etc", "cgroup.freeze", "1"); err == nil {
		t.Fatal("escape: want an error") // Clean maps it to /etc under root, which does not exist
	}
	if err := os.Symlink(filepath.Join(root, "a/notes"), filepath.Join(root, "a/memory.max")); err != nil {
		t.Fatal(err)
	}
	if err := write(root, "/a", "memory.max", "1"); err == nil {
		t.Fatal("symlink: want an error")
	}
	// A real tmpfs is not cgroupfs: the magic check refuses it.
	h := Hierarchy{Version: 2, Root: root}
	if err := h.SetFrozen("/a", true); err == nil || !strings.Contains(err.Error(), "not a cgroup filesystem") {
		t.Fatalf("tmpfs write: %v", err)
	}
	if err := write(root, "/a", "cgroup.freeze", "1"); err != nil {
		t.Fatal(err)
	}
}

func TestInSubtree(t *testing.T) {
	for _, tt := range []struct {
		cg, root string
		want     bool
	}{{"/a/b", "/a", true}, {"/a", "/a", true}, {"/ab", "/a", false}, {"/x", "/", true}, {"/a", "/a/b", false}} {
		if got := InSubtree(tt.cg, tt.root); got != tt.want {
			t.Errorf("InSubtree(%q,%q) = %v", tt.cg, tt.root, got)
		}
	}
	if Clean("../../x") != "/x" || Clean("") != "/" {
		t.Fatal("Clean must never escape the root")
	}
}
