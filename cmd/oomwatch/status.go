package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/oomwatch/oomwatch/internal/cgnames"
	"github.com/oomwatch/oomwatch/internal/config"
	"github.com/oomwatch/oomwatch/internal/procfs"
	"github.com/oomwatch/oomwatch/internal/statusd"
	"github.com/oomwatch/oomwatch/watchdog"
)

func newStatusCmd(stdout io.Writer) *cobra.Command {
	var sock string
	var asJSON bool
	req := statusd.Request{Cmd: "status"}
	c := &cobra.Command{
		Use:   "status [flags]",
		Short: "what the running daemon sees and did",
		Long: `Ask the running daemon what it watches, its open incidents, recent actions
and alert queues (over its root-only unix socket). The watched cgroups are
summed up first, then listed: open incidents first, then cgroups where the
next OOM would loop, then the rest by path, with limit, usage, OOM counters,
container or unit and state; --cgroups and --at-risk narrow the list,
--rows bounds it.
Exit status: 0 the daemon answered, 1 no daemon answers, 64 usage.`,
		Args: noArgs,
		RunE: func(*cobra.Command, []string) error {
			if req.Rows < 0 {
				return usageErr("--rows %d: want 0 (all, up to %d) or more", req.Rows, statusd.MaxRows)
			}
			if req.Rows == 0 {
				req.Rows = statusd.MaxRows
			}
			if req.Cgroups != "" {
				if _, err := config.Matcher(req.Cgroups); err != nil {
					return usageErr("--cgroups %q: %v", req.Cgroups, err)
				}
			}
			return status(stdout, sock, req, asJSON)
		},
	}
	c.Flags().StringVar(&sock, "socket", statusd.DefaultSocket, "the daemon's status socket")
	c.Flags().BoolVar(&asJSON, "json", false, "print the daemon's JSON document")
	c.Flags().StringVar(&req.Cgroups, "cgroups", "", "list only cgroups whose path matches this glob (* within a path segment, ** across, as in the config)")
	c.Flags().BoolVar(&req.AtRisk, "at-risk", false, "list only cgroups with an open incident or where the next OOM would loop")
	c.Flags().IntVar(&req.Rows, "rows", statusd.DefaultRows, "list at most N cgroups (0: all)")
	fileFlags(c, "socket")
	return c
}

