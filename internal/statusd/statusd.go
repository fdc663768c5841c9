// Package statusd answers `oomwatch status`: a unix socket under the
// runtime directory (root-only: directory 0700, socket 0600, peer uid
// checked) that takes one JSON request, {"cmd":"status"}, and answers with
// the daemon's Status as one JSON document.
package statusd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/oomwatch/oomwatch/policy"
	"github.com/oomwatch/oomwatch/watchdog"
)

// DefaultSocket is where the daemon listens.
const DefaultSocket = "/run/oomwatch/oomwatch.sock"

// DefaultTimeout bounds a Query and the server's handling of one request.
const DefaultTimeout = 3 * time.Second

// MaxRecentActions is how many actions Status keeps.
const MaxRecentActions = 20

// Status is what the daemon reports.
type Status struct {
	Version       string         `json:"version"`
	PID           int            `json:"pid"`
	Started       time.Time      `json:"started"`
	DryRun        bool           `json:"dry_run"`
	Ladder        []string       `json:"ladder,omitempty"`
	CgroupVersion int            `json:"cgroup_version"`
	Layout        string         `json:"layout"`    // legacy, hybrid, unified, explicit
	Hierarchy     string         `json:"hierarchy"` // human description
	Roots         Roots          `json:"roots"`
	Watched       int            `json:"watched_cgroups"`
	OOMs          uint64         `json:"oom_events"`
	Kills         uint64         `json:"oom_kills"`
	Incidents     uint64         `json:"incidents"`
	LastEvent     time.Time      `json:"last_event,omitzero"`
	OpenIncidents []OpenIncident `json:"open_incidents"`
	RecentActions []Action       `json:"recent_actions"`
	Alerts        []SinkQueue    `json:"alerts"`
	KernelLog     string         `json:"kernel_log,omitempty"` // "reading /dev/kmsg" or why not
	Journal       string         `json:"journal,omitempty"`    // path, or its last error
	StateDir      string         `json:"state_dir"`            // "" when the daemon keeps no state

	// The watched cgroups the request selected (see Request), with a
	// summary of all of them.
	CgroupSummary watchdog.CgroupSummary  `json:"cgroup_summary"`
	Cgroups       []watchdog.CgroupStatus `json:"cgroups"`
}

// Roots are the filesystem roots in use.
type Roots struct {
	Memory  string `json:"memory"`
	Freezer string `json:"freezer,omitempty"`
	Proc    string `json:"proc"`
}

// OpenIncident is an incident not yet resolved.
type OpenIncident struct {
	ID        string `json:"id"`
	Cgroup    string `json:"cgroup"`
	Container string `json:"container,omitempty"`
	// ContainerName: the runtime's name of a container known by its id
	ContainerName string    `json:"container_name,omitempty"`
	Verdict       string    `json:"verdict"`
	Since         time.Time `json:"since"`
}

// Action is one action of a ladder, with when and where it ran.
type Action struct {
	Time     time.Time `json:"time"`
	Incident string    `json:"incident"`
	Cgroup   string    `json:"cgroup"`
	// the incident's container (OpenIncident's fields)
	Container     string `json:"container,omitempty"`
	ContainerName string `json:"container_name,omitempty"`
	policy.Action
}

// SinkQueue is one alert sink's queue.
type SinkQueue struct {
	Name    string `json:"name"`
	Kind    string `json:"kind"`
	Queued  int    `json:"queued"`
	Sent    uint64 `json:"sent"`
	Failed  uint64 `json:"failed"`
	Dropped uint64 `json:"dropped"`
}

// Request is what a client sends.
type Request struct {
	Cmd string `json:"cmd"`
	// Which watched cgroups to list: a glob on the path (the config's
	// glob syntax; "" all), only those at risk or with an open incident,
	// at most Rows of them (0: DefaultRows, at most MaxRows).
	Cgroups string `json:"cgroups,omitempty"`
	AtRisk  bool   `json:"at_risk,omitempty"`
	Rows    int    `json:"rows,omitempty"`
}

// DefaultRows and MaxRows bound the cgroups one answer lists.
const (
	DefaultRows = watchdog.DefaultStatusRows
	MaxRows     = 10000
)

// response is Status, or an error.
type response struct {
	Status
	Error string `json:"error,omitempty"`
}

// ErrRunning: another process answers on the socket.
var ErrRunning = errors.New("another oomwatch is running")

// ErrNotRunning: nothing listens on the socket.
var ErrNotRunning = errors.New("oomwatch is not running")

// Server is a listening status socket.
type Server struct {
	ln   *net.UnixListener
	path string
	uid  int
}

// Listen creates the runtime directory (0700) and the socket (0600). A
// socket file left by a dead daemon is removed; one that still answers
// means another oomwatch runs, and Listen refuses with ErrRunning.
func Listen(path string) (*Server, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create runtime directory: %w", err)
	}
	if st, err := os.Lstat(path); err == nil {
		if st.Mode().Type() != os.ModeSocket {
			return nil, fmt.Errorf("status socket %s exists and is not a socket: refusing to remove it", path)
		}
		c, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			c.Close()
			return nil, fmt.Errorf("status socket %s answers: %w", path, ErrRunning)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("check stale status socket %s: %w", path, err)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale status socket: %w", err)
		}
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	// Serve removes the file on shutdown; Close must not race it.
	ln.SetUnlinkOnClose(false)
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		os.Remove(path)
		return nil, fmt.Errorf("chmod status socket: %w", err)
	}
	return &Server{ln: ln, path: path, uid: os.Geteuid()}, nil
}

