package cgroupfs

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestChildrenOnlyDirs(t *testing.T) {
	root := t.TempDir()
	cg := filepath.Join(root, "a")
	for _, d := range []string{"a/b", "a/c d", "a/.hidden", "a/" + strings.Repeat("x", 255)} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// 300 files: more than one getdents64 buffer of names.
	for i := 0; i < 300; i++ {
		name := filepath.Join(cg, fmt.Sprintf("memory.file%s-%d", strings.Repeat("y", 40), i))
		if err := os.WriteFile(name, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(cg, filepath.Join(cg, "link")); err != nil {
		t.Fatal(err)
	}
	h := Hierarchy{Root: root, Version: 2}
	got, err := h.Children("/a")
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	want := []string{"/a/.hidden", "/a/b", "/a/c d", "/a/" + strings.Repeat("x", 255)}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("Children = %q, want %q", got, want)
	}
	if _, err := h.Children("/nope"); err == nil || !strings.Contains(err.Error(), "gone") {
		t.Fatalf("missing dir: err = %v, want ErrGone", err)
	}
}

func TestParseDirentsMalformed(t *testing.T) {
	rec := func(name string, typ byte, reclen int) []byte {
		b := make([]byte, reclen)
		binary.NativeEndian.PutUint16(b[16:18], uint16(reclen))
		b[18] = typ
		copy(b[19:], name)
		return b
	}
	good := rec("web", 4, 24) // DT_DIR
	for name, b := range map[string][]byte{
		"short header":     good[:10],
		"reclen too big":   rec("x", 4, 24)[:20],
		"reclen too small": func() []byte { b := rec("x", 4, 24); binary.NativeEndian.PutUint16(b[16:18], 3); return b }(),
	} {
		if _, err := parseDirents(-1, append(append([]byte{}, good...), b...), "/", nil); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	got, err := parseDirents(-1, append(rec(".", 4, 24), append(rec("..", 4, 24), good...)...), "/p", nil)
	if err != nil || !slices.Equal(got, []string{"/p/web"}) {
		t.Fatalf("got %q, %v", got, err)
	}
}

// FuzzParseDirents: any getdents64 buffer gives directory names or an
// error, never a panic or a name with a slash.
func FuzzParseDirents(f *testing.F) {
	rec := func(name string, typ byte) []byte {
		n := (19 + len(name) + 1 + 7) &^ 7
		b := make([]byte, n)
		binary.NativeEndian.PutUint16(b[16:18], uint16(n))
		b[18] = typ
		copy(b[19:], name)
		return b
	}
	f.Add(append(rec(".", 4), append(rec("..", 4), append(rec("web1", 4), rec("memory.events", 8)...)...)...))
	f.Add(rec("x", 0))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		names, err := parseDirents(-1, b, "/p", nil)
		if err != nil {
			return
		}
		for _, n := range names {
			if !strings.HasPrefix(n, "/p/") || strings.Contains(n[3:], "/") || n == "/p/" {
				t.Fatalf("name %q is not one element below /p", n)
			}
		}
	})
}

// A short read ends a file only where the kernel renders it whole: larger
// than one buffer, both kinds are read to the end.
func TestReadIntoLongFile(t *testing.T) {
	f := filepath.Join(t.TempDir(), "f")
	want := strings.Repeat("123456\n", 1000) // 7,000 bytes: several buffers
	if err := os.WriteFile(f, []byte(want), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, short := range []bool{true, false} {
		b, err := readInto(f, make([]byte, 0, 1024), short, 0)
		if err != nil || string(b) != want {
			t.Errorf("shortIsEnd=%v: read %d bytes, %v; want %d", short, len(b), err, len(want))
		}
	}
}

// A cgroup.procs far larger than any inspection needs (a tenant that forked
// hundreds of thousands of tasks) is read up to MaxProcsRead, ending at a
// whole line: the first PIDs, never a torn one, and never the whole file.
func TestProcsReadIsBounded(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "big"), 0o755); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	total := 0
	for pid := 1000000; b.Len() < 3*MaxProcsRead; pid++ {
		fmt.Fprintf(&b, "%d\n", pid)
		total++
	}
	if err := os.WriteFile(filepath.Join(root, "big", "cgroup.procs"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	h := Hierarchy{Version: 2, Root: root}
	pids, err := h.Procs("/big")
	if err != nil {
		t.Fatal(err)
	}
	if want := MaxProcsRead / len("1000000\n"); len(pids) != want || pids[0] != 1000000 || pids[len(pids)-1] != 1000000+want-1 {
		t.Fatalf("%d PIDs (%d..%d) of %d, want the first %d", len(pids), pids[0], pids[len(pids)-1], total, want)
	}
}
