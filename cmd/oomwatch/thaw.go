package main

import (
	"fmt"
	"io"
	"time"

	"github.com/oomwatch/oomwatch/internal/cgroupfs"
)

func thawCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("thaw", "Thaw a cgroup that oomwatch froze: oomwatch thaw [flags] CGROUP\n(CGROUP is the path relative to the memory hierarchy, as in incidents, e.g. /lxc/web1).\nFix the cause of the loop first, or it resumes.", stderr)
	var roots rootFlags
	roots.register(fs)
	timeout := fs.Duration("timeout", 5*time.Second, "how long to wait for the cgroup to thaw")
	if err := parseFlagsN(fs, args, 1); err != nil {
		return err
	}
	cg := cgroupfs.Clean(fs.Arg(0))
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
	if err := h.Thaw(cg, *timeout, 10*time.Millisecond); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s thawed\n", cg)
	return nil
}
