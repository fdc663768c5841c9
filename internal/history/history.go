// Package history is the incident journal: every incident event (opened
// with its evidence, the actions and their results, resolved and why) as one
// JSON line in STATE_DIR/incidents.jsonl, read back by `oomwatch incidents`.
//
// Crash safety: each line goes out in a single write(2) on an O_APPEND file
// followed by fsync. A torn last line (crash, full disk) fails to decode and
// is skipped on read; the writer starts a fresh line after it on reopen.
// Size: the file rotates at MaxSize into incidents.jsonl.1 … .Keep.
package history

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/oomwatch/oomwatch/policy"
	"github.com/oomwatch/oomwatch/watchdog"
)

// FileName is the journal's name in the state directory.
const FileName = "incidents.jsonl"

// Defaults.
const (
	DefaultMaxSize = 4 << 20
	DefaultKeep    = 3
	// MaxRecord bounds one line; the kernel log is trimmed to fit.
	MaxRecord = 64 << 10
	maxKeep   = 9
)

// Record types.
const (
	TypeOpened   = "opened"
	TypeActions  = "actions"
	TypeResolved = "resolved"
	// TypeStart marks a daemon start: incidents still open before it were
	// abandoned by the old daemon (it never saw them resolve).
	TypeStart = "daemon_start"
)

// Record is one line of the journal.
type Record struct {
	Type string    `json:"type"`
	Time time.Time `json:"time"`
	ID   string    `json:"id,omitempty"`

	// opened
	Verdict   string `json:"verdict,omitempty"`
	Cgroup    string `json:"cgroup,omitempty"`
	Container string `json:"container,omitempty"`
	// the runtime's name of a container known by its id (Docker, Podman)
	ContainerName string               `json:"container_name,omitempty"`
	Unit          string               `json:"unit,omitempty"`
	Rule          string               `json:"rule,omitempty"`
	Started       time.Time            `json:"started,omitzero"`
	WindowMS      int64                `json:"window_ms,omitempty"`
	OOMEvents     uint64               `json:"oom_events,omitempty"`
	OOMKills      uint64               `json:"oom_kills,omitempty"`
	Limit         uint64               `json:"limit_bytes,omitempty"` // ^uint64(0): no limit
	Usage         uint64               `json:"usage_bytes,omitempty"`
	Origin        *watchdog.Origin     `json:"origin,omitempty"`
	Candidates    []watchdog.Candidate `json:"candidates,omitempty"` // the largest MaxCandidates, without their origins

	// actions
	Actions []policy.Action `json:"actions,omitempty"` // one per record: the announcement (pending) or the result of one action
	Outcome policy.Outcome  `json:"outcome,omitempty"` // the record of the ladder's end: how it ended

	// resolved
	Why string `json:"why,omitempty"`

	// opened and resolved: the kernel's own lines (kmsg evidence)
	KernelLog []string `json:"kernel_log,omitempty"`

	// daemon_start
	Version string `json:"version,omitempty"`
	PID     int    `json:"pid,omitempty"`
}

// Options bound the journal.
type Options struct {
	MaxSize int64 // rotate when the file would grow past this; default DefaultMaxSize
	Keep    int   // rotated files kept; default DefaultKeep, at most 9
}

// Journal appends records. Safe for concurrent use. Nothing is opened until
// the first Append, so a read-only or missing state directory costs nothing
// until there is something to write, and then an error per Append.
type Journal struct {
	dir  string
	opts Options

	mu    sync.Mutex
	f     *os.File
	size  int64
	dirty bool // written since the last fsync
}

// Open returns a journal in dir.
func Open(dir string, opts Options) *Journal {
	if opts.MaxSize <= 0 {
		opts.MaxSize = DefaultMaxSize
	}
	if opts.Keep <= 0 {
		opts.Keep = DefaultKeep
	}
	if opts.Keep > maxKeep {
		opts.Keep = maxKeep
	}
	return &Journal{dir: dir, opts: opts}
}

// Path is the journal file.
func (j *Journal) Path() string { return filepath.Join(j.dir, FileName) }

// Append writes r as one line: one write, then fsync. On error (read-only
// or full file system) nothing is retried; the next Append tries again.
func (j *Journal) Append(r Record) error {
	if err := j.write(r); err != nil {
		return err
	}
	return j.Sync()
}

// Sync makes what was written durable (fsync), if anything was.
func (j *Journal) Sync() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.syncLocked()
}

func (j *Journal) syncLocked() error {
	if j.f == nil || !j.dirty {
		return nil
	}
	if err := j.f.Sync(); err != nil {
		j.f.Close()
		j.f = nil
		return fmt.Errorf("fsync %s: %w", j.Path(), err)
	}
	j.dirty = false
	return nil
}

