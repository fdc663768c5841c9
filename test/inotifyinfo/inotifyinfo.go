// Package inotifyinfo reads which inodes a process's inotify instances
// watch, from the kernel's own list in /proc/PID/fdinfo/FD:
//
//	inotify wd:1 ino:1a2b sdev:2b mask:3c6 ignored_mask:0 fhandle-bytes:8 …
//
// Tests and benchmarks use it to check in the kernel, not by asking the
// watchdog, that a cgroup directory is watched.
package inotifyinfo

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
)

// FDs lists pid's file descriptors that are inotify instances.
func FDs(pid int) ([]int, error) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var fds []int
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if l, err := os.Readlink(dir + "/" + e.Name()); err == nil && l == "anon_inode:inotify" {
			fds = append(fds, fd)
		}
	}
	return fds, nil
}

// Inodes adds to into the inode numbers the inotify instance fd of pid
// watches.
func Inodes(pid, fd int, into map[uint64]bool) error {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%d", pid, fd))
	if err != nil {
		return err
	}
	Parse(b, into)
	return nil
}

// Parse adds the "ino:" field of every inotify line of an fdinfo file to
// into (hexadecimal in the kernel's text).
func Parse(b []byte, into map[uint64]bool) {
	for len(b) > 0 {
		var line []byte
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			line, b = b, nil
		}
		if !bytes.HasPrefix(line, []byte("inotify ")) {
			continue
		}
		i := bytes.Index(line, []byte(" ino:"))
		if i < 0 {
			continue
		}
		rest := line[i+5:]
		if j := bytes.IndexByte(rest, ' '); j >= 0 {
			rest = rest[:j]
		}
		if v, err := strconv.ParseUint(string(rest), 16, 64); err == nil {
			into[v] = true
		}
	}
}
