// Command benchtable ends a `make bench` run with one table. It reads `go
// test -bench` output, passes every line through unchanged (to stderr, and
// to -log FILE if given) and, at the end of its input, prints one table of
// every OOMWATCH-BENCH row the benchmarks emitted (see test/benchrow),
// grouped by measurement and scenario, oomwatch beside the peer or poller,
// with the machine's facts, the targets met and missed, and the benchmarks
// that were skipped or failed.
//
//	go test -run '^$' -bench . ./... 2>&1 | go run ./test/benchrow/benchtable [-log bench.log]
//	go run ./test/benchrow/benchtable bench.log     # re-table a saved log (no pass-through)
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"

	"github.com/oomwatch/oomwatch/test/benchrow"
)

func main() {
	logPath := flag.String("log", "", "also write the input, unchanged, to this file")
	quiet := flag.Bool("q", false, "do not pass the input through to stderr")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: go test -bench … 2>&1 | benchtable [-q] [-log FILE]\n       benchtable FILE…   (re-table saved output)\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	var c benchrow.Collector
	if flag.NArg() > 0 {
		for _, p := range flag.Args() {
			f, err := os.Open(p)
			if err != nil {
				fatal(err)
			}
			err = c.Copy(f, nil)
			f.Close()
			if err != nil {
				fatal(err)
			}
		}
	} else {
		// Ctrl-C stops go test; its end of the pipe closes and the table of
		// what was measured so far is still printed.
		signal.Ignore(os.Interrupt)
		var pass []io.Writer
		if !*quiet {
			pass = append(pass, os.Stderr)
		}
		if *logPath != "" {
			f, err := os.Create(*logPath)
			if err != nil {
				fatal(err)
			}
			defer f.Close()
			pass = append(pass, f)
		}
		if err := c.Copy(os.Stdin, io.MultiWriter(pass...)); err != nil {
			fatal(err)
		}
		if *logPath != "" {
			fmt.Fprintf(os.Stderr, "\n(full output in %s; re-table it with: go run ./test/benchrow/benchtable %s)\n", *logPath, *logPath)
		}
	}
	fmt.Print("\n" + c.Table(benchrow.Machine()))
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "benchtable:", err)
	os.Exit(1)
}
