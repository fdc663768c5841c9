package inotifyinfo

import (
	"os"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseCollectsTheHexInodeOfEveryWatchLine(t *testing.T) {
	in := []byte("pos:\t0\nflags:\t02004000\nmnt_id:\t15\nino:\t1057\n" +
		"inotify wd:2 ino:1a2b sdev:2b mask:3c6 ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:2b1a000000000000\n" +
		"inotify wd:1 ino:ff sdev:2b mask:3c6 ignored_mask:0\n" +
		"inotify wd:3 ino:zz sdev:2b\n" +
		"inotify wd:4 ino:10")
	got := map[uint64]bool{}
	Parse(in, got)
	if len(got) != 3 || !got[0x1a2b] || !got[0xff] || !got[0x10] {
		t.Fatalf("Parse = %v, want 1a2b, ff, 10 (and not the fd's own ino: line)", got)
	}
}

// Our own inotify instance, watching a directory: FDs finds it and Inodes
// lists the directory's inode.
func TestOwnInstance(t *testing.T) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	dir := t.TempDir()
	if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_CREATE); err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	fds, err := FDs(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, f := range fds {
		found = found || f == fd
	}
	if !found {
		t.Fatalf("FDs = %v, want %d among them", fds, fd)
	}
	inos := map[uint64]bool{}
	if err := Inodes(os.Getpid(), fd, inos); err != nil || !inos[st.Ino] || len(inos) != 1 {
		t.Fatalf("Inodes = %v, %v; want only %x", inos, err, st.Ino)
	}
}
