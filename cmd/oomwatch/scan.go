package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/oomwatch/oomwatch/internal/cgroupfs"
	"github.com/oomwatch/oomwatch/internal/procfs"
	"github.com/oomwatch/oomwatch/watchdog"
)

func newScanCmd(stdout io.Writer) *cobra.Command {
	var roots rootFlags
	var asJSON bool
	var max int
	c := &cobra.Command{
		Use:   "scan [flags]",
		Short: "show where an OOM would loop today (exit 2 when one would)",
		Long: `Show unkillable tasks (oom_score_adj -1000, oom_adj -17) grouped by
cgroup, where the protection came from, and the cgroups where an OOM would
loop today.
Exit status: 0 no risk, 2 an OOM would loop somewhere, 1 error, 64 usage.`,
		Args: noArgs,
		RunE: func(*cobra.Command, []string) error { return scan(stdout, roots, asJSON, max) },
	}
	roots.register(c)
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	c.Flags().IntVar(&max, "max-cgroups", watchdog.DefaultMaxCgroups, "bound on the number of cgroups scanned")
	return c
}

func scan(stdout io.Writer, roots rootFlags, asJSON bool, max int) error {
	h, proc, err := roots.open()
	if err != nil {
		return err
	}
	res, err := watchdog.Scan(watchdog.Inspector{CG: h, Proc: proc}, max)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return err
		}
	} else {
		printScan(stdout, res)
	}
	if res.Risks > 0 {
		return &exitError{code: exitRisk, err: errors.New("")}
	}
	return nil
}

func printScan(w io.Writer, res watchdog.ScanResult) {
	fmt.Fprintf(w, "%s: %d cgroups scanned", res.Hierarchy, res.Scanned)
	if res.Truncated {
		fmt.Fprint(w, " (stopped at --max-cgroups)")
	}
	fmt.Fprintln(w)
	if len(res.Cgroups) == 0 {
		fmt.Fprintln(w, "no unkillable tasks and no cgroup near its limit: an OOM cannot loop anywhere")
		return
	}
	for _, c := range res.Cgroups {
		fmt.Fprintln(w)
		mark := "  "
		if c.WouldLoop {
			mark = "!!"
		}
		fmt.Fprintf(w, "%s %s  limit %s  usage %s  tasks %d", mark, procfs.Safe(c.Cgroup), bytesStr(c.Limit), bytesStr(c.Usage), c.Tasks)
		if c.WouldLoop {
			fmt.Fprint(w, "  WOULD LOOP: every task is unkillable")
		}
		if c.NearLimit {
			fmt.Fprintf(w, "  NEAR LIMIT (>= %d%%)", watchdog.NearLimitPercent)
		}
		fmt.Fprintln(w)
		if len(c.Unkillable) == 0 {
			continue
		}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "   PID\tCOMM\tADJ\tRSS\tORIGIN")
		for _, t := range c.Unkillable {
			fmt.Fprintf(tw, "   %d\t%s\t%d\t%s\t%s\n", t.PID, procfs.Safe(t.Comm), t.OOMScoreAdj, bytesStr(t.RSS), originStr(t.Origin))
		}
		tw.Flush()
	}
	fmt.Fprintln(w)
	if res.Near > 0 {
		fmt.Fprintf(w, "%d cgroup(s) use %d%% or more of their memory limit.\n", res.Near, watchdog.NearLimitPercent)
	}
	if res.Risks > 0 {
		fmt.Fprintf(w, "%d cgroup(s) would loop on OOM. Fix the origin (e.g. restart it without OOMScoreAdjust=-1000) or run oomwatch.\n", res.Risks)
	} else {
		fmt.Fprintln(w, "no cgroup would loop today (every limited cgroup has a killable task)")
	}
}

func originStr(o *watchdog.Origin) string {
	if o == nil {
		return "-"
	}
	if o.Depth == 0 {
		return fmt.Sprintf("itself (parent %d %s at %d)", o.ParentPID, procfs.Safe(o.ParentComm), o.ParentAdj)
	}
	return fmt.Sprintf("%d %s (parent %d %s at %d)", o.PID, procfs.Safe(o.Comm), o.ParentPID, procfs.Safe(o.ParentComm), o.ParentAdj)
}

func bytesStr(b uint64) string {
	if b == cgroupfs.Unlimited {
		return "none"
	}
	const unit = 1024
	if b < unit {
		return fmt.Sprintf("%dB", b)
	}
	units := []string{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	v, i := float64(b)/unit, 0
	for v >= unit && i < len(units)-1 {
		v /= unit
		i++
	}
	return strings.TrimSuffix(fmt.Sprintf("%.1f", v), ".0") + units[i]
}
