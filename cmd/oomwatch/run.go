package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/cgroups/v3"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/oomwatch/oomwatch/alert"
	"github.com/oomwatch/oomwatch/internal/config"
	"github.com/oomwatch/oomwatch/internal/ctrstate"
	"github.com/oomwatch/oomwatch/internal/history"
	"github.com/oomwatch/oomwatch/internal/kmsg"
	"github.com/oomwatch/oomwatch/internal/metrics"
	"github.com/oomwatch/oomwatch/internal/procfs"
	"github.com/oomwatch/oomwatch/internal/statusd"
	"github.com/oomwatch/oomwatch/policy"
	"github.com/oomwatch/oomwatch/report"
	"github.com/oomwatch/oomwatch/systemd"
	"github.com/oomwatch/oomwatch/watchdog"
)

// runFlags are the command-line settings of run. Flags given explicitly
// override the config file (for every rule); the others leave it alone.
type runFlags struct {
	roots            rootFlags
	configPath       string
	level            string
	config.Overrides // Set: the flags given on the command line

	statusSocket string
	riskEvery    time.Duration
	runtimeState string // filesystem root of Docker's and Podman's state ("": not read)
}

func newRunCmd(stderr io.Writer) *cobra.Command {
	f := runFlags{Overrides: config.Overrides{Policy: policy.DefaultOptions(), Detector: watchdog.DefaultParams}}
	c := &cobra.Command{
		Use:   "run [flags]",
		Short: "watch every memory cgroup and break OOM loops (the daemon)",
		Long: `Watch every memory cgroup and break OOM loops. Works with no config file
(embedded defaults; see oomwatch config --defaults). Logs JSON lines to
stderr, or structured fields to the journal under systemd. SIGHUP reloads
the config file; a bad file is reported and the old one stays.
Exit status: 0 stopped by SIGINT/SIGTERM, 1 error, 64 usage (a bad flag),
78 the config file is invalid, or oomwatch runs in a private cgroup
namespace it cannot leave (the unit does not restart on either).`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			f.Set = map[string]bool{}
			c.Flags().Visit(func(fl *pflag.Flag) { f.Set[fl.Name] = true })
			return runMain(stderr, f)
		},
	}
	f.register(c)
	return c
}

