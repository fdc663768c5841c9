package cgroupfs_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/oomwatch/oomwatch/internal/cgroupfs"
	"github.com/oomwatch/oomwatch/test/testhost"
	"github.com/oomwatch/oomwatch/test/testtier"
)

const mib = 1 << 20

// v1Memsw makes a v1 memory cgroup with limit and memsw on the host and
// charges it charge bytes of tmpfs (which, without swap, nothing reclaims:
// the charge stays until the file is removed, with no task left behind).
func v1Memsw(t *testing.T, limit, memsw, charge uint64) (cgroupfs.Hierarchy, string) {
	t.Helper()
	root := testhost.V1Root(t)
	if _, err := os.Stat(filepath.Join(root, "memory.memsw.limit_in_bytes")); err != nil {
		testtier.Require(t, testtier.Host, "needs v1 swap accounting (memory.memsw.*): "+err.Error())
	}
	h, err := cgroupfs.Open(root, "")
	if err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("oomwatch-test-setlimits-%d-%d", os.Getpid(), time.Now().UnixNano())
	dir := filepath.Join(root, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	shm := filepath.Join("/dev/shm", name)
	t.Cleanup(func() {
		_ = os.Remove(shm)
		for i := 0; i < 50 && os.Remove(dir) != nil; i++ {
			time.Sleep(20 * time.Millisecond)
		}
	})
	for _, w := range []struct {
		file string
		v    uint64
	}{{"memory.limit_in_bytes", limit}, {"memory.memsw.limit_in_bytes", memsw}} {
		if err := os.WriteFile(filepath.Join(dir, w.file), []byte(fmt.Sprint(w.v)), 0); err != nil {
			t.Fatal(err)
		}
	}
	if charge > 0 {
		sh := fmt.Sprintf(`echo $$ > %s/cgroup.procs && head -c %d /dev/zero > %s`, dir, charge, shm)
		if out, err := exec.Command("sh", "-c", sh).CombinedOutput(); err != nil {
			t.Fatalf("charge %d bytes to %s: %v %s", charge, dir, err, out)
		}
	}
	return h, "/" + name
}

// TestSetLimitsRollsBackHostV1: when the kernel refuses the second of the
// two v1 writes, SetLimits puts the first back, so the limits read exactly
// as before (memsw first: the limit below usage is EBUSY; limit first: a
// memsw below the new limit is EINVAL).
func TestSetLimitsRollsBackHostV1(t *testing.T) {
	for _, tt := range []struct {
		name string
		to   cgroupfs.Limits
		want error
	}{
		{"memsw written, limit refused", cgroupfs.Limits{Mem: 16 * mib, Memsw: 100 * mib, HasMemsw: true}, syscall.EBUSY},
		{"limit written, memsw refused", cgroupfs.Limits{Mem: 48 * mib, Memsw: 40 * mib, HasMemsw: true}, syscall.EINVAL},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h, cg := v1Memsw(t, 64*mib, 128*mib, 40*mib)
			before := cgroupfs.Limits{Mem: 64 * mib, Memsw: 128 * mib, HasMemsw: true}
			if got, err := h.Limits(cg); err != nil || got != before {
				t.Fatalf("limits %+v, %v; want %+v", got, err, before)
			}
			err := h.SetLimits(cg, tt.to)
			if !errors.Is(err, tt.want) {
				t.Fatalf("SetLimits(%+v) = %v, want %v", tt.to, err, tt.want)
			}
			if got, err := h.Limits(cg); err != nil || got != before {
				t.Fatalf("after the refused write: limits %+v, %v; want %+v put back", got, err, before)
			}
		})
	}
}

// TestSetLimitsRaiseHostV1: a raise of both limits is written memsw first
// (the limit may never exceed memsw) and reads back as written when the
// values are whole pages; lowering them back is written limit first.
func TestSetLimitsRaiseHostV1(t *testing.T) {
	h, cg := v1Memsw(t, 48*mib, 48*mib, 0)
	orig := cgroupfs.Limits{Mem: 48 * mib, Memsw: 48 * mib, HasMemsw: true}
	up := cgroupfs.Limits{Mem: 55361536, Memsw: 55361536, HasMemsw: true}
	for _, l := range []cgroupfs.Limits{up, orig} {
		if err := h.SetLimits(cg, l); err != nil {
			t.Fatal(err)
		}
		if got, err := h.Limits(cg); err != nil || got != l {
			t.Fatalf("limits %+v, %v; want %+v", got, err, l)
		}
	}
}