// Path is the socket path.
func (s *Server) Path() string { return s.path }

// Serve answers requests with provider(request) until ctx is done, then closes the
// listener, removes the socket and waits for open connections (each bounded
// by DefaultTimeout). provider is called from connection goroutines: it
// must be safe for concurrent use.
func (s *Server) Serve(ctx context.Context, provider func(Request) Status) error {
	var wg sync.WaitGroup
	stop := context.AfterFunc(ctx, func() { s.ln.Close() })
	defer stop()
	defer func() {
		s.ln.Close()
		os.Remove(s.path)
		wg.Wait()
	}()
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("accept on %s: %w", s.path, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.handle(c, provider)
		}()
	}
}

func (s *Server) handle(c *net.UnixConn, provider func(Request) Status) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(DefaultTimeout))
	enc := json.NewEncoder(c)
	// The socket is 0600, but a directory made by someone else could be
	// wider: check who is asking.
	if uid, ok := peerUID(c); !ok || (uid != 0 && uid != s.uid) {
		_ = enc.Encode(response{Error: "permission denied"})
		return
	}
	var req Request
	if err := json.NewDecoder(io.LimitReader(c, 4096)).Decode(&req); err != nil {
		_ = enc.Encode(response{Error: "bad request: want {\"cmd\":\"status\"}"})
		return
	}
	if req.Cmd != "status" {
		_ = enc.Encode(response{Error: fmt.Sprintf("unknown command %q: want status", req.Cmd)})
		return
	}
	if req.Rows < 0 {
		_ = enc.Encode(response{Error: fmt.Sprintf("rows %d: want 0 or more", req.Rows)})
		return
	}
	if req.Rows == 0 {
		req.Rows = DefaultRows
	}
	req.Rows = min(req.Rows, MaxRows)
	_ = enc.Encode(response{Status: provider(req)})
}

func peerUID(c *net.UnixConn) (int, bool) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, false
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil || cerr != nil {
		return 0, false
	}
	return int(cred.Uid), true
}

// Query asks the daemon at path for its status, within DefaultTimeout.
func Query(path string) (Status, error) {
	return QueryWith(path, Request{Cmd: "status"}, DefaultTimeout)
}

// QueryTimeout is Query with a bound of its own.
func QueryTimeout(path string, timeout time.Duration) (Status, error) {
	return QueryWith(path, Request{Cmd: "status"}, timeout)
}

// QueryWith sends req to the daemon at path, within timeout.
func QueryWith(path string, req Request, timeout time.Duration) (Status, error) {
	c, err := net.DialTimeout("unix", path, timeout)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			return Status{}, fmt.Errorf("no daemon at %s: %w", path, ErrNotRunning)
		}
		if errors.Is(err, os.ErrPermission) {
			return Status{}, fmt.Errorf("connect to %s: %w (the status socket is root-only)", path, err)
		}
		return Status{}, fmt.Errorf("connect to %s: %w", path, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return Status{}, fmt.Errorf("send status request: %w", err)
	}
	var r response
	if err := json.NewDecoder(io.LimitReader(c, 16<<20)).Decode(&r); err != nil {
		return Status{}, fmt.Errorf("read status from %s: %w", path, err)
	}
	if r.Error != "" {
		return Status{}, fmt.Errorf("daemon at %s: %s", path, r.Error)
	}
	return r.Status, nil
}

// Tracker keeps what Status reports of incidents: the open ones and the
// recent actions. Safe for concurrent use.
type Tracker struct {
	mu      sync.Mutex
	open    map[string]OpenIncident
	actions []Action // oldest first, at most MaxRecentActions
}

// NewTracker returns an empty tracker.
func NewTracker() *Tracker { return &Tracker{open: map[string]OpenIncident{}} }

// Opened records an open incident.
func (t *Tracker) Opened(o OpenIncident) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.open[o.ID] = o
}

// Resolved forgets an incident.
func (t *Tracker) Resolved(id string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.open, id)
}

// Acted records actions.
func (t *Tracker) Acted(acts ...Action) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.actions = append(t.actions, acts...)
	if n := len(t.actions) - MaxRecentActions; n > 0 {
		t.actions = append(t.actions[:0:0], t.actions[n:]...)
	}
}

// Fill sets the open incidents (oldest first) and recent actions (newest
// first) of s.
func (t *Tracker) Fill(s *Status) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s.OpenIncidents = make([]OpenIncident, 0, len(t.open))
	for _, o := range t.open {
		s.OpenIncidents = append(s.OpenIncidents, o)
	}
	sort.Slice(s.OpenIncidents, func(i, j int) bool {
		a, b := s.OpenIncidents[i], s.OpenIncidents[j]
		if !a.Since.Equal(b.Since) {
			return a.Since.Before(b.Since)
		}
		return a.ID < b.ID
	})
	s.RecentActions = make([]Action, 0, len(t.actions))
	for i := len(t.actions) - 1; i >= 0; i-- {
		s.RecentActions = append(s.RecentActions, t.actions[i])
	}
}
