// Command oomwatch keeps hosts out of memory-cgroup OOM loops.
//
// main only wires: flags into options, the logger, a context cancelled by
// SIGINT/SIGTERM, then a run function whose error becomes the exit code.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// Set by the build (-ldflags "-X main.version=…").
var version = "dev"

// exitError carries a specific exit code.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }

const usage = `oomwatch keeps hosts out of memory-cgroup OOM loops.

Usage:
  oomwatch run [flags]     watch every memory cgroup and break OOM loops (the daemon)
  oomwatch scan [flags]    show where an OOM would loop today (exit 2 when one would)
  oomwatch status          what the running daemon sees and did
  oomwatch incidents       the incident history (works without the daemon)
  oomwatch thaw CGROUP     thaw a cgroup oomwatch froze
  oomwatch config --defaults      print the built-in config, every key documented
  oomwatch check-config [FILE]    check a config file (default /etc/oomwatch/oomwatch.yaml)
  oomwatch version         print the version
  oomwatch help COMMAND    help for a command

Run "oomwatch COMMAND --help" for the flags of a command.
`

func main() {
	os.Exit(dispatch(os.Args[1:], os.Stdout, os.Stderr))
}

func dispatch(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, rest := args[0], args[1:]
	var err error
	switch cmd {
	case "run":
		err = runCmd(rest, stderr)
	case "scan":
		err = scanCmd(rest, stdout, stderr)
	case "thaw":
		err = thawCmd(rest, stdout, stderr)
	case "status":
		err = statusCmd(rest, stdout, stderr)
	case "incidents":
		err = incidentsCmd(rest, stdout, stderr)
	case "config":
		err = configCmd(rest, stdout, stderr)
	case "check-config":
		err = checkConfigCmd(rest, stdout, stderr)
	case "version", "--version":
		fmt.Fprintf(stdout, "oomwatch %s\n", version)
	case "help", "-h", "--help":
		if len(rest) > 0 {
			return dispatch([]string{rest[0], "--help"}, stdout, stderr)
		}
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "oomwatch: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil && ee.code != 0 && ee.err.Error() != "" {
			fmt.Fprintf(stderr, "oomwatch %s: %v\n", cmd, ee.err)
		}
		return ee.code
	}
	fmt.Fprintf(stderr, "oomwatch %s: %v\n", cmd, err)
	return 1
}