func (f *runFlags) register(c *cobra.Command) {
	fs := c.Flags()
	f.roots.register(c)
	fs.StringVar(&f.configPath, "config", config.DefaultPath, "config file (a missing file at the default path means built-in defaults)")
	fs.StringVar(&f.level, "log-level", "info", "debug, info, warn or error")
	fs.BoolVar(&f.Policy.DryRun, "dry-run", false, "detect and report loops, change nothing")
	fs.Var((*listFlag)(&f.Ladder), "ladder", "remediation rungs in order: reset-adj, raise-limit, freeze, kill (default reset-adj,freeze)")
	fs.Var((*listFlag)(&f.ExemptComm), "exempt-comm", "never reset tasks whose comm matches this glob (repeatable, comma-separated)")
	fs.Var((*listFlag)(&f.ExemptCmdline), "exempt-cmdline", "never reset tasks whose space-joined cmdline matches this glob (repeatable, comma-separated)")
	fs.Var((*listFlag)(&f.ExemptCgroup), "exempt-cgroup", "never reset tasks whose cgroup path matches this glob (repeatable, comma-separated)")
	fs.IntVar(&f.Policy.ResetTo, "reset-to", f.Policy.ResetTo, "oom_score_adj written by reset-adj")
	fs.DurationVar(&f.Detector.Window, "window", f.Detector.Window, "detection window")
	fs.Uint64Var(&f.Detector.MinOOMs, "min-ooms", f.Detector.MinOOMs, "kill-less OOM events within the window that make a loop")
	fs.DurationVar(&f.Policy.VerifyTimeout, "verify-timeout", f.Policy.VerifyTimeout, "time each rung gets to end the loop before escalating")
	fs.DurationVar(&f.Policy.FreezeTimeout, "freeze-timeout", f.Policy.FreezeTimeout, "bound on waiting for a cgroup to freeze")
	fs.StringVar(&f.Policy.KillMode, "kill-mode", f.Policy.KillMode, "kill rung: largest (one task) or cgroup (every task)")
	fs.DurationVar(&f.Policy.Cooldown, "cooldown", f.Policy.Cooldown, "no new ladder for a cgroup this soon after one ended")
	fs.StringVar(&f.Policy.PausedAction, "paused-action", "", "act as the userspace OOM handler of v1 oom_kill_disable cgroups: raise-limit or kill (default: report only)")
	fs.DurationVar(&f.Policy.RevertHold, "revert-hold", f.Policy.RevertHold, "raise-limit: revert after usage stayed below the original limit minus the margin this long")
	fs.IntVar(&f.MaxCgroups, "max-cgroups", watchdog.DefaultMaxCgroups, "bound on the number of cgroups watched")
	fs.IntVar(&f.MaxPerSubtree, "max-per-subtree", watchdog.DefaultMaxPerSubtree, "bound on the cgroups watched in one container (or, outside containers, one top-level cgroup); at most --max-cgroups")
	fs.StringVar(&f.StateDir, "state-dir", config.DefaultStateDir, "where raised limits, the incident journal and spooled alerts survive restarts (\"\": memory only)")
	fs.IntVar(&f.MaxActions, "max-actions-per-minute", 30, "global bound on changes to the host")
	fs.StringVar(&f.MetricsListen, "metrics-listen", "127.0.0.1:9731", "Prometheus /metrics and /healthz address (\"\": off)")
	fs.StringVar(&f.statusSocket, "status-socket", statusd.DefaultSocket, "unix socket for oomwatch status (\"\": off)")
	fs.StringVar(&f.runtimeState, "runtime-state-root", "/", "filesystem root under which Docker's and Podman's own state (/var/lib/docker, /var/lib/containers) is read to name the container of an incident (\"\": the short id only)")
	fs.DurationVar(&f.riskEvery, "risk-every", watchdog.DefaultRiskEvery, "how often to re-check where an OOM would loop (every task unkillable under a limit); 0: never")
	fileFlags(c, "config", "status-socket")
	dirFlags(c, "state-dir", "runtime-state-root")
	choices(c, "log-level", "debug", "info", "warn", "error")
	choices(c, "kill-mode", "largest", "cgroup")
	choices(c, "paused-action", "raise-limit", "kill")
	choices(c, "ladder", policy.Rungs...)
}

