package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/oomwatch/oomwatch/internal/config"
	"github.com/oomwatch/oomwatch/internal/history"
	"github.com/oomwatch/oomwatch/internal/procfs"
)

func newIncidentsCmd(stdout io.Writer) *cobra.Command {
	var dir string
	var asJSON bool
	var limit int
	c := &cobra.Command{
		Use:   "incidents [flags]",
		Short: "the incident history (works without the daemon)",
		Long: `Show past and open incidents from the journal in the state directory,
newest first: verdict, cgroup, OOMs, the process that leaked the protection,
the actions taken and how they ended. Works without the daemon running.
Exit status: 0 shown (also when there are none), 1 the journal cannot be
read, 64 usage.`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if limit < 0 {
				return usageErr("--limit %d: want 0 or more", limit)
			}
			return incidents(stdout, c.ErrOrStderr(), dir, asJSON, limit)
		},
	}
	c.Flags().StringVar(&dir, "state-dir", config.DefaultStateDir, "the daemon's state directory")
	c.Flags().BoolVar(&asJSON, "json", false, "one JSON array, with candidates and kernel log lines")
	c.Flags().IntVar(&limit, "limit", 20, "show at most N incidents (0: all)")
	dirFlags(c, "state-dir")
	return c
}

// incidents shows the incident journal, newest first. It reads the files
// directly, so it works with the daemon stopped.
func incidents(stdout, stderr io.Writer, dir string, asJSON bool, limit int) error {
	incs, skipped, err := history.ReadCount(dir)
	if err != nil {
		return &exitError{code: 1, err: err}
	}
	total := len(incs)
	if limit > 0 && len(incs) > limit {
		incs = incs[:limit]
	}
	if asJSON {
		if incs == nil {
			incs = []history.Incident{}
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(incs)
	}
	if skipped > 0 {
		fmt.Fprintf(stderr, "oomwatch incidents: skipped %d unreadable journal line(s) (e.g. a write cut short by a crash)\n", skipped)
	}
	if total == 0 {
		fmt.Fprintf(stdout, "no incidents recorded in %s\n", dir)
		return nil
	}
	printIncidents(stdout, incs, time.Now())
	if total > len(incs) {
		fmt.Fprintf(stdout, "(%d of %d incidents; --limit 0 shows all)\n", len(incs), total)
	}
	return nil
}

func printIncidents(w io.Writer, incs []history.Incident, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STARTED\tVERDICT\tCGROUP\tOOMS\tORIGIN\tACTIONS → OUTCOME\tSTATE")
	for _, inc := range incs {
		started := "?"
		if !inc.Started.IsZero() {
			started = inc.Started.Local().Format(time.DateTime)
		}
		verdict := inc.Verdict
		if verdict == "" {
			verdict = "?"
		}
		origin := "-"
		if inc.Origin != nil {
			origin = target(inc.Origin.PID, inc.Origin.Comm)
			if inc.Origin.ParentComm != "" {
				origin += " ← " + procfs.Safe(inc.Origin.ParentComm)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%s\t%s\t%s\n", started, verdict, cgLabel(inc.Cgroup, inc.Container),
			inc.OOMEvents, inc.OOMKills, origin, actionsSummary(inc), state(inc, now))
	}
	tw.Flush()
	fmt.Fprintln(w, "OOMS: OOM events/kills in the detection window. --json adds the tasks and the kernel log lines.")
}

func actionsSummary(inc history.Incident) string {
	if len(inc.Actions) == 0 {
		if inc.Verdict != "loop" && inc.Verdict != "" {
			return "(report only)"
		}
		return "-"
	}
	var parts []string
	for _, a := range inc.Actions {
		s := a.Action
		if a.Comm != "" {
			s += " " + procfs.Safe(a.Comm)
		}
		switch {
		case a.Error != "":
			s += " ✗"
		case !a.Done:
			s += " (dry)"
		case a.Verified:
			s += " ✓"
		}
		parts = append(parts, s)
	}
	out := strings.Join(parts, ", ")
	if inc.Outcome != "" {
		out += " → " + inc.Outcome
	}
	return out
}

func state(inc history.Incident, now time.Time) string {
	switch inc.State {
	case history.StateResolved:
		s := "resolved"
		if !inc.Started.IsZero() && !inc.ResolvedAt.IsZero() {
			s += " after " + inc.ResolvedAt.Sub(inc.Started).Round(time.Second).String()
		}
		return s
	case history.StateOpen:
		return "OPEN " + ago(now, inc.Started)
	case history.StateAbandoned:
		return "unknown (daemon restarted)"
	}
	return inc.State
}
