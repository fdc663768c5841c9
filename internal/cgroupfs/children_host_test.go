package cgroupfs_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/oomwatch/oomwatch/internal/cgroupfs"
	"github.com/oomwatch/oomwatch/test/testhost"
	"github.com/oomwatch/oomwatch/test/testtier"
)

// Children skips listing a directory whose link count is 2; on real
// cgroupfs (kernfs) the count must follow child cgroups as they come and go,
// or a child would be missed.
func TestChildrenLinkCountCgroupfs(t *testing.T) {
	root := testhost.V1Root(t)
	name := fmt.Sprintf("oomwatch-test-nlink-%d", os.Getpid())
	dir := filepath.Join(root, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	kids := []string{"a", "b"}
	t.Cleanup(func() {
		for _, k := range kids {
			syscall.Rmdir(filepath.Join(dir, k))
		}
		if err := syscall.Rmdir(dir); err != nil {
			t.Errorf("rmdir %s: %v", dir, err)
		}
	})
	h := cgroupfs.Hierarchy{Root: root, Version: 1}
	nlink := func() uint64 {
		var st syscall.Stat_t
		if err := syscall.Stat(dir, &st); err != nil {
			t.Fatal(err)
		}
		return st.Nlink
	}
	if n := nlink(); n != 2 {
		t.Fatalf("fresh cgroup: link count %d, want 2", n)
	}
	if got, err := h.Children("/" + name); err != nil || len(got) != 0 {
		t.Fatalf("Children of a leaf = %q, %v", got, err)
	}
	var want []string
	for i, k := range kids {
		if err := os.Mkdir(filepath.Join(dir, k), 0o755); err != nil {
			t.Fatal(err)
		}
		want = append(want, "/"+name+"/"+k)
		if n := nlink(); n != uint64(3+i) {
			t.Fatalf("after %d children: link count %d, want %d", i+1, n, 3+i)
		}
		got, err := h.Children("/" + name)
		slices.Sort(got)
		if err != nil || !slices.Equal(got, want) {
			t.Fatalf("Children = %q, %v; want %q", got, err, want)
		}
	}
	for _, k := range kids {
		if err := syscall.Rmdir(filepath.Join(dir, k)); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := h.Children("/" + name); err != nil || len(got) != 0 || nlink() != 2 {
		t.Fatalf("after rmdir: Children = %q, %v, link count %d", got, err, nlink())
	}
}

// Walk on real cgroup2: the descendant count lets it skip listing leaves,
// and a grandchild makes it list them again.
func TestWalkDescendantCountCgroup2(t *testing.T) {
	if os.Geteuid() != 0 {
		testtier.Require(t, testtier.Host, "needs root")
	}
	var root string
	for _, m := range []string{"/sys/fs/cgroup/unified", "/sys/fs/cgroup"} {
		var st unix.Statfs_t
		if unix.Statfs(m, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
			root = m
			break
		}
	}
	if root == "" {
		testtier.Require(t, testtier.Host, "no cgroup2 mount at /sys/fs/cgroup/unified or /sys/fs/cgroup")
	}
	name := fmt.Sprintf("oomwatch-test-walk-%d", os.Getpid())
	dir := filepath.Join(root, name)
	dirs := []string{"", "/a", "/b", "/c"}
	for _, d := range dirs {
		if err := os.Mkdir(dir+d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		syscall.Rmdir(dir + "/b/x")
		for i := len(dirs) - 1; i >= 0; i-- {
			if err := syscall.Rmdir(dir + dirs[i]); err != nil {
				t.Errorf("rmdir: %v", err)
			}
		}
	})
	h := cgroupfs.Hierarchy{Root: root, Version: 2}
	walk := func() []string {
		var seen []string
		if err := h.Walk("/"+name, 0, func(c string) error { seen = append(seen, c); return nil }); err != nil {
			t.Fatal(err)
		}
		slices.Sort(seen)
		return seen
	}
	p := "/" + name
	if got, want := walk(), []string{p, p + "/a", p + "/b", p + "/c"}; !slices.Equal(got, want) {
		t.Fatalf("walk = %q, want %q", got, want)
	}
	if err := os.Mkdir(dir+"/b/x", 0o755); err != nil {
		t.Fatal(err)
	}
	if got, want := walk(), []string{p, p + "/a", p + "/b", p + "/b/x", p + "/c"}; !slices.Equal(got, want) {
		t.Fatalf("walk with a grandchild = %q, want %q", got, want)
	}
}