// runMain sets up logging and signals and runs the daemon.
func runMain(stderr io.Writer, f runFlags) error {
	lvl, err := zerolog.ParseLevel(f.level)
	if err != nil || f.level == "" {
		return usageErr("--log-level %q: want debug, info, warn or error", f.level)
	}
	if f.riskEvery < 0 {
		return usageErr("--risk-every %v: want 0 (never) or more", f.riskEvery)
	}
	// Milliseconds: an OOM loop lives for tens of milliseconds, and the
	// order of detection, action and kill should be readable from the log.
	zerolog.TimeFieldFormat = logTimeFormat
	log := zerolog.New(stderr).Level(lvl).With().Timestamp().Logger()
	if w, ok := systemd.JournalWriter(); ok {
		// Under systemd: structured journal fields; journald stamps the time.
		log = zerolog.New(w).Level(lvl)
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	return run(ctx, log, f)
}

// logTimeFormat is RFC 3339 with milliseconds, in UTC or local offset.
const logTimeFormat = "2006-01-02T15:04:05.000Z07:00"

// loadConfig reads the config and checks that the flags laid over it still
// make valid settings.
func (f *runFlags) loadConfig(load func() (*config.Config, error)) (*config.Config, alert.Config, error) {
	cfg, err := load()
	if err != nil {
		return nil, alert.Config{}, configErr(err)
	}
	if err := f.Check(cfg); err != nil {
		return nil, alert.Config{}, &exitError{code: exitUsage, err: err}
	}
	return cfg, cfg.Alerts(), nil
}

// configErr gives an invalid config file (a *config.Error: syntax, values,
// ownership) its own exit status, so that the unit's
// RestartPreventExitStatus stops systemd from restarting into it forever.
func configErr(err error) error {
	var ce *config.Error
	if errors.As(err, &ce) {
		return &exitError{code: exitConfig, err: err}
	}
	return err
}

func run(ctx context.Context, log zerolog.Logger, f runFlags) error {
	explicit := f.Set["config"]
	cfg, acfg, err := f.loadConfig(func() (*config.Config, error) { return config.Load(f.configPath, explicit) })
	if err != nil {
		return err
	}
	holder := config.NewHolder(cfg, config.LoadOptions{Explicit: explicit, RequireRootOwned: os.Geteuid() == 0})
	g := f.Global(cfg.Global())

	// Before anything reads a cgroup path or starts a goroutine: this may
	// re-execute the process.
	joined, err := hostCgroupNamespace(procfs.New(f.roots.procRoot), syscall.Exec)
	if err != nil {
		return err
	}
	h, proc, err := f.roots.open()
	if err != nil {
		return err
	}
	describeHost(log, h.String())
	if from, to, ok := strings.Cut(joined, ":"); ok {
		log.Info().Str("event", "cgroupns_joined").Str("from", "cgroup:["+from+"]").Str("to", "cgroup:["+to+"]").
			Msg("oomwatch was started in a private cgroup namespace and joined the host's: cgroup paths are the host's")
	}

	// The status socket first: a second daemon exits before arming anything.
	var sock *statusd.Server
	if f.statusSocket != "" {
		if sock, err = statusd.Listen(f.statusSocket); err != nil {
			return err
		}
	}
	klogState := "reading /dev/kmsg"
	klog, kerr := kmsg.Open(kmsg.Options{})
	if kerr != nil {
		klogState, klog = kerr.Error(), nil
		log.Warn().Err(kerr).Msg("kernel log evidence off")
	} else {
		kctx, kcancel := context.WithCancel(ctx)
		kdone := make(chan struct{})
		go func() {
			defer close(kdone)
			if err := klog.Run(kctx); err != nil {
				log.Warn().Err(err).Msg("kernel log reader stopped")
			}
		}()
		defer func() { kcancel(); <-kdone; klog.Close() }()
	}
	var hist *history.Async
	journalState := "off (no state directory)"
	if g.StateDir != "" {
		j := history.Open(g.StateDir, history.Options{})
		journalState = j.Path()
		hist = history.NewAsync(j, 256, func(err error) {
			if err != nil {
				log.Error().Err(err).Msg("incident journal not written; oomwatch keeps working")
			} else {
				log.Info().Msg("incident journal writable again")
			}
		})
		defer hist.Close()
		hist.Append(func() history.Record { return history.Start(version, os.Getpid()) })
	}
	tracker := statusd.NewTracker()

	host, _ := os.Hostname()
	disp := &report.Alerts{}
	if d, err := newDispatcher(acfg, g.StateDir, log); err != nil {
		return err
	} else if d != nil {
		disp.Store(d)
	}
	defer func() {
		if d := disp.Load(); d != nil {
			cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer ccancel()
			_ = d.Close(cctx)
		}
	}()

	settings := func(cg string) (string, policy.Options) {
		r := holder.Current().For(cg)
		_, o := f.Apply(r.Detector, r.Policy)
		return r.Rule, o
	}
	topParams, topOpts := f.Apply(cfg.TopLevel().Detector, cfg.TopLevel().Policy)
	// Limits of systemd units (.service, .scope) change through systemd's
	// D-Bus API, so systemd does not put the old value back.
	units := &systemd.Units{}
	defer units.Close()
	fan := &report.Fanout{Host: host, Alerts: disp, Status: tracker, Journal: hist}
	if klog != nil {
		fan.Kernel = klog
	}
	pol, err := policy.New(ctx, policy.Config{CG: h, Proc: proc, Options: topOpts, Settings: settings,
		StateDir: g.StateDir, MaxActionsPerMinute: g.MaxActionsPerMinute, Units: units, Report: fan}, log.With().Str("component", "policy").Logger())
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	sd, err := systemd.NewNotifier()
	if err != nil {
		return err
	}
	var w *watchdog.Watchdog
	var risk *watchdog.RiskMonitor
	var riskDone chan struct{} // set by Ready when the risk monitor runs
	riskCtx, cancelRisk := context.WithCancel(ctx)
	defer cancelRisk()
	status := func() string {
		st := w.Stats()
		return fmt.Sprintf("watching %d memory cgroups (cgroup v%d), %d open incidents", st.Watched, h.Version, st.OpenIncidents)
	}
	wcfg := watchdog.Config{
		CG: h, Proc: proc, Detector: topParams, MaxCgroups: g.MaxCgroups, MaxPerSubtree: g.MaxPerSubtree,
		Ignore:             watchdog.OwnCgroup(proc, h, os.Getpid()),
		ForcedChargeKernel: watchdog.KernelForcesCharge(proc.KernelRelease()),
		ParamsFor: func(cg string) watchdog.Params {
			r := holder.Current().For(cg)
			p, _ := f.Apply(r.Detector, r.Policy)
			return p
		},
		Ready: func(n int) {
			if event, msg := h.ViewWarning(n); msg != "" {
				log.Warn().Str("event", event).Str("hierarchy", h.String()).Msg(msg)
			}
			if err := sd.Ready(status()); err != nil {
				log.Warn().Err(err).Msg("sd_notify READY failed")
			}
			if f.riskEvery > 0 {
				riskDone = make(chan struct{})
				go func() { defer close(riskDone); risk.Run(riskCtx) }()
			}
		},
	}
	if f.runtimeState != "" {
		wcfg.Namer = ctrstate.Reader{Root: f.runtimeState}
	}
	if f.riskEvery > 0 {
		wcfg.RiskHint = func(cg string) { risk.Hint(cg) } // risk is set before Run
	}
	// Pings come from the event loop itself: a stuck loop stops pinging and
	// systemd restarts the daemon. Without WatchdogSec the loop sleeps.
	if every := sd.PingEvery(); every > 0 {
		wcfg.Tick = func() { _ = sd.Ping(status()) }
		wcfg.TickEvery = every
	}
	w, err = watchdog.New(wcfg, pol, log.With().Str("component", "watchdog").Logger())
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	risk = &watchdog.RiskMonitor{List: w, Insp: watchdog.Inspector{CG: h, Proc: proc}, Every: f.riskEvery,
		Events: fan, Log: log.With().Str("component", "risk").Logger()}
	if sock != nil {
		answer := &report.Status{Watchdog: w, CG: h, Raised: pol, Alerts: disp, Tracker: tracker,
			Base: statusd.Status{Version: version, PID: os.Getpid(), Started: startTime, DryRun: topOpts.DryRun, Ladder: topOpts.Ladder,
				CgroupVersion: h.Version, Layout: h.Layout, Hierarchy: h.String(),
				Roots:     statusd.Roots{Memory: h.Root, Freezer: h.Freezer, Proc: f.roots.procRoot},
				KernelLog: klogState, Journal: journalState, StateDir: g.StateDir}}
		if f.riskEvery > 0 {
			answer.Risk = risk
		}
		sdone := make(chan struct{})
		go func() {
			defer close(sdone)
			_ = sock.Serve(ctx, func(req statusd.Request) statusd.Status { return answer.Answer(ctx, req) })
		}()
		defer func() { <-sdone }() // Serve returns once ctx is cancelled
	}
	m := metrics.New(version, w, disp)
	if f.riskEvery > 0 {
		m.SetRisk(risk)
	}
	fan.Metrics = m // before Run: no incident is reported yet
	if g.MetricsListen != "" {
		addr, err := m.Serve(ctx, g.MetricsListen)
		if err != nil {
			return err
		}
		log.Info().Str("listen", addr.String()).Msg("serving /metrics and /healthz")
	}

	// SIGHUP: reload; a bad file is reported and the old config stays.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
			}
			_ = sd.Reloading()
			reload(log, &f, holder, w, disp, g.StateDir)
			if f.riskEvery > 0 {
				// A sink that just opted in learns of the risks found
				// before; the others have each episode already.
				for _, r := range risk.AtRisk() {
					fan.RiskFound(r)
				}
			}
			_ = sd.Ready(status())
		}
	}()

	log.Info().Str("version", version).Int("pid", os.Getpid()).Str("config", configName(cfg)).
		Strs("rules", cfg.RuleNames()).Bool("dry_run", topOpts.DryRun).Strs("ladder", topOpts.Ladder).
		Dur("window", topParams.Window).Uint64("min_ooms", topParams.MinOOMs).Msg("oomwatch starting")
	logWarnings(log, cfg)
	err = w.Run(ctx)
	_ = sd.Stopping()
	if riskDone != nil {
		cancelRisk()
		<-riskDone
	}
	pol.Wait()
	if err != nil {
		return err
	}
	log.Info().Dur("uptime", time.Since(startTime)).Msg("oomwatch stopped")
	return nil
}

