package inotifyinfo

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// Seeded with the kernel's own fdinfo of an inotify instance watching two
// directories of this host.
func FuzzParse(f *testing.F) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC)
	if err != nil {
		f.Fatal(err)
	}
	for _, d := range []string{f.TempDir(), f.TempDir()} {
		if _, err := unix.InotifyAddWatch(fd, d, unix.IN_CREATE|unix.IN_DELETE|unix.IN_MODIFY); err != nil {
			f.Fatal(err)
		}
	}
	real, err := os.ReadFile(fmt.Sprintf("/proc/self/fdinfo/%d", fd))
	unix.Close(fd)
	if err != nil {
		f.Fatal(err)
	}
	if !bytes.Contains(real, []byte("inotify wd:")) {
		f.Fatalf("fdinfo of an inotify fd without its watches:\n%s", real)
	}
	f.Add(real)
	f.Add([]byte("inotify wd:1 ino:FFFFFFFFFFFFFFFF sdev:2b\ninotify wd:2 ino:10000000000000000\ninotify ino:\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		got := map[uint64]bool{}
		Parse(b, got)
		lines := bytes.Count(b, []byte("inotify "))
		if len(got) > lines {
			t.Fatalf("%d inodes from %d inotify lines", len(got), lines)
		}
		lower := bytes.ToLower(b)
		for ino := range got {
			if !bytes.Contains(lower, []byte(strconv.FormatUint(ino, 16))) {
				t.Fatalf("inode %x is not in the input", ino)
			}
		}
	})
}
