package watchdog

import "testing"

func TestForcedCharge(t *testing.T) {
	const M = 1 << 20
	tests := []struct {
		name   string
		s      ChargeSample
		forced bool
		over   uint64
	}{
		{"5.10: kill-less OOMs, usage over", ChargeSample{KilllessOOMs: 40, Usage: 20*M + 8192, Limit: 20 * M}, true, 8192},
		{"at the limit: a loop, not forced", ChargeSample{KilllessOOMs: 40, Usage: 20 * M, Limit: 20 * M}, false, 0},
		{"kills: the kernel coped", ChargeSample{KilllessOOMs: 40, Kills: 1, Usage: 21 * M, Limit: 20 * M}, false, 0},
		{"no OOMs", ChargeSample{Usage: 21 * M, Limit: 20 * M}, false, 0},
		{"unlimited", ChargeSample{KilllessOOMs: 3, Usage: 21 * M, Limit: ^uint64(0)}, false, 0},
		{"no limit read", ChargeSample{KilllessOOMs: 3, Usage: 21 * M}, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, o := ForcedCharge(tt.s)
			if f != tt.forced || o != tt.over {
				t.Errorf("ForcedCharge(%+v) = %v, %d; want %v, %d", tt.s, f, o, tt.forced, tt.over)
			}
		})
	}
}

func TestKernelForcesCharge(t *testing.T) {
	for rel, want := range map[string]bool{
		"4.14.0": false, "4.19.0-26-amd64": true, "5.4.0-150-generic": true, "5.10.0-8-amd64": true,
		"5.10.209-1": false, "5.15.0-91-generic": true, "5.15.3": false, "5.16.0": false,
		"6.1.0-56-cloud-amd64": false, "6.12.117+deb12-cloud-amd64": false, "garbage": false,
	} {
		if got := KernelForcesCharge(rel); got != want {
			t.Errorf("KernelForcesCharge(%q) = %v, want %v", rel, got, want)
		}
	}
}
