package main

import (
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/oomwatch/oomwatch/internal/cgroupfs"
	"github.com/oomwatch/oomwatch/internal/procfs"
)

// rootFlags are the filesystem roots every command takes.
type rootFlags struct {
	cgroupRoot, freezerRoot, procRoot string
}

func (r *rootFlags) register(c *cobra.Command) {
	fs := c.Flags()
	fs.StringVar(&r.cgroupRoot, "cgroup-root", "", "memory cgroup hierarchy to watch (default: found in mountinfo; v1 memory on legacy and hybrid hosts, else cgroup2)")
	fs.StringVar(&r.freezerRoot, "freezer-root", "", "cgroup v1 freezer hierarchy (default: found with the memory hierarchy)")
	fs.StringVar(&r.procRoot, "proc-root", "/proc", "procfs mount")
	dirFlags(c, "cgroup-root", "freezer-root", "proc-root")
}

func (r *rootFlags) open() (cgroupfs.Hierarchy, procfs.FS, error) {
	var h cgroupfs.Hierarchy
	var err error
	if r.cgroupRoot != "" {
		h, err = cgroupfs.Open(r.cgroupRoot, r.freezerRoot)
	} else {
		h, err = cgroupfs.Detect(r.procRoot)
		if err == nil && r.freezerRoot != "" {
			h.Freezer = r.freezerRoot
		}
	}
	if err != nil {
		return h, procfs.FS{}, err
	}
	return h, procfs.New(r.procRoot), nil
}

// dirFlags and fileFlags make the shells complete directory or file names
// for the named flags.
func dirFlags(c *cobra.Command, names ...string) {
	for _, n := range names {
		_ = c.MarkFlagDirname(n)
	}
}

func fileFlags(c *cobra.Command, names ...string) {
	for _, n := range names {
		_ = c.MarkFlagFilename(n)
	}
}

// listFlag is a repeatable, comma-separated string flag. A glob given
// through it cannot contain a comma (use the config file's lists for that).
type listFlag []string

var _ pflag.Value = (*listFlag)(nil)

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Type() string   { return "list" }
func (l *listFlag) Set(s string) error {
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			*l = append(*l, f)
		}
	}
	return nil
}

// choices makes the shells complete one of words for flag name.
func choices(c *cobra.Command, name string, words ...string) {
	_ = c.RegisterFlagCompletionFunc(name, cobra.FixedCompletions(words, cobra.ShellCompDirectiveNoFileComp))
}