func configName(c *config.Config) string {
	if c.Path == "" {
		return "built-in defaults"
	}
	return c.Path
}

func reload(log zerolog.Logger, f *runFlags, holder *config.Holder, w *watchdog.Watchdog, disp *report.Alerts, stateDir string) {
	path := f.configPath
	cfg, acfg, err := f.loadConfig(func() (*config.Config, error) {
		return config.LoadWith(path, config.LoadOptions{Explicit: f.Set["config"], RequireRootOwned: os.Geteuid() == 0})
	})
	if err != nil {
		log.Error().Str("event", "reload_failed").Err(err).Msg("config reload failed: the old config stays in force")
		return
	}
	if err := holder.Set(cfg); err != nil {
		log.Error().Str("event", "reload_failed").Err(err).Msg("config reload failed: the old config stays in force")
		return
	}
	w.Reconfigure()
	// One dispatcher for the daemon's life: each sink's spool, queue and
	// in-flight delivery stay with it and only its settings change (a second
	// dispatcher on the same spool would deliver its files again).
	if d := disp.Load(); d != nil {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = d.Reconfigure(cctx, acfg)
		cancel()
	} else if d, err = newDispatcher(acfg, stateDir, log); d != nil {
		disp.Store(d)
	}
	if err != nil {
		log.Error().Err(err).Msg("alert sinks not reloaded: the old ones stay")
	}
	log.Info().Str("event", "reloaded").Str("config", configName(cfg)).Strs("rules", cfg.RuleNames()).Msg("config reloaded")
	logWarnings(log, cfg)
}

