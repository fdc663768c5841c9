// Package testtier gates tests that need more than a Go toolchain: root on a
// host kernel with cgroup v1 memory, or qemu for VM kernels.
//
// A test calls Require(t, tier, why) when its prerequisite is missing. Outside
// CI this skips the test. When OOMWATCH_REQUIRE_TIERS names the tier (CI sets
// "all"), a missing prerequisite fails the test instead: no tier may skip
// silently in CI.
package testtier

import (
	"os"
	"strings"
	"testing"
)

// Tier names.
const (
	Host = "host" // root on the host kernel, cgroup v1 memory hierarchy mounted
	VM   = "vm"   // qemu-system-x86_64, Debian cloud kernels, busybox-static
)

// Required reports whether the environment demands that tier run.
func Required(tier string) bool {
	for _, f := range strings.FieldsFunc(os.Getenv("OOMWATCH_REQUIRE_TIERS"), func(r rune) bool { return r == ',' || r == ' ' }) {
		if f == tier || f == "all" {
			return true
		}
	}
	return false
}

// Require skips (or, when the tier is required, fails) t because the tier's
// prerequisite is missing; why says what is missing and how to get it.
func Require(t testing.TB, tier, why string) {
	t.Helper()
	if Required(tier) {
		t.Fatalf("tier %q is required (OOMWATCH_REQUIRE_TIERS) but cannot run: %s", tier, why)
	}
	t.Skipf("tier %q not available: %s (set OOMWATCH_REQUIRE_TIERS=%s to make this a failure)", tier, why, tier)
}
