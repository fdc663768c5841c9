package vmtest

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"
)

// TestVMStormMemory boots 6.12 (cgroup v2) with 4 GiB and runs the guest's
// TestStormMemoryBound: the real daemon at its defaults on 10,000 cgroups
// while 50 loops start at once and 1,000 cgroups per second come and go. It
// fails if oomwatch's peak resident memory exceeds the bound, a loop is left
// running, or the churn leaks descriptors. It is a test, not a benchmark:
// the numbers it logs are for the record, the assertions are on memory and
// completeness, not on time.
func TestVMStormMemory(t *testing.T) {
	out := scaleVM(t, Combo{"6.12", V2}, "^TestStormMemoryBound$", map[string]string{"OOMWATCH_VM_STORM_MEM": "1"}, 4096, 12*time.Minute)
	if len(out["stormmem"]) == 0 {
		t.Fatal("the guest reported no result")
	}
	for _, s := range out["stormmem"] {
		var r map[string]any
		if err := json.Unmarshal([]byte(s), &r); err != nil {
			t.Fatalf("guest result %q: %v", s, err)
		}
		t.Logf("storm+churn on %v: %v cgroups armed in %.1fs; %v/%v loops broken, last after %.1fs; churn %v created at %.0f/s; "+
			"RSS ready %.1f MiB, peak %.1f MiB, VmHWM %.1f MiB, end %.1f MiB; fds %v → %v",
			r["combo"], r["cgroups"], r["ready_s"], r["broken"], r["loops"], r["last_broken_s"], r["churn_created"], r["churn_rate"],
			r["rss_ready_mib"], r["rss_peak_mib"], r["hwm_mib"], r["rss_end_mib"], r["fds_before"], r["fds_after"])
		fmt.Printf("OOMWATCH storm+churn memory: %s\n", s)
	}
}
