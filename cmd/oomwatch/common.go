package main

import (
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/oomwatch/oomwatch/internal/cgroupfs"
	"github.com/oomwatch/oomwatch/internal/procfs"
)

// rootFlags are the filesystem roots every command takes.
type rootFlags struct {
	cgroupRoot, freezerRoot, procRoot string
}

func (r *rootFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&r.cgroupRoot, "cgroup-root", "", "memory cgroup hierarchy to watch (default: found in mountinfo; v1 memory on legacy and hybrid hosts, else cgroup2)")
	fs.StringVar(&r.freezerRoot, "freezer-root", "", "cgroup v1 freezer hierarchy (default: found with the memory hierarchy)")
	fs.StringVar(&r.procRoot, "proc-root", "/proc", "procfs mount")
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

// listFlag is a repeatable, comma-separated string flag.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error {
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			*l = append(*l, f)
		}
	}
	return nil
}

func newFlagSet(name, synopsis string, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage: oomwatch %s [flags]\n\n%s\n\nFlags:\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags maps -h to a clean exit and bad flags to exit code 2; no
// positional arguments are allowed.
func parseFlags(fs *flag.FlagSet, args []string) error { return parseFlagsN(fs, args, 0) }

// parseFlagsN is parseFlags for commands taking exactly n arguments.
func parseFlagsN(fs *flag.FlagSet, args []string, n int) error {
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return &exitError{code: 0, err: err}
		}
		return &exitError{code: 2, err: fmt.Errorf("%w (see --help)", err)}
	}
	if fs.NArg() > n {
		return &exitError{code: 2, err: fmt.Errorf("unexpected argument %q (see --help)", fs.Arg(n))}
	}
	if fs.NArg() < n {
		return &exitError{code: 2, err: fmt.Errorf("want %d argument(s), got %d (see --help)", n, fs.NArg())}
	}
	return nil
}
