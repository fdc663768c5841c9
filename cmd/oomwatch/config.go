package main

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/oomwatch/oomwatch/internal/config"
)

// configCmd prints the built-in configuration.
func configCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("config", "Print the built-in configuration: every key of "+config.DefaultPath+",\nits default and what it means. oomwatch runs with exactly these settings\nwhen the file does not exist; save the output there to start from it.", stderr)
	defaults := fs.Bool("defaults", false, "print the embedded defaults file")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if !*defaults {
		return &exitError{code: 2, err: errors.New("nothing to print: use --defaults (see --help)")}
	}
	_, err := stdout.Write(config.DefaultsYAML())
	return err
}

const checkConfigSynopsis = "Check a config file the way oomwatch run and its reload read it: strict\n" +
	"YAML, every value validated; as root, also that only root can change\n" +
	"the file. FILE defaults to " + config.DefaultPath + ".\n" +
	"Exit status: 0 the file is good, 1 it is not (each problem is listed\n" +
	"as FILE:LINE:COLUMN), 2 usage."

// checkConfigCmd validates a config file the way the daemon reads it.
func checkConfigCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("check-config", checkConfigSynopsis, stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: oomwatch check-config [flags] [FILE]\n\n%s\n\nFlags:\n", checkConfigSynopsis)
		fs.PrintDefaults()
	}
	// Like parseFlags, with one optional argument.
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return &exitError{code: 0, err: err}
		}
		return &exitError{code: 2, err: fmt.Errorf("%w (see --help)", err)}
	}
	if fs.NArg() > 1 {
		return &exitError{code: 2, err: fmt.Errorf("unexpected argument %q: check one file at a time (see --help)", fs.Arg(1))}
	}
	path, explicit := config.DefaultPath, false
	if fs.NArg() == 1 {
		path, explicit = fs.Arg(0), true
	}
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
		return &exitError{code: 1, err: errors.New("")}
	}
	// The alerts section is checked the way run checks it: a file
	// check-config accepts is a file run accepts.
	if _, err := alertConfig(cfg); err != nil {
		fmt.Fprintln(stderr, err)
		fmt.Fprintf(stderr, "%s: oomwatch would refuse this file as a whole\n", path)
		return &exitError{code: 1, err: errors.New("")}
	}
	n := len(cfg.RuleNames())
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
