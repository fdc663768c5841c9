package cgroupfs

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"path"
	"sync"

	"golang.org/x/sys/unix"
)

// direntBufs holds getdents64 buffers: Children runs once per cgroup while
// arming, and a v2 cgroup directory holds about 40 files of which usually
// none is a directory.
var direntBufs = sync.Pool{New: func() any { b := make([]byte, 8192); return &b }}

// Children lists the child cgroups of cg, unsorted.
//
// It reads the directory with getdents64 and keeps only DT_DIR entries, so
// the ~40 interface files of a v2 cgroup cost no allocation: os.ReadDir
// allocated and sorted a DirEntry per file, a quarter of the CPU of arming
// 10,000 v2 cgroups (docs/BENCHMARKS.md). kernfs fills d_type; DT_UNKNOWN
// (some filesystems under a fake tree) falls back to fstatat.
//
// Most cgroups have no children, and a directory's link count says so
// without reading it: kernfs sets it to 2 + the number of subdirectories on
// every stat (kernfs_refresh_inode), as ext4 and tmpfs do. A link count of 2
// is one stat instead of open, two getdents64 and close; anything else
// (btrfs and overflowing ext4 directories report 1) is listed.
func (h Hierarchy) Children(cg string) ([]string, error) {
	dir := h.Dir(cg)
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return nil, mapGone(fmt.Errorf("list children of %s: %w", cg, err))
	}
	if st.Nlink == 2 && st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return nil, nil
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, mapGone(fmt.Errorf("list children of %s: %w", cg, err))
	}
	defer unix.Close(fd)
	bp := direntBufs.Get().(*[]byte)
	defer direntBufs.Put(bp)
	buf := *bp
	cg = Clean(cg)
	var out []string
	for {
		n, err := unix.Getdents(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, mapGone(fmt.Errorf("list children of %s: %w", cg, err))
		}
		if n <= 0 {
			return out, nil
		}
		out, err = parseDirents(fd, buf[:n], cg, out)
		if err != nil {
			return nil, fmt.Errorf("list children of %s: %w", cg, err)
		}
	}
}

// parseDirents appends cg/name for every directory entry in b (struct
// linux_dirent64: d_ino u64, d_off s64, d_reclen u16, d_type u8, d_name).
func parseDirents(dirfd int, b []byte, cg string, out []string) ([]string, error) {
	const hdr = 19 // offset of d_name
	for len(b) > 0 {
		if len(b) < hdr {
			return out, fmt.Errorf("short dirent (%d bytes)", len(b))
		}
		reclen := int(binary.NativeEndian.Uint16(b[16:18]))
		if reclen < hdr || reclen > len(b) {
			return out, fmt.Errorf("bad dirent length %d", reclen)
		}
		typ := b[18]
		name := b[hdr:reclen]
		for i, c := range name {
			if c == 0 {
				name = name[:i]
				break
			}
		}
		b = b[reclen:]
		if len(name) == 0 || (name[0] == '.' && (len(name) == 1 || (len(name) == 2 && name[1] == '.'))) {
			continue
		}
		if bytes.IndexByte(name, '/') >= 0 {
			return out, fmt.Errorf("dirent name %q has a slash", name)
		}
		switch typ {
		case unix.DT_DIR:
		case unix.DT_UNKNOWN:
			var st unix.Stat_t
			if err := unix.Fstatat(dirfd, string(name), &st, unix.AT_SYMLINK_NOFOLLOW); err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
				continue
			}
		default:
			continue
		}
		out = append(out, path.Join(cg, string(name)))
	}
	return out, nil
}
