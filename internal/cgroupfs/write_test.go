package cgroupfs

import "testing"

// The values are what real kernels store for writes of 10% steps (v1 on
// 6.18, v2 on 6.12): the limit rounded down to 4 KiB pages.
func TestPageAlign(t *testing.T) {
	if PageSize() != 4096 {
		t.Skipf("page size %d: the kernel values below are for 4 KiB pages", PageSize())
	}
	for _, tt := range []struct{ in, want uint64 }{
		{55364812, 55361536},     // 48M + 10%
		{590558003, 590557184},   // 512M + 10%
		{1181116006, 1181114368}, // 1G + 10%
		{50331648, 50331648},     // already whole pages
		{4095, 0},
		{Unlimited, Unlimited},
	} {
		if got := PageAlign(tt.in); got != tt.want {
			t.Errorf("PageAlign(%d) = %d, want %d", tt.in, got, tt.want)
		}
	}
}
