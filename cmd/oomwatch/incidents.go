package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/oomwatch/oomwatch/internal/cgnames"
	"github.com/oomwatch/oomwatch/internal/config"
	"github.com/oomwatch/oomwatch/internal/history"
	"github.com/oomwatch/oomwatch/internal/procfs"
	"github.com/oomwatch/oomwatch/internal/statusd"
	"github.com/oomwatch/oomwatch/policy"
)

func newIncidentsCmd(stdout io.Writer) *cobra.Command {
	var loc stateDirSource
	var asJSON bool
	var limit int
	c := &cobra.Command{
		Use:   "incidents [flags]",
		Short: "the incident history (works without the daemon)",
		Long: `Show past and open incidents from the journal in the state directory,
newest first: verdict, cgroup, OOMs, the process that leaked the protection,
the actions taken and how they ended. Works without the daemon running.

The state directory is --state-dir when given; else the running daemon's
(asked over --socket); else state_dir in --config; else /var/lib/oomwatch.
The output says which one it read.
Exit status: 0 shown (also when there are none), 1 the journal cannot be
read, 64 usage.`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if limit < 0 {
				return usageErr("--limit %d: want 0 or more", limit)
			}
			loc.explicit = c.Flags().Changed("state-dir")
			dir, from := loc.locate(c.ErrOrStderr())
			return incidents(stdout, c.ErrOrStderr(), dir, from, asJSON, limit)
		},
	}
	c.Flags().StringVar(&loc.dir, "state-dir", config.DefaultStateDir, "the daemon's state directory (default: asked from the running daemon, else state_dir in --config)")
	c.Flags().StringVar(&loc.socket, "socket", statusd.DefaultSocket, "the running daemon's status socket")
	c.Flags().StringVar(&loc.config, "config", config.DefaultPath, "the daemon's config file, read for state_dir when no daemon answers")
	c.Flags().BoolVar(&asJSON, "json", false, "one JSON array, with candidates and kernel log lines")
	c.Flags().IntVar(&limit, "limit", 20, "show at most N incidents (0: all)")
	dirFlags(c, "state-dir")
	fileFlags(c, "socket", "config")
	return c
}

// stateDirSource is where `incidents` looks for the state directory.
type stateDirSource struct {
	dir, socket, config string
	explicit            bool // --state-dir given
}

// locate finds the state directory and says where it came from: the
// flag, the running daemon, the config file, or the default.
func (s stateDirSource) locate(stderr io.Writer) (dir, from string) {
	if s.explicit {
		return s.dir, "--state-dir"
	}
	if st, err := statusd.QueryTimeout(s.socket, time.Second); err == nil {
		return st.StateDir, fmt.Sprintf("the running daemon's, pid %d, asked at %s", st.PID, s.socket)
	} else if !errors.Is(err, statusd.ErrNotRunning) {
		fmt.Fprintf(stderr, "oomwatch incidents: cannot ask the daemon: %v\n", err)
	}
	cfg, err := config.Load(s.config, false)
	if err != nil {
		fmt.Fprintf(stderr, "oomwatch incidents: cannot read state_dir from the config:\n%v\n", err)
		return config.DefaultStateDir, "the default: no daemon answers at " + s.socket + " and the config cannot be read"
	}
	if _, err := os.Stat(s.config); err != nil {
		return cfg.Global().StateDir, "the default: no daemon answers at " + s.socket + ", no config at " + s.config
	}
	return cfg.Global().StateDir, "state_dir in " + s.config + "; no daemon answers at " + s.socket
}

// incidents shows the incident journal, newest first. It reads the files
// directly, so it works with the daemon stopped. from says where dir came
// from (see stateDirSource.locate).
func incidents(stdout, stderr io.Writer, dir, from string, asJSON bool, limit int) error {
	if dir == "" {
		if asJSON {
			_, err := fmt.Fprintln(stdout, "[]")
			return err
		}
		fmt.Fprintf(stdout, "no incident journal: the state directory from %s is \"\" (state kept in memory only)\n", from)
		return nil
	}
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
		why := ""
		if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
			why = "; it does not exist yet"
		}
		fmt.Fprintf(stdout, "no incidents recorded in %s (%s%s)\n", dir, from, why)
		return nil
	}
	printIncidents(stdout, incs, time.Now())
	fmt.Fprintf(stdout, "journal: %s (%s)\n", dir, from)
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
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%s\t%s\t%s\n", started, verdict, cgLabel(inc.Cgroup, cgnames.Label(inc.Container, inc.ContainerName)),
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
	for i, a := range inc.Actions {
		if a.Pending && resultFollows(inc.Actions[i+1:], a) {
			continue // the announcement; its result is listed
		}
		s := a.Name
		if a.Comm != "" {
			s += " " + procfs.Safe(a.Comm)
		}
		switch {
		case a.Pending:
			s += " (started, no result: oomwatch stopped mid-action)"
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
		out += " → " + string(inc.Outcome)
	}
	return out
}

// resultFollows says whether the result of the announced action a is among
// later.
func resultFollows(later []policy.Action, a policy.Action) bool {
	for _, b := range later {
		if !b.Pending && b.Name == a.Name && b.PID == a.PID {
			return true
		}
	}
	return false
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