// logWarnings logs what the config holds that is likely a mistake (rules
// that can never apply), one line each, as check-config prints it.
func logWarnings(log zerolog.Logger, cfg *config.Config) {
	for _, w := range cfg.Warnings() {
		log.Warn().Str("event", "config_warning").Str("config", cfg.Path).Int("line", w.Line).Msg(w.Error())
	}
}

func newDispatcher(ac alert.Config, stateDir string, log zerolog.Logger) (*alert.Dispatcher, error) {
	if len(ac.Exec)+len(ac.Webhook)+len(ac.Alertmanager)+len(ac.PagerDuty) == 0 {
		return nil, nil
	}
	return alert.New(ac, alert.Options{StateDir: stateDir, Version: version}, log.With().Str("component", "alert").Logger())
}

// describeHost logs how containerd/cgroups sees the host next to what
// oomwatch chose, and the cgroup oomwatch itself runs in.
func describeHost(log zerolog.Logger, chosen string) {
	mode := map[cgroups.CGMode]string{cgroups.Legacy: "legacy", cgroups.Hybrid: "hybrid", cgroups.Unified: "unified", cgroups.Unavailable: "unavailable"}[cgroups.Mode()]
	ev := log.Info().Str("hierarchy", chosen).Str("host_cgroup_mode", mode)
	if v1, v2, err := cgroups.ParseCgroupFileUnified("/proc/self/cgroup"); err == nil {
		own := v2
		if p, ok := v1["memory"]; ok {
			own = p
		}
		ev = ev.Str("own_cgroup", own)
	}
	ev.Msg("cgroup layout")
}

var startTime = time.Now()
