package cgroupfs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestViewWarning: what `run` says at start-up when it may have nothing to
// watch. A v2 root without +memory in cgroup.subtree_control (a VM or host
// without systemd) is named as such, with the command that enables it,
// rather than blamed on a container's view; a v2 root with memory enabled
// but no children, or a v1 root alone, is a limited view.
func TestViewWarningSaysWhyNothingIsWatched(t *testing.T) {
	v2 := func(subtree string, kids ...string) Hierarchy {
		root := t.TempDir()
		if err := os.WriteFile(filepath.Join(root, "cgroup.subtree_control"), []byte(subtree), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, k := range kids {
			if err := os.Mkdir(filepath.Join(root, k), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		return Hierarchy{Version: 2, Root: root}
	}
	for _, c := range []struct {
		name  string
		h     Hierarchy
		n     int
		event string
	}{
		{"v2 memory not enabled, root only", v2(""), 1, "memory_not_enabled"},
		{"v2 memory not enabled, children", v2("cpu pids\n", "a", "b"), 3, "memory_not_enabled"},
		{"v2 memory enabled, root only", v2("cpu memory pids\n"), 1, "limited_view"},
		{"v2 memory enabled, children", v2("memory\n", "a"), 2, ""},
		{"v2 no subtree_control readable", Hierarchy{Version: 2, Root: t.TempDir()}, 1, "limited_view"},
		{"v1 root only", Hierarchy{Version: 1, Root: t.TempDir()}, 1, "limited_view"},
		{"v1 children", Hierarchy{Version: 1, Root: t.TempDir()}, 4, ""},
	} {
		event, msg := c.h.ViewWarning(c.n)
		if event != c.event || (event == "") != (msg == "") {
			t.Errorf("%s: event %q, message %q; want event %q", c.name, event, msg, c.event)
		}
		if event == "memory_not_enabled" && !strings.Contains(msg, "echo +memory > "+filepath.Join(c.h.Root, "cgroup.subtree_control")) {
			t.Errorf("%s: the message does not say how to enable it: %q", c.name, msg)
		}
	}
}
