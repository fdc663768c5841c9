package main

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/oomwatch/oomwatch/internal/cgroupfs"
)

func newThawCmd(stdout io.Writer) *cobra.Command {
	var roots rootFlags
	var timeout time.Duration
	c := &cobra.Command{
		Use:   "thaw [flags] CGROUP",
		Short: "thaw a cgroup oomwatch froze",
		Long: `Thaw a cgroup that oomwatch froze. CGROUP is the path relative to the
memory hierarchy, as in incidents (e.g. /lxc/web1). Fix the cause of the
loop first, or it resumes.
Exit status: 0 thawed or not frozen, 1 error, 64 usage.`,
		Args: nArgs(1),
		RunE: func(_ *cobra.Command, args []string) error { return thaw(stdout, roots, timeout, args[0]) },
	}
	roots.register(c)
	c.Flags().DurationVar(&timeout, "timeout", 5*time.Second, "how long to wait for the cgroup to thaw")
	return c
}

func thaw(stdout io.Writer, roots rootFlags, timeout time.Duration, arg string) error {
	cg := cgroupfs.Clean(arg)
	h, _, err := roots.open()
	if err != nil {
		return err
	}
	if !h.Exists(cg) {
		return fmt.Errorf("cgroup %s does not exist under %s", cg, h.Root)
	}
	st, err := h.FreezerState(cg)
	if err != nil {
		return err
	}
	if st == "THAWED" {
		fmt.Fprintf(stdout, "%s is not frozen\n", cg)
		return nil
	}
	if err := h.Thaw(cg, timeout, 10*time.Millisecond); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s thawed\n", cg)
	return nil
}