// status asks the running daemon what it sees.
func status(stdout io.Writer, sock string, req statusd.Request, asJSON bool) error {
	st, err := statusd.QueryWith(sock, req, statusd.DefaultTimeout)
	if err != nil {
		if errors.Is(err, statusd.ErrNotRunning) {
			err = fmt.Errorf("%w (start it with oomwatch run, or pass --socket)", err)
		}
		return &exitError{code: 1, err: err}
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	printStatus(stdout, st, time.Now())
	return nil
}

// printCgroups is the summary of the watched cgroups and the rows the
// daemon selected.
func printCgroups(w io.Writer, st statusd.Status, now time.Time) {
	sum := st.CgroupSummary
	risk := "not checked yet"
	if !sum.RiskSwept.IsZero() {
		risk = "checked " + ago(now, sum.RiskSwept) + " ago"
	}
	fmt.Fprintf(w, "\ncgroups: %d watched, %d with an open incident, %d where the next OOM would loop (%s)", sum.Watched, sum.Open, sum.AtRisk, risk)
	if sum.NoMemory > 0 {
		fmt.Fprintf(w, ", %d without the memory controller", sum.NoMemory)
	}
	fmt.Fprintln(w)
	if len(st.Cgroups) == 0 {
		if sum.Matched == 0 && sum.Watched > 0 {
			fmt.Fprintln(w, "  none matches")
		}
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  CGROUP\tLIMIT\tUSAGE\tOOMS\tSTATE")
	for _, c := range st.Cgroups {
		name := cgnames.Label(c.Container, c.ContainerName)
		if name == "" {
			name = c.Unit
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%d/%d\t%s\n", cgLabel(c.Cgroup, name), bytesStr(c.Limit), bytesStr(c.Usage), c.OOMs, c.Kills, cgState(c, now))
	}
	tw.Flush()
	if sum.Shown < sum.Matched {
		fmt.Fprintf(w, "  (%d of %d; --rows 0 lists all, --cgroups GLOB or --at-risk narrows)\n", sum.Shown, sum.Matched)
	}
}

// cgState is a listed cgroup's state column.
func cgState(c watchdog.CgroupStatus, now time.Time) string {
	var parts []string
	if c.Incident != "" {
		parts = append(parts, fmt.Sprintf("%s %s (%s)", strings.ToUpper(string(c.Verdict)), ago(now, c.Since), c.Incident))
	}
	if c.WouldLoop {
		parts = append(parts, "WOULD LOOP")
	}
	if c.Frozen {
		parts = append(parts, "frozen")
	}
	if c.Raised {
		parts = append(parts, "limit raised")
	}
	if c.NoMemory {
		parts = append(parts, "memory controller off")
	}
	if len(parts) == 0 {
		return "ok"
	}
	return strings.Join(parts, ", ")
}

func printStatus(w io.Writer, st statusd.Status, now time.Time) {
	fmt.Fprintf(w, "oomwatch %s, pid %d, up %s (since %s)\n", st.Version, st.PID, ago(now, st.Started), st.Started.Local().Format(time.DateTime))
	mode := "acting"
	if st.DryRun {
		mode = "dry-run: detect and report, change nothing"
	}
	if len(st.Ladder) > 0 {
		mode += ", ladder " + strings.Join(st.Ladder, " → ")
	}
	fmt.Fprintf(w, "mode:       %s\n", mode)
	fmt.Fprintf(w, "hierarchy:  %s\n", st.Hierarchy)
	roots := "memory " + st.Roots.Memory
	if st.Roots.Freezer != "" {
		roots += ", freezer " + st.Roots.Freezer
	}
	if st.Roots.Proc != "" {
		roots += ", proc " + st.Roots.Proc
	}
	fmt.Fprintf(w, "roots:      %s\n", roots)
	last := "no OOM event yet"
	if !st.LastEvent.IsZero() {
		last = "last event " + ago(now, st.LastEvent) + " ago"
	}
	fmt.Fprintf(w, "watching:   %d memory cgroups; %d OOM events, %d kills, %d incidents seen; %s\n", st.Watched, st.OOMs, st.Kills, st.Incidents, last)
	if st.KernelLog != "" {
		fmt.Fprintf(w, "kernel log: %s\n", st.KernelLog)
	}
	if st.Journal != "" {
		fmt.Fprintf(w, "journal:    %s\n", st.Journal)
	}

	printCgroups(w, st, now)

	fmt.Fprintf(w, "\nopen incidents: %d\n", len(st.OpenIncidents))
	if len(st.OpenIncidents) > 0 {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  SINCE\tVERDICT\tCGROUP\tID")
		for _, o := range st.OpenIncidents {
			fmt.Fprintf(tw, "  %s ago\t%s\t%s\t%s\n", ago(now, o.Since), o.Verdict, cgLabel(o.Cgroup, cgnames.Label(o.Container, o.ContainerName)), o.ID)
		}
		tw.Flush()
	}

	fmt.Fprintf(w, "\nrecent actions: %d\n", len(st.RecentActions))
	if len(st.RecentActions) > 0 {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  TIME\tACTION\tTARGET\tRESULT\tCGROUP")
		for _, a := range st.RecentActions {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", a.Time.Local().Format(time.TimeOnly), a.Name, target(a.PID, a.Comm), result(a.Done, a.Verified, a.Error), cgLabel(a.Cgroup, cgnames.Label(a.Container, a.ContainerName)))
		}
		tw.Flush()
	}

	if len(st.Alerts) > 0 {
		fmt.Fprintf(w, "\nalert sinks: %d\n", len(st.Alerts))
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  SINK\tKIND\tQUEUED\tSENT\tFAILED\tDROPPED")
		for _, s := range st.Alerts {
			fmt.Fprintf(tw, "  %s\t%s\t%d\t%d\t%d\t%d\n", s.Name, s.Kind, s.Queued, s.Sent, s.Failed, s.Dropped)
		}
		tw.Flush()
	} else {
		fmt.Fprintln(w, "\nalert sinks: none configured")
	}
}

// cgLabel is a cgroup path, with the container name when there is one;
// both come from names containers choose, so they are escaped.
func cgLabel(cg, container string) string {
	if container != "" {
		return procfs.Safe(cg) + " (" + procfs.Safe(container) + ")"
	}
	return procfs.Safe(cg)
}

func target(pid int, comm string) string {
	switch {
	case pid == 0 && comm == "":
		return "-"
	case comm == "":
		return fmt.Sprint(pid)
	}
	return fmt.Sprintf("%d (%s)", pid, procfs.Safe(comm))
}

func result(done, verified bool, err string) string {
	switch {
	case err != "":
		return "failed: " + procfs.Safe(err)
	case !done:
		return "dry-run"
	case verified:
		return "verified"
	}
	return "done, not verified"
}

// ago is a short duration: 45s, 12m, 3h5m, 2d4h.
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "?"
	}
	d := now.Sub(t)
	if d < 0 {
		d = 0
	}
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd%dh", int(d.Hours())/24, int(d.Hours())%24)
}
