package cgroupfs

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Detection: which hierarchy is mounted where (mountinfo), and checks that a
// directory is a cgroup filesystem.

// Detect finds the memory hierarchy from mountinfo (procRoot/self/mountinfo).
// A v1 mount carrying the memory controller wins (legacy and hybrid hosts);
// otherwise a cgroup2 mount whose root lists "memory" in cgroup.controllers.
func Detect(procRoot string) (Hierarchy, error) {
	mi := filepath.Join(procRoot, "self", "mountinfo")
	b, err := os.ReadFile(mi)
	if err != nil {
		return Hierarchy{}, fmt.Errorf("detect cgroup hierarchy: %w", err)
	}
	mounts, err := parseMountinfo(b)
	if err != nil {
		return Hierarchy{}, fmt.Errorf("detect cgroup hierarchy: %s: %w", mi, err)
	}
	var v1mem, v1freezer, v2 string
	for _, m := range mounts {
		switch m.fstype {
		case "cgroup":
			for _, o := range strings.Split(m.super, ",") {
				if o == "memory" && v1mem == "" {
					v1mem = m.point
				}
				if o == "freezer" && v1freezer == "" {
					v1freezer = m.point
				}
			}
		case "cgroup2":
			if v2 == "" && hasController(m.point, "memory") {
				v2 = m.point
			}
		}
	}
	switch {
	case v1mem != "":
		layout := "legacy"
		for _, m := range mounts {
			if m.fstype == "cgroup2" {
				layout = "hybrid"
			}
		}
		return Hierarchy{Version: 1, Root: v1mem, Freezer: v1freezer, Layout: layout}, nil
	case v2 != "":
		return Hierarchy{Version: 2, Root: v2, Layout: "unified"}, nil
	}
	return Hierarchy{}, fmt.Errorf("detect cgroup hierarchy: no cgroup v1 memory mount and no cgroup2 mount with the memory controller in %s: %w (mount one, or pass --cgroup-root)", mi, ErrNotMemcg)
}

// Open takes an explicit root (--cgroup-root) and tells v1 from v2 by its
// files. freezer may be "" (v1: then a "freezer" directory next to root is
// used when it exists).
func Open(root, freezer string) (Hierarchy, error) {
	root = filepath.Clean(root)
	switch {
	case exists(filepath.Join(root, fileOOMControl)) || exists(filepath.Join(root, fileLimitInBytes)):
		if freezer == "" {
			if f := filepath.Join(filepath.Dir(root), "freezer"); exists(filepath.Join(f, "cgroup.procs")) {
				freezer = f
			}
		}
		return Hierarchy{Version: 1, Root: root, Freezer: freezer, Layout: "explicit"}, nil
	case exists(filepath.Join(root, "cgroup.controllers")):
		if !hasController(root, "memory") {
			return Hierarchy{}, fmt.Errorf("%s is cgroup v2 but \"memory\" is not in its cgroup.controllers: %w", root, ErrNotMemcg)
		}
		return Hierarchy{Version: 2, Root: root, Layout: "explicit"}, nil
	case exists(filepath.Join(root, "memory", fileOOMControl)):
		return Open(filepath.Join(root, "memory"), freezer)
	}
	return Hierarchy{}, fmt.Errorf("%s has neither memory.oom_control (v1) nor cgroup.controllers (v2): %w", root, ErrNotMemcg)
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

func hasController(dir, ctrl string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
	if err != nil {
		return false
	}
	return listsController(b, ctrl)
}

// listsController reports whether a controller list (cgroup.controllers,
// cgroup.subtree_control: names separated by spaces) names ctrl.
func listsController(b []byte, ctrl string) bool {
	for _, c := range strings.Fields(string(b)) {
		if c == ctrl {
			return true
		}
	}
	return false
}

type mount struct{ point, fstype, super string }

// parseMountinfo reads the fields oomwatch needs from /proc/self/mountinfo:
// "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue".
func parseMountinfo(b []byte) ([]mount, error) {
	var ms []mount
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	line := 0
	for sc.Scan() {
		line++
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		sep := -1
		for i, x := range f {
			if x == "-" {
				sep = i
				break
			}
		}
		if sep < 5 || len(f) < sep+4 {
			return nil, &ParseError{File: "mountinfo", Line: line, Err: errors.New("malformed line")}
		}
		ms = append(ms, mount{point: unescapeMount(f[4]), fstype: f[sep+1], super: f[sep+3]})
	}
	return ms, sc.Err()
}

// unescapeMount undoes the kernel's octal escaping of space, tab, newline and backslash.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			var v byte
			ok := true
			for _, c := range s[i+1 : i+4] {
				if c < '0' || c > '7' {
					ok = false
					break
				}
				v = v*8 + byte(c-'0')
			}
			if ok {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// fsMagicOK reports whether dir is on cgroupfs (v1 or v2).
func fsMagicOK(dir string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return mapGone(fmt.Errorf("statfs %s: %w", dir, err))
	}
	if st.Type != unix.CGROUP_SUPER_MAGIC && st.Type != unix.CGROUP2_SUPER_MAGIC {
		return fmt.Errorf("refusing to write under %s: not a cgroup filesystem (magic %#x)", dir, st.Type)
	}
	return nil
}

// MemoryEnabledBelow reports whether cg's children get the memory controller
// (v2: "memory" in its cgroup.subtree_control). On v1 every cgroup of the
// memory hierarchy has it.
func (h Hierarchy) MemoryEnabledBelow(cg string) (bool, error) {
	if h.Version == 1 {
		return true, nil
	}
	return readAs(h, cg, fileSubtreeControl, func(b []byte) (bool, error) { return listsController(b, "memory"), nil })
}