// write appends r as one line with one write(2), without fsync: the line
// is then in the page cache and survives the death of oomwatch (SIGKILL),
// not a crash of the machine until the next Sync.
func (j *Journal) write(r Record) error {
	if r.Time.IsZero() {
		r.Time = time.Now()
	}
	line, err := encode(r)
	if err != nil {
		return err
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f != nil && j.size > 0 && j.size+int64(len(line)) > j.opts.MaxSize {
		if err := j.rotate(); err != nil {
			return err
		}
	}
	if j.f == nil {
		if err := j.open(); err != nil {
			return err
		}
		if j.size > 0 && j.size+int64(len(line)) > j.opts.MaxSize {
			if err := j.rotate(); err != nil {
				return err
			}
		}
	}
	n, err := j.f.Write(line)
	if err != nil {
		// A short write leaves a torn line; reopen repairs it.
		j.f.Close()
		j.f = nil
		return fmt.Errorf("append to %s: %w", j.Path(), err)
	}
	j.size += int64(n)
	j.dirty = true
	return nil
}

// encode marshals r, trimming the kernel log (then the candidates) so the
// line stays under MaxRecord.
func encode(r Record) ([]byte, error) {
	for {
		b, err := json.Marshal(r)
		if err != nil {
			return nil, fmt.Errorf("encode incident record: %w", err)
		}
		if len(b) < MaxRecord {
			return append(b, '\n'), nil
		}
		switch {
		case len(r.KernelLog) > 0:
			r.KernelLog = r.KernelLog[:len(r.KernelLog)/2]
		case len(r.Candidates) > 0:
			r.Candidates = r.Candidates[:len(r.Candidates)/2]
		default:
			return nil, fmt.Errorf("encode incident record: %d bytes, over %d", len(b), MaxRecord)
		}
	}
}

func (j *Journal) open() error {
	if err := os.MkdirAll(j.dir, 0o700); err != nil {
		return fmt.Errorf("create state directory: %w", err)
	}
	f, err := os.OpenFile(j.Path(), os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("open incident journal: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("stat %s: %w", j.Path(), err)
	}
	size := st.Size()
	// A torn last line (crash mid-write): end it, so the next record
	// starts on a line of its own and stays readable.
	if size > 0 {
		var last [1]byte
		if _, err := f.ReadAt(last[:], size-1); err != nil {
			f.Close()
			return fmt.Errorf("read %s: %w", j.Path(), err)
		}
		if last[0] != '\n' {
			n, err := f.Write([]byte{'\n'})
			if err != nil {
				f.Close()
				return fmt.Errorf("repair torn line in %s: %w", j.Path(), err)
			}
			size += int64(n)
		}
	}
	j.f, j.size = f, size
	return nil
}

// rotate shifts incidents.jsonl → .1 → .2 … and drops the oldest.
func (j *Journal) rotate() error {
	if err := j.syncLocked(); err != nil {
		return err
	}
	if j.f != nil {
		j.f.Close()
		j.f = nil
	}
	base := j.Path()
	_ = os.Remove(base + "." + strconv.Itoa(j.opts.Keep))
	for i := j.opts.Keep - 1; i >= 1; i-- {
		if err := os.Rename(base+"."+strconv.Itoa(i), base+"."+strconv.Itoa(i+1)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("rotate incident journal: %w", err)
		}
	}
	if err := os.Rename(base, base+".1"); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("rotate incident journal: %w", err)
	}
	if d, err := os.Open(j.dir); err == nil { // make the renames durable
		_ = d.Sync()
		d.Close()
	}
	return j.open()
}

// Close closes the file. Append after Close reopens it.
func (j *Journal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return nil
	}
	serr := j.syncLocked()
	if j.f == nil {
		return serr
	}
	err := j.f.Close()
	j.f = nil
	return errors.Join(serr, err)
}

// Incident is an incident as the journal tells it: its records merged.
type Incident struct {
	ID            string               `json:"id"`
	Verdict       string               `json:"verdict,omitempty"`
	Cgroup        string               `json:"cgroup,omitempty"`
	Container     string               `json:"container,omitempty"`
	ContainerName string               `json:"container_name,omitempty"`
	Unit          string               `json:"unit,omitempty"`
	Rule          string               `json:"rule,omitempty"`
	Started       time.Time            `json:"started,omitzero"`
	WindowMS      int64                `json:"window_ms,omitempty"`
	OOMEvents     uint64               `json:"oom_events"`
	OOMKills      uint64               `json:"oom_kills"`
	Limit         uint64               `json:"limit_bytes,omitempty"`
	Usage         uint64               `json:"usage_bytes,omitempty"`
	Origin        *watchdog.Origin     `json:"origin,omitempty"`
	Candidates    []watchdog.Candidate `json:"candidates,omitempty"` // the largest MaxCandidates, without their origins
	Actions       []policy.Action      `json:"actions,omitempty"`
	Outcome       policy.Outcome       `json:"outcome,omitempty"`
	// State: "open", "resolved", or "abandoned" (the daemon restarted
	// before it resolved).
	State      string    `json:"state"`
	ResolvedAt time.Time `json:"resolved_at,omitzero"`
	Why        string    `json:"why,omitempty"`
	KernelLog  []string  `json:"kernel_log,omitempty"`
	last       time.Time
}

