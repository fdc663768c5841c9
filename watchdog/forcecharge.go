package watchdog

import "fmt"

// ChargeSample is what the counters showed for one cgroup over a detection
// window.
type ChargeSample struct {
	KilllessOOMs uint64 // OOM events in the window with no kill
	Kills        uint64 // OOM kills in the window
	Usage        uint64 // bytes charged now (v2 memory.current, v1 memory.usage_in_bytes)
	Limit        uint64 // bytes; ^uint64(0) (cgroupfs.Unlimited) or 0 when none
}

// ForcedCharge reports whether a cgroup shows the 4.19–5.15 "forced charge"
// (mm/memcontrol.c before 5.16): the kernel found nothing to kill (29ef680ae7c2: out of
// memory → OOM_FAILED → goto force) and charged the page over the limit
// instead of looping, so usage sits above the limit after kill-less OOMs.
// Over is by how many bytes. It is pure.
//
// On 5.16+ a charge is never forced over the limit for a user fault, so the
// same counters mean an OOM loop there. One false positive to know: an
// operator lowering the limit below usage also leaves usage above it for a
// while (the kernel reclaims, then OOMs, toward the new limit).
func ForcedCharge(s ChargeSample) (forced bool, over uint64) {
	if s.KilllessOOMs == 0 || s.Kills != 0 || s.Limit == 0 || s.Limit == ^uint64(0) {
		return false, 0
	}
	if s.Usage <= s.Limit {
		return false, 0
	}
	return true, s.Usage - s.Limit
}

// KernelForcesCharge reports whether a kernel release (uname -r) belongs to
// the 4.19–5.15 era that forces kill-less charges over the limit (29ef680ae7c2,
// removed by a4ebf1b6ca1e in 5.16 and backported to 5.10.80+ and 5.15.3+
// stable). Only on such kernels can usage above the limit mean a forced
// charge; on 5.16+ a brief overshoot (__GFP_NOFAIL) must not hide a loop.
func KernelForcesCharge(release string) bool {
	var major, minor, patch int
	n, _ := fmt.Sscanf(release, "%d.%d.%d", &major, &minor, &patch)
	if n < 2 {
		return false
	}
	switch {
	case major == 4 && minor >= 19:
		return true
	case major == 5 && minor < 16:
		if (minor == 10 && n == 3 && patch >= 80) || (minor == 15 && n == 3 && patch >= 3) {
			return false // the stable backport of a4ebf1b6ca1e
		}
		return true
	}
	return false
}
