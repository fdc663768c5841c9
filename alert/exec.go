package alert

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// Exec hooks.
//
// A hook is run without a shell from its argv; the document is its stdin.
// Its environment is built from scratch: PATH (default
// /usr/sbin:/usr/bin:/sbin:/bin), LANG (default C.UTF-8) and TZ when set,
// the names the config lists, and
//
//	OOMWATCH_EVENT      event_id
//	OOMWATCH_INCIDENT   incident_id
//	OOMWATCH_TYPE       detected | remediated | remediation-failed | resolved | risk
//	OOMWATCH_STATUS     firing | resolved
//	OOMWATCH_SEVERITY   critical | warning | info
//	OOMWATCH_CGROUP     the cgroup path (untrusted text: quote it)
//	OOMWATCH_CONTAINER  container name, may be empty (untrusted)
//	OOMWATCH_UNIT       systemd unit, may be empty
//	OOMWATCH_HOST       host name
//
// NOTIFY_SOCKET, WATCHDOG_*, LISTEN_* and the like are never passed: a hook
// must not be able to ping the daemon's systemd watchdog or claim its
// sockets.
//
// The hook gets its own process group. At its timeout the whole group is
// killed (SIGKILL to -pgid), and so is whatever is left in the group when
// the hook exits: nothing a hook starts outlives it unless it leaves the
// group on purpose (setsid, systemd-run). stdout and stderr are captured,
// 64 KiB each at most, and logged.
//
// oom_score_adj: the daemon runs at -900 and children inherit it. Right
// after the hook is started, and before its stdin receives the document,
// oomwatch writes 0 to /proc/<hook>/oom_score_adj (raising needs no
// privilege). So everything the hook does after reading its stdin, and
// every child it starts after that, runs at 0; only the microseconds
// between exec and that write run at the inherited value. Go has no
// pre-exec hook in os/exec; a re-exec trampoline would close that window at
// the cost of a second exec per alert, and is not worth it.
//
// Exit status 0 is success; anything else, a timeout included, is a failure
// retried up to max_attempts (default 3) with backoff, never more.
type execSink struct {
	argv     []string
	passEnv  []string
	log      zerolog.Logger
	adjWarn  atomic.Bool
	procRoot string
}

// maxHookOutput caps each of stdout and stderr.
const maxHookOutput = 64 << 10

func newExecSink(c ExecConfig, _ time.Duration, log zerolog.Logger) *execSink {
	return &execSink{argv: append([]string(nil), c.Command...), passEnv: append([]string(nil), c.Env...), log: log, procRoot: "/proc"}
}

func (e *execSink) close() {}

// env builds the hook's environment: the allowlist, then OOMWATCH_*.
func (e *execSink) env(doc Document) []string {
	var env []string
	set := map[string]bool{}
	add := func(k, v string) {
		if set[k] {
			return
		}
		set[k] = true
		env = append(env, k+"="+strings.ReplaceAll(v, "\x00", ""))
	}
	for _, k := range append([]string{"PATH", "LANG", "TZ"}, e.passEnv...) {
		if v, ok := os.LookupEnv(k); ok {
			add(k, v)
		}
	}
	add("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
	add("LANG", "C.UTF-8")
	add("OOMWATCH_EVENT", doc.EventID)
	add("OOMWATCH_INCIDENT", doc.IncidentID)
	add("OOMWATCH_TYPE", doc.Type)
	add("OOMWATCH_STATUS", doc.Status)
	add("OOMWATCH_SEVERITY", doc.Severity)
	add("OOMWATCH_CGROUP", doc.Cgroup)
	add("OOMWATCH_CONTAINER", doc.Container)
	add("OOMWATCH_CONTAINER_NAME", doc.ContainerName)
	add("OOMWATCH_UNIT", doc.Unit)
	add("OOMWATCH_HOST", doc.Host)
	return env
}

func (e *execSink) deliver(ctx context.Context, doc Document) error {
	body, err := json.Marshal(doc)
	if err != nil {
		return permanent(err)
	}
	cmd := exec.CommandContext(ctx, e.argv[0], e.argv[1:]...)
	cmd.Env = e.env(doc)
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return killGroup(cmd.Process.Pid) }
	// Wait returns this long after the hook exits or is killed even if
	// something outside the group still holds its output pipes.
	cmd.WaitDelay = time.Second
	var stdout, stderr cappedBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return temporary(fmt.Errorf("hook %s: %w", e.argv[0], err), 0)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return temporary(fmt.Errorf("start hook %s: %w", e.argv[0], err), 0)
	}
	pid := cmd.Process.Pid
	if err := e.resetAdj(pid); err != nil && e.adjWarn.CompareAndSwap(false, true) {
		e.log.Warn().Err(err).Msg("hook oom_score_adj not reset: hooks run at oomwatch's own oom_score_adj")
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		stdin.Write(body) // EPIPE when the hook ignores its stdin: fine
		stdin.Close()
	}()
	// Kill what the hook left in its group while the hook is an unreaped
	// zombie: its pid, hence the group id, cannot be reused until Wait
	// reaps it, so this can never hit an unrelated group.
	waitExited(pid)
	killGroup(pid)
	werr := cmd.Wait()
	wg.Wait()
	took := time.Since(start)
	ev := func(l *zerolog.Event) *zerolog.Event {
		return l.Int("pid", pid).Dur("took", took).Str("stdout", stdout.String()).Str("stderr", stderr.String()).
			Bool("output_truncated", stdout.truncated || stderr.truncated).Str("event_id", doc.EventID)
	}
	switch {
	case ctx.Err() != nil:
		ev(e.log.Warn()).Msg("hook timed out: process group killed")
		return temporary(fmt.Errorf("hook %s: killed after %v: %w", e.argv[0], took.Round(time.Millisecond), ctx.Err()), 0)
	case werr != nil:
		ev(e.log.Warn()).Err(werr).Msg("hook failed")
		var ee *exec.ExitError
		if errors.As(werr, &ee) {
			return temporary(fmt.Errorf("hook %s: %s", e.argv[0], ee.ProcessState), 0)
		}
		return temporary(fmt.Errorf("hook %s: %w", e.argv[0], werr), 0)
	}
	ev(e.log.Debug()).Msg("hook ran")
	return nil
}

// resetAdj writes 0 to the hook's oom_score_adj.
func (e *execSink) resetAdj(pid int) error {
	return os.WriteFile(e.procRoot+"/"+strconv.Itoa(pid)+"/oom_score_adj", []byte("0"), 0)
}

// waitExited blocks until pid has exited, without reaping it.
func waitExited(pid int) {
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err != syscall.EINTR {
			return
		}
	}
}

// killGroup SIGKILLs the process group led by pid; an empty group is not
// an error.
func killGroup(pid int) error {
	if pid <= 1 {
		return nil // never -0 (our own group) or -1 (everything)
	}
	err := syscall.Kill(-pid, syscall.SIGKILL)
	if errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return err
}

// cappedBuffer keeps the first maxHookOutput bytes and counts the rest.
type cappedBuffer struct {
	mu        sync.Mutex
	b         []byte
	truncated bool
}

func (c *cappedBuffer) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	room := maxHookOutput - len(c.b)
	if len(p) > room {
		c.truncated = true
		c.b = append(c.b, p[:max(room, 0)]...)
	} else {
		c.b = append(c.b, p...)
	}
	return len(p), nil
}

func (c *cappedBuffer) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return clean(string(c.b), maxHookOutput)
}