// Incident states.
const (
	StateOpen      = "open"
	StateResolved  = "resolved"
	StateAbandoned = "abandoned"
)

// Read reads the journal in dir (rotated files included) and returns the
// incidents, newest first. A missing journal is no incidents. Lines that do
// not decode (a torn last line) are skipped.
func Read(dir string) ([]Incident, error) {
	incs, _, err := ReadCount(dir)
	return incs, err
}

// ReadCount is Read, also saying how many lines were skipped.
func ReadCount(dir string) ([]Incident, int, error) {
	base := filepath.Join(dir, FileName)
	var files []string
	for i := maxKeep; i >= 1; i-- { // oldest first
		files = append(files, base+"."+strconv.Itoa(i))
	}
	files = append(files, base)
	byID := map[string]*Incident{}
	var starts []time.Time
	skipped := 0
	for _, name := range files {
		f, err := os.Open(name)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, skipped, fmt.Errorf("read incident journal: %w", err)
		}
		n, err := scan(f, func(r Record) {
			if r.Type == TypeStart {
				starts = append(starts, r.Time)
				return
			}
			merge(byID, r)
		})
		f.Close()
		skipped += n
		if err != nil {
			return nil, skipped, fmt.Errorf("read %s: %w", name, err)
		}
	}
	out := make([]Incident, 0, len(byID))
	for _, inc := range byID {
		if inc.State == StateOpen {
			for _, s := range starts {
				if s.After(inc.last) {
					inc.State = StateAbandoned
					break
				}
			}
		}
		out = append(out, *inc)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].Started.Equal(out[j].Started) {
			return out[i].Started.After(out[j].Started)
		}
		return out[i].ID < out[j].ID
	})
	return out, skipped, nil
}

// scan decodes one record per line; it returns the lines skipped.
func scan(r io.Reader, fn func(Record)) (int, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	skipped := 0
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// Longer than any record we write: skip to the next newline.
			skipped++
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
			if err == io.EOF {
				return skipped, nil
			}
			if err != nil {
				return skipped, err
			}
			continue
		}
		if err == io.EOF {
			if len(line) > 0 {
				skipped++ // torn: no newline, the write never finished
			}
			return skipped, nil
		}
		if err != nil {
			return skipped, err
		}
		if len(line) <= 1 {
			continue // the newline that ends a repaired torn line
		}
		var rec Record
		if json.Unmarshal(line, &rec) != nil || rec.Type == "" {
			skipped++
			continue
		}
		fn(rec)
	}
}

func merge(byID map[string]*Incident, r Record) {
	if r.ID == "" {
		return
	}
	inc := byID[r.ID]
	if inc == nil {
		inc = &Incident{ID: r.ID, State: StateOpen}
		byID[r.ID] = inc
	}
	if r.Time.After(inc.last) {
		inc.last = r.Time
	}
	switch r.Type {
	case TypeOpened:
		inc.Verdict, inc.Cgroup, inc.Container, inc.ContainerName, inc.Unit, inc.Rule = r.Verdict, r.Cgroup, r.Container, r.ContainerName, r.Unit, r.Rule
		inc.Started, inc.WindowMS, inc.OOMEvents, inc.OOMKills = r.Started, r.WindowMS, r.OOMEvents, r.OOMKills
		inc.Limit, inc.Usage, inc.Origin, inc.Candidates = r.Limit, r.Usage, r.Origin, r.Candidates
		if len(r.KernelLog) > 0 {
			inc.KernelLog = r.KernelLog
		}
	case TypeActions:
		inc.Actions = append(inc.Actions, r.Actions...)
		if r.Outcome != "" {
			inc.Outcome = r.Outcome
		}
	case TypeResolved:
		inc.State, inc.ResolvedAt, inc.Why = StateResolved, r.Time, r.Why
		if len(r.KernelLog) > len(inc.KernelLog) {
			inc.KernelLog = r.KernelLog // seen later: the fuller account
		}
	}
	if inc.Cgroup == "" {
		inc.Cgroup = r.Cgroup // the opened record was rotated away
	}
	if inc.Started.IsZero() && !r.Started.IsZero() {
		inc.Started = r.Started
	}
}
