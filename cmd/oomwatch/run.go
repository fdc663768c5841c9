package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/oomwatch/oomwatch/policy"
	"github.com/oomwatch/oomwatch/systemd"
	"github.com/oomwatch/oomwatch/watchdog"
)

func runCmd(args []string, stderr io.Writer) error {
	fs := newFlagSet("run", "Watch every memory cgroup and break OOM loops. Needs no config file.\nLogs JSON lines to stderr.", stderr)
	var roots rootFlags
	roots.register(fs)
	opts := policy.DefaultOptions()
	params := watchdog.DefaultParams
	var ladder, exempt listFlag
	var g globals
	var level string
	fs.BoolVar(&opts.DryRun, "dry-run", false, "detect and report loops, change nothing")
	fs.Var(&ladder, "ladder", "remediation rungs in order (default reset-adj,freeze)")
	fs.Var(&exempt, "exempt-comm", "never reset the oom_score_adj of tasks whose comm matches this glob (repeatable, comma-separated)")
	fs.IntVar(&opts.ResetTo, "reset-to", opts.ResetTo, "oom_score_adj written by reset-adj")
	fs.DurationVar(&params.Window, "window", params.Window, "detection window")
	fs.Uint64Var(&params.MinOOMs, "min-ooms", params.MinOOMs, "kill-less OOM events within the window that make a loop")
	fs.DurationVar(&opts.VerifyTimeout, "verify-timeout", opts.VerifyTimeout, "time each rung gets to end the loop before escalating")
	fs.DurationVar(&opts.FreezeTimeout, "freeze-timeout", opts.FreezeTimeout, "bound on waiting for a cgroup to freeze")
	fs.IntVar(&g.maxCgroups, "max-cgroups", watchdog.DefaultMaxCgroups, "bound on the number of cgroups watched")
	fs.StringVar(&g.stateDir, "state-dir", "/var/lib/oomwatch", "where raised limits are remembered across restarts (\"\": memory only)")
	fs.IntVar(&g.maxActions, "max-actions-per-minute", 30, "global bound on changes to the host")
	var exemptCmdline, exemptCgroup listFlag
	fs.Var(&exemptCmdline, "exempt-cmdline", "never reset tasks whose space-joined cmdline matches this glob (repeatable)")
	fs.Var(&exemptCgroup, "exempt-cgroup", "never reset tasks whose cgroup path matches this glob (repeatable)")
	fs.StringVar(&opts.KillMode, "kill-mode", opts.KillMode, "kill rung: largest (one task) or cgroup (every task)")
	fs.DurationVar(&opts.Cooldown, "cooldown", opts.Cooldown, "no new ladder for a cgroup this soon after one ended")
	fs.StringVar(&opts.PausedAction, "paused-action", "", "act as the userspace OOM handler of v1 oom_kill_disable cgroups: raise-limit or kill (default: report only)")
	fs.DurationVar(&opts.RevertHold, "revert-hold", opts.RevertHold, "raise-limit: revert after usage stayed below the original limit minus the margin this long")
	fs.StringVar(&level, "log-level", "info", "debug, info, warn or error")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if len(ladder) > 0 {
		opts.Ladder = ladder
	}
	opts.ExemptComm = exempt
	opts.ExemptCmdline, opts.ExemptCgroup = exemptCmdline, exemptCgroup
	lvl, err := zerolog.ParseLevel(level)
	if err != nil || level == "" {
		return &exitError{code: 2, err: fmt.Errorf("--log-level %q: want debug, info, warn or error", level)}
	}
	log := zerolog.New(stderr).Level(lvl).With().Timestamp().Logger()

	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	return run(ctx, log, roots, params, opts, g)
}

// globals are daemon-wide settings (not per rule).
type globals struct {
	maxCgroups int
	stateDir   string
	maxActions int
}

func run(ctx context.Context, log zerolog.Logger, roots rootFlags, params watchdog.Params, opts policy.Options, g globals) error {
	h, proc, err := roots.open()
	if err != nil {
		return err
	}
	if err := params.Validate(); err != nil {
		return &exitError{code: 2, err: err}
	}
	pol, err := policy.New(ctx, policy.Config{CG: h, Proc: proc, Options: opts, StateDir: g.stateDir,
		MaxActionsPerMinute: g.maxActions}, log.With().Str("component", "policy").Logger())
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	sd, err := systemd.NewNotifier()
	if err != nil {
		return err
	}
	var w *watchdog.Watchdog
	status := func() string {
		st := w.Stats()
		return fmt.Sprintf("watching %d memory cgroups (cgroup v%d), %d open incidents", st.Watched, h.Version, st.OpenIncidents)
	}
	cfg := watchdog.Config{
		CG: h, Proc: proc, Detector: params, MaxCgroups: g.maxCgroups,
		Ready: func(int) {
			if err := sd.Ready(status()); err != nil {
				log.Warn().Err(err).Msg("sd_notify READY failed")
			}
		},
	}
	// Pings come from the event loop itself: a stuck loop stops pinging and
	// systemd restarts the daemon. Without WatchdogSec the loop sleeps.
	if every := sd.PingEvery(); every > 0 {
		cfg.Tick = func() { _ = sd.Ping(status()) }
		cfg.TickEvery = every
	}
	w, err = watchdog.New(cfg, pol, log.With().Str("component", "watchdog").Logger())
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	log.Info().Str("version", version).Int("pid", os.Getpid()).Bool("dry_run", opts.DryRun).
		Strs("ladder", opts.Ladder).Dur("window", params.Window).Uint64("min_ooms", params.MinOOMs).Msg("oomwatch starting")
	err = w.Run(ctx)
	_ = sd.Stopping()
	pol.Wait()
	if err != nil {
		return err
	}
	log.Info().Dur("uptime", time.Since(startTime)).Msg("oomwatch stopped")
	return nil
}

var startTime = time.Now()
