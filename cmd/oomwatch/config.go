package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/oomwatch/oomwatch/internal/config"
)

func newConfigCmd(stdout io.Writer) *cobra.Command {
	var defaults bool
	c := &cobra.Command{
		Use:   "config --defaults",
		Short: "print the built-in config, every key documented",
		Long: `Print the built-in configuration: every key of ` + config.DefaultPath + `,
its default and what it means. oomwatch runs with exactly these settings
when the file does not exist; save the output there to start from it.
Exit status: 0 printed, 64 usage.`,
		Args: noArgs,
		RunE: func(*cobra.Command, []string) error {
			if !defaults {
				return usageErr("nothing to print: use --defaults")
			}
			_, err := stdout.Write(config.DefaultsYAML())
			return err
		},
	}
	c.Flags().BoolVar(&defaults, "defaults", false, "print the embedded defaults file")
	return c
}

func newCheckConfigCmd(stdout, stderr io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "check-config [FILE]",
		Short: "check a config file (default " + config.DefaultPath + ")",
		Long: `Check a config file the way oomwatch run and its reload read it: strict
YAML, every value validated; as root, also that only root can change the
file. FILE defaults to ` + config.DefaultPath + `.
Every problem is listed at once as FILE:LINE:COLUMN with the line and what
to do; rules that can never apply or change nothing are listed as warnings
(the file is still good).
Exit status: 0 the file is good (with or without warnings), 78 it is not
or cannot be read, 64 usage.`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usageErr("unexpected argument %q: check one file at a time", args[1])
			}
			return nil
		},
		ValidArgsFunction: func(_ *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
			if len(args) > 0 {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			return []cobra.Completion{"yaml", "yml"}, cobra.ShellCompDirectiveFilterFileExt
		},
		RunE: func(_ *cobra.Command, args []string) error {
			path, explicit := config.DefaultPath, false
			if len(args) == 1 {
				path, explicit = args[0], true
			}
			return checkConfig(stdout, stderr, path, explicit)
		},
	}
}

// checkConfig validates a config file the way the daemon reads it.
func checkConfig(stdout, stderr io.Writer, path string, explicit bool) error {
	cfg, err := config.Load(path, explicit)
	if err != nil {
		var ce *config.Error
		if !errors.As(err, &ce) {
			return err
		}
		for _, p := range ce.Problems {
			fmt.Fprintln(stderr, p.Error())
			if ex := p.Excerpt(); ex != "" {
				fmt.Fprintln(stderr, ex)
			}
		}
		n := len(ce.Problems) + ce.More
		if ce.More > 0 {
			fmt.Fprintf(stderr, "… and %d more\n", ce.More)
		}
		fmt.Fprintf(stderr, "%s: %d %s: oomwatch would refuse this file as a whole\n", path, n, plural(n, "problem", "problems"))
		return &exitError{code: exitConfig, err: errors.New("")}
	}
	for _, w := range cfg.Warnings() {
		fmt.Fprintln(stderr, "warning: "+w.Error())
		if ex := w.Excerpt(); ex != "" {
			fmt.Fprintln(stderr, ex)
		}
	}
	n := len(cfg.RuleNames())
	if w := len(cfg.Warnings()); w > 0 {
		fmt.Fprintf(stdout, "%s: OK (%d %s, %d %s)\n", path, n, plural(n, "rule", "rules"), w, plural(w, "warning", "warnings"))
		return nil
	}
	if cfg.Path == "" {
		fmt.Fprintf(stdout, "%s: OK (no file: the built-in defaults, 0 rules)\n", path)
		return nil
	}
	fmt.Fprintf(stdout, "%s: OK (%d %s)\n", path, n, plural(n, "rule", "rules"))
	return nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
