package cgroupfs

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// addHostSeeds adds the host's own copies of a cgroup file, where it has
// them, to the fuzz corpus: the kernel's real output, whatever its version.
// Every cgroup that has the file, up to a few, is read.
func addHostSeeds(f *testing.F, name string) {
	f.Helper()
	for _, root := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified", "/sys/fs/cgroup/memory"} {
		paths, _ := filepath.Glob(filepath.Join(root, name))
		more, _ := filepath.Glob(filepath.Join(root, "*", name))
		for i, p := range append(paths, more...) {
			if i == 4 {
				break
			}
			if b, err := os.ReadFile(p); err == nil {
				f.Add(b)
			}
		}
	}
}

// parseErr checks the error contract of every parser: a *ParseError naming
// the file, never a bare error.
func parseErr(t *testing.T, err error, file string) {
	t.Helper()
	if err == nil {
		return
	}
	var pe *ParseError
	if !errors.As(err, &pe) || pe.File != file {
		t.Fatalf("error %v (%T): want a *ParseError for %s", err, err, file)
	}
}

// Captured on the dev host (6.18, cgroup2 at /sys/fs/cgroup/unified) and in
// the 6.1/6.12 VMs; 5.2+ adds frozen.
func FuzzParseCgroupEvents(f *testing.F) {
	for _, s := range []string{"populated 0\nfrozen 0\n", "populated 1\nfrozen 1\n", "populated 1\n", "frozen 1\n", "populated 1 2\n", "populated x\n"} {
		f.Add([]byte(s))
	}
	addHostSeeds(f, "cgroup.events")
	f.Fuzz(func(t *testing.T, b []byte) {
		ce, err := ParseCgroupEvents(b)
		parseErr(t, err, "cgroup.events")
		if err != nil && ce != (CgroupEvents{}) {
			t.Fatalf("error with a non-zero value: %+v", ce)
		}
		if ce.Frozen && !ce.HasFrozen {
			t.Fatalf("frozen without the frozen key: %+v", ce)
		}
	})
}

// memory.usage_in_bytes and memory.failcnt (v1), memory.current (v2).
func FuzzParseUint(f *testing.F) {
	for _, s := range []string{"3579768832\n", "0\n", "18446744073709551615\n", "18446744073709551616\n", "-1\n", " 7 \n", "1 2\n", ""} {
		f.Add([]byte(s))
	}
	addHostSeeds(f, "memory.usage_in_bytes")
	addHostSeeds(f, "memory.failcnt")
	addHostSeeds(f, "memory.current")
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := ParseUint("memory.current", b)
		parseErr(t, err, "memory.current")
		if err != nil && v != 0 {
			t.Fatalf("error with value %d", v)
		}
	})
}

// cgroup.stat as 6.18 prints it (nr_subsys_* since 6.11, nr_dying_* since
// 4.14).
func FuzzParseDescendants(f *testing.F) {
	for _, s := range []string{
		"nr_descendants 1\nnr_subsys_perf_event 2\nnr_subsys_hugetlb 1\nnr_dying_descendants 0\nnr_dying_subsys_perf_event 0\nnr_dying_subsys_hugetlb 0\n",
		"nr_descendants 0\nnr_dying_descendants 0\n",
		"nr_descendants 2147483648\n",
		"nr_dying_descendants 3\n",
	} {
		f.Add([]byte(s))
	}
	addHostSeeds(f, "cgroup.stat")
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := parseDescendants(b)
		parseErr(t, err, "cgroup.stat")
		if (err != nil) != (n < 0) {
			t.Fatalf("count %d with error %v", n, err)
		}
	})
}
