package main

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/oomwatch/oomwatch/alert"
	"github.com/oomwatch/oomwatch/internal/metrics"
	"github.com/oomwatch/oomwatch/test/testtier"
	"github.com/oomwatch/oomwatch/watchdog"
)

const manPage = "../../packaging/oomwatch.8"

// roff escapes "-" as "\-" in names the reader types.
func roff(s string) string { return strings.ReplaceAll(s, "-", `\-`) }

type manWD struct{}

func (manWD) Stats() watchdog.Stats { return watchdog.Stats{} }

type manAlerts struct{}

func (manAlerts) Stats() []alert.SinkStats { return []alert.SinkStats{{Name: "a", Kind: "webhook"}} }

type manRisk struct{}

func (manRisk) AtRisk() []watchdog.Risk { return []watchdog.Risk{{Cgroup: "/a"}} }

// oomwatch(8) covers every command, every flag of every command, every
// exit status and every metric family the daemon exports.
func TestManPageCoversEveryCommandFlagExitCodeAndMetric(t *testing.T) {
	b, err := os.ReadFile(manPage)
	if err != nil {
		t.Fatal(err)
	}
	man := string(b)
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Hidden {
			return
		}
		shell := c.HasParent() && c.Parent().Name() == "completion" // bash, zsh, … listed as words
		if c.HasParent() && !shell && !strings.Contains(man, ".B "+roff(c.Name())) && !strings.Contains(man, "oomwatch "+roff(c.Name())) {
			t.Errorf("oomwatch(8) lacks the command %q", c.Name())
		}
		c.LocalFlags().VisitAll(func(f *pflag.Flag) {
			if f.Hidden || f.Name == "help" {
				return
			}
			if !strings.Contains(man, `\-\-`+roff(f.Name)) {
				t.Errorf("oomwatch(8) lacks %s's flag --%s", c.CommandPath(), f.Name)
			}
		})
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRootCmd(io.Discard, io.Discard))
	for _, code := range []int{exitOK, exitFailed, exitRisk, exitUsage, exitConfig} {
		if !strings.Contains(man, ".SH \"EXIT STATUS\"") || !strings.Contains(man[strings.Index(man, ".SH \"EXIT STATUS\""):], ".B "+strconv.Itoa(code)+"\n") {
			t.Errorf("oomwatch(8) EXIT STATUS lacks %d", code)
		}
	}
	m := metrics.New("dev", manWD{}, manAlerts{})
	m.SetRisk(manRisk{})
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if !strings.Contains(man, mf.GetName()) {
			t.Errorf("oomwatch(8) METRICS lacks %s", mf.GetName())
		}
	}
}

// oomwatch(8) renders without a warning from man/groff.
func TestManPageRendersWithoutWarnings(t *testing.T) {
	if _, err := exec.LookPath("man"); err != nil {
		testtier.Require(t, testtier.Host, "man not found (apt-get install man-db; .ci/run installs it)")
	}
	cmd := exec.Command("man", "--warnings", "-E", "UTF-8", "-l", manPage)
	cmd.Env = append(os.Environ(), "MANWIDTH=80", "LC_ALL=C.UTF-8", "MAN_KEEP_FORMATTING=0")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || stderr.Len() > 0 {
		t.Fatalf("man --warnings: %v\n%s", err, stderr.String())
	}
	out = regexp.MustCompile(".\x08").ReplaceAll(out, nil) // bold and underline as overstrikes
	if !bytes.Contains(out, []byte("EXIT STATUS")) {
		t.Fatalf("rendered page lacks EXIT STATUS:\n%s", out)
	}
}
