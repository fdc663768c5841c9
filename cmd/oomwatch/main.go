// Command oomwatch keeps hosts out of memory-cgroup OOM loops.
//
// main only wires: flags into options, the logger, a context cancelled by
// SIGINT/SIGTERM, then a run function whose error becomes the exit code.
// The command line is a cobra tree: help on stdout, errors on stderr, shell
// completion from the same flag definitions the commands parse.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
)

// Set by the build (-ldflags "-X main.version=…").
var version = "dev"

// Exit codes, one meaning each for every command (sysexits(3) for usage and
// configuration). README and oomwatch(8) list them.
const (
	exitOK     = 0
	exitFailed = 1  // the command could not do its work (I/O, no daemon, …)
	exitRisk   = 2  // scan: an OOM would loop somewhere
	exitUsage  = 64 // EX_USAGE: unknown command or flag, bad argument or flag value
	exitConfig = 78 // EX_CONFIG: the configuration file is invalid, or the container set-up (a private cgroup namespace oomwatch cannot leave)
)

// exitError carries a specific exit code; an empty message prints nothing.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }

func usageErr(format string, a ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, a...)}
}

func main() {
	os.Exit(dispatch(os.Args[1:], os.Stdout, os.Stderr))
}

// dispatch runs the command line args and returns the exit code.
func dispatch(args []string, stdout, stderr io.Writer) int {
	root := newRootCmd(stdout, stderr)
	root.SetArgs(args)
	cmd, err := root.ExecuteC()
	if err == nil {
		return exitOK
	}
	code := exitFailed
	var ee *exitError
	if errors.As(err, &ee) {
		code = ee.code
	}
	if msg := err.Error(); msg != "" {
		if code == exitUsage {
			msg += fmt.Sprintf(" (see %s --help)", cmd.CommandPath())
		}
		fmt.Fprintf(stderr, "%s: %s\n", cmd.CommandPath(), msg)
	}
	return code
}

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "oomwatch",
		Short: "keep hosts out of memory-cgroup OOM loops",
		Long: `oomwatch keeps hosts out of memory-cgroup OOM loops: it watches every
memory cgroup, detects an OOM that can kill nothing and loops, breaks the
loop by a verified ladder of actions, and tells people.`,
		Version:           version,
		SilenceErrors:     true,
		SilenceUsage:      true,
		CompletionOptions: cobra.CompletionOptions{HiddenDefaultCmd: false},
		Args: func(c *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageErr("unknown command %q", args[0])
			}
			return nil
		},
		RunE: func(c *cobra.Command, _ []string) error {
			c.SetOut(stderr)
			_ = c.Usage()
			return &exitError{code: exitUsage, err: errors.New("")}
		},
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetVersionTemplate("oomwatch {{.Version}}\n")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &exitError{code: exitUsage, err: err} })
	root.SetUsageTemplate(usageTemplate)
	root.SetHelpCommand(helpCmd(root))
	root.AddCommand(newRunCmd(stderr), newScanCmd(stdout), newStatusCmd(stdout), newIncidentsCmd(stdout),
		newThawCmd(stdout), newConfigCmd(stdout), newCheckConfigCmd(stdout, stderr), newVersionCmd(stdout))
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		if c.Name() == "completion" {
			c.Short, c.Long = "print a shell completion script (bash, zsh, fish)", completionLong
		}
	}
	return root
}

// helpCmd is "help [COMMAND]": the command's help on stdout, exit 0; an
// unknown command is a usage error (cobra's own help exits 0 on it).
func helpCmd(root *cobra.Command) *cobra.Command {
	return &cobra.Command{
		Use:   "help [COMMAND]",
		Short: "help for a command",
		Args:  cobra.ArbitraryArgs,
		ValidArgsFunction: func(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
			var names []cobra.Completion
			for _, c := range root.Commands() {
				if c.IsAvailableCommand() {
					names = append(names, c.Name())
				}
			}
			return names, cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(c *cobra.Command, args []string) error {
			target, rest, err := root.Find(args)
			if err != nil || len(rest) > 0 {
				name := args[0]
				if len(rest) > 0 {
					name = rest[0]
				}
				return usageErr("no help for %q: unknown command", name)
			}
			target.InitDefaultHelpFlag()
			return target.Help()
		},
	}
}

func newVersionCmd(stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "print the version",
		Args:  noArgs,
		RunE: func(*cobra.Command, []string) error {
			_, err := fmt.Fprintf(stdout, "oomwatch %s\n", version)
			return err
		},
	}
}

// noArgs and nArgs check positional arguments, as usage errors.
func noArgs(c *cobra.Command, args []string) error { return nArgs(0)(c, args) }

func nArgs(n int) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) > n {
			return usageErr("unexpected argument %q", args[n])
		}
		if len(args) < n {
			return usageErr("want %d argument(s), got %d", n, len(args))
		}
		return nil
	}
}

const completionLong = `Print a completion script for bash, zsh or fish (or powershell).

The .deb installs them (bash-completion, zsh's site-functions, fish's
vendor completions); by hand:
  oomwatch completion bash > /etc/bash_completion.d/oomwatch
  oomwatch completion zsh  > /usr/local/share/zsh/site-functions/_oomwatch
  oomwatch completion fish > /etc/fish/completions/oomwatch.fish`

// usageTemplate is cobra's, with flags wrapped to 80 columns.
const usageTemplate = `Usage:{{if .Runnable}}
  {{.UseLine}}{{end}}{{if .HasAvailableSubCommands}}
  {{.CommandPath}} COMMAND{{end}}{{if gt (len .Aliases) 0}}

Aliases:
  {{.NameAndAliases}}{{end}}{{if .HasExample}}

Examples:
{{.Example}}{{end}}{{if .HasAvailableSubCommands}}

Commands:{{range .Commands}}{{if (or .IsAvailableCommand (eq .Name "help"))}}
  {{rpad .Name .NamePadding }} {{.Short}}{{end}}{{end}}{{end}}{{if .HasAvailableLocalFlags}}

Flags:
{{wrapFlags .LocalFlags | trimTrailingWhitespaces}}{{end}}{{if .HasAvailableInheritedFlags}}

Global Flags:
{{wrapFlags .InheritedFlags | trimTrailingWhitespaces}}{{end}}{{if .HasAvailableSubCommands}}

Run "{{.CommandPath}} COMMAND --help" for the flags of a command.{{end}}
`

func init() {
	cobra.AddTemplateFunc("wrapFlags", func(fs interface{ FlagUsagesWrapped(int) string }) string {
		return fs.FlagUsagesWrapped(80)
	})
}
