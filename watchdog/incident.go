package watchdog

import (
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"sort"
	"time"

	"github.com/oomwatch/oomwatch/internal/cgroupfs"
	"github.com/oomwatch/oomwatch/internal/procfs"
)

// Verdict is what oomwatch concluded about a cgroup's OOMs.
type Verdict string

const (
	// VerdictLoop: repeated OOMs, no kill, and every task in the subtree is
	// unkillable (oom_score_adj -1000) or already exiting. The kernel will
	// retry forever.
	VerdictLoop Verdict = "loop"
	// VerdictStalled: repeated OOMs, no kill, yet there are killable tasks:
	// the victim is stuck, or the OOMs come from something no kill can fix.
	VerdictStalled Verdict = "stalled"
	// VerdictPaused: v1 oom_kill_disable=1 and under_oom: the kernel waits
	// for a userspace OOM handler by design.
	VerdictPaused Verdict = "paused"
	// VerdictForced: kill-less OOMs and usage above the limit: a 4.19–5.15
	// kernel forced the charge over the limit instead of looping. Reported;
	// no action (the limit is not holding, nothing is stuck).
	VerdictForced Verdict = "forced-charge"
	// VerdictKilled: OOMs with kills, the kernel coped. No action.
	VerdictKilled Verdict = "oom-killed"
)

// Candidate is one task of the incident's subtree, as the OOM killer sees it.
type Candidate struct {
	PID         int      `json:"pid"`
	PPID        int      `json:"ppid"`
	Comm        string   `json:"comm"`
	Cmdline     []string `json:"cmdline,omitempty"`
	UID         int      `json:"uid"`
	State       string   `json:"state"`
	RSS         uint64   `json:"rss_bytes"`
	OOMScoreAdj int      `json:"oom_score_adj"`
	OOMAdj      *int     `json:"oom_adj,omitempty"` // legacy, derived from oom_score_adj (procfs.Proc.OOMAdj)
	Cgroup      string   `json:"cgroup"`
	Unkillable  bool     `json:"unkillable"`
	Exiting     bool     `json:"exiting"`
	Origin      *Origin  `json:"origin,omitempty"` // only for unkillable tasks

	// CmdlineTruncated: the cmdline was longer than procfs.MaxCmdline
	// bytes; Cmdline holds its start and its last argument ends in
	// procfs.CmdlineCut.
	CmdlineTruncated bool `json:"cmdline_truncated,omitempty"`
}

// Origin is the process that leaked OOM protection: the highest ancestor of
// an unkillable task that is itself at -1000 while its own parent is not.
type Origin struct {
	PID         int      `json:"pid"`
	Comm        string   `json:"comm"`
	Cmdline     []string `json:"cmdline,omitempty"`
	OOMScoreAdj int      `json:"oom_score_adj"`
	ParentPID   int      `json:"parent_pid"`
	ParentComm  string   `json:"parent_comm,omitempty"`
	ParentAdj   int      `json:"parent_oom_score_adj"`
	Depth       int      `json:"depth"` // generations between the task and the origin; 0: the task itself

	CmdlineTruncated bool `json:"cmdline_truncated,omitempty"` // as in Candidate
}

func (o *Origin) String() string {
	if o == nil {
		return "unknown"
	}
	return fmt.Sprintf("pid %d (%s) at %d, parent pid %d (%s) at %d", o.PID, procfs.Safe(o.Comm), o.OOMScoreAdj, o.ParentPID, procfs.Safe(o.ParentComm), o.ParentAdj)
}

// Evidence is what the counters showed.
type Evidence struct {
	Window time.Duration `json:"window_ns"`
	OOMs   uint64        `json:"oom_events"`
	Kills  uint64        `json:"oom_kills"`
	Limit  uint64        `json:"limit_bytes"` // cgroupfs.Unlimited when none
	Usage  uint64        `json:"usage_bytes"`
	// Detection: from the episode's first OOM notification to the batch
	// that found the incident (0: the first one carried enough OOMs).
	Detection time.Duration `json:"detection_ns"`
}

// Incident is one OOM episode of one cgroup.
type Incident struct {
	ID        string  `json:"id"`
	Verdict   Verdict `json:"verdict"`
	Cgroup    string  `json:"cgroup"`              // the limit holder: the OOMs are charged here
	Container string  `json:"container,omitempty"` // from the cgroup path (LXC, Docker, Podman, k8s, nspawn)
	// ContainerName is the runtime's name of a container that Container
	// knows by its short id (Docker, Podman: what docker ps shows), from the
	// runtime's own state (Config.Namer); "" when unknown.
	ContainerName string      `json:"container_name,omitempty"`
	Unit          string      `json:"unit,omitempty"` // innermost systemd unit
	Version       int         `json:"cgroup_version"`
	Started       time.Time   `json:"started"`
	Evidence      Evidence    `json:"evidence"`
	Candidates    []Candidate `json:"candidates"`
	Origin        *Origin     `json:"origin,omitempty"` // of the largest unkillable task
}

// Inspector reads the tasks of a cgroup subtree from /proc.
type Inspector struct {
	CG       cgroupfs.Hierarchy
	Proc     procfs.FS
	MaxProcs int // bound on tasks inspected; <= 0 means 4096
	// MaxCgroups bounds the cgroups of the subtree whose tasks are read
	// (each costs a cgroup.procs read even when empty); <= 0 means 4096.
	MaxCgroups int
}

// Candidates returns every task in cg's subtree, largest RSS first. Tasks
// that exit while being read are skipped: that is normal. At MaxProcs tasks
// or MaxCgroups cgroups it stops and returns what it found: the cgroups
// nearest cg (each parent before its children), which is where the
// inspection of a limit holder looks first.
//
// Whatever the tasks' argv, a candidate keeps at most procfs.MaxCmdline of
// cmdline, about 4.4 KiB in all, and candidates with the same cmdline share
// it; the ancestors read for origins are bounded the same way (procfs's
// memo).
func (in Inspector) Candidates(cg string) ([]Candidate, error) {
	var out []Candidate
	memo := map[int]procfs.Proc{} // ancestors shared by the tasks
	var cmds cmdlines
	maxCg := in.MaxCgroups
	if maxCg <= 0 {
		maxCg = 4096
	}
	err := in.CG.Walk(cg, maxCg, func(c string) error {
		var err error
		out, err = in.collect(c, out, memo, &cmds)
		return err
	})
	if err != nil && !errors.Is(err, errTooManyProcs) && !errors.Is(err, cgroupfs.ErrTooMany) {
		return nil, err
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].RSS > out[j].RSS })
	return out, nil
}

// Direct returns the tasks directly in cg (not its descendants).
func (in Inspector) Direct(cg string) ([]Candidate, error) {
	out, err := in.collect(cg, nil, map[int]procfs.Proc{}, &cmdlines{})
	if err != nil && !errors.Is(err, errTooManyProcs) {
		return nil, err
	}
	return out, nil
}

func (in Inspector) collect(c string, out []Candidate, memo map[int]procfs.Proc, cmds *cmdlines) ([]Candidate, error) {
	max := in.MaxProcs
	if max <= 0 {
		max = 4096
	}
	pids, err := in.CG.Procs(c)
	if errors.Is(err, cgroupfs.ErrGone) {
		return out, nil
	}
	if err != nil {
		return out, err
	}
	for _, pid := range pids {
		if len(out) >= max {
			return out, errTooManyProcs
		}
		p, err := in.Proc.Proc(pid)
		if errors.Is(err, procfs.ErrGone) {
			continue
		}
		if err != nil {
			return out, fmt.Errorf("inspect pid %d in %s: %w", pid, c, err)
		}
		if p.Kthread {
			continue // never an OOM candidate
		}
		cand := candidateOf(p, c)
		cand.Cmdline = cmds.intern(cand.Cmdline)
		if cand.Unkillable {
			if cand.Origin = in.origin(p, memo); cand.Origin != nil {
				cand.Origin.Cmdline = cmds.intern(cand.Origin.Cmdline)
			}
		}
		out = append(out, cand)
	}
	return out, nil
}

var errTooManyProcs = errors.New("too many processes")

// cmdlines keeps one copy of each cmdline the tasks of one inspection
// share: the workers a server forks show their parent's argv, and a
// tenant's thousands of forks of one long argv then cost one
// procfs.MaxCmdline, not one each.
type cmdlines struct {
	seed maphash.Seed
	m    map[uint64][]string
}

func (cs *cmdlines) intern(args []string) []string {
	if len(args) == 0 {
		return args
	}
	if cs.m == nil {
		cs.seed, cs.m = maphash.MakeSeed(), map[uint64][]string{}
	}
	var h maphash.Hash
	h.SetSeed(cs.seed)
	for _, a := range args {
		h.WriteString(a)
		h.WriteByte(0) // never in an argument
	}
	k := h.Sum64()
	if old, ok := cs.m[k]; ok {
		if slices.Equal(old, args) {
			return old
		}
		return args // a collision: both are kept
	}
	cs.m[k] = args
	return args
}

func candidateOf(p procfs.Proc, cg string) Candidate {
	c := Candidate{
		PID: p.PID, PPID: p.PPID, Comm: p.Comm, Cmdline: p.Cmdline, CmdlineTruncated: p.CmdlineTruncated, UID: p.UID,
		State: string(p.State), RSS: p.RSS, OOMScoreAdj: p.OOMScoreAdj, Cgroup: cg,
		Unkillable: p.Unkillable(), Exiting: p.Exiting(),
	}
	v := p.OOMAdj()
	c.OOMAdj = &v
	return c
}

func (in Inspector) origin(p procfs.Proc, memo map[int]procfs.Proc) *Origin {
	chain, err := in.Proc.OriginChain(p, memo)
	if err != nil && len(chain) == 0 {
		return nil
	}
	i := procfs.Origin(chain)
	if i < 0 {
		return nil
	}
	o := &Origin{PID: chain[i].PID, Comm: chain[i].Comm, Cmdline: chain[i].Cmdline, CmdlineTruncated: chain[i].CmdlineTruncated,
		OOMScoreAdj: chain[i].OOMScoreAdj, Depth: i, ParentPID: chain[i].PPID}
	if i+1 < len(chain) {
		o.ParentComm, o.ParentAdj = chain[i+1].Comm, chain[i+1].OOMScoreAdj
	}
	return o
}

// Classify turns a suspected loop and the tasks found into a verdict. It is
// pure. A loop needs at least one unkillable task and no task the kernel
// could still pick; an empty subtree or any killable, running task makes
// it "stalled".
func Classify(cands []Candidate) Verdict {
	unkillable := 0
	for _, c := range cands {
		switch {
		case c.Unkillable:
			unkillable++
		case c.Exiting:
		default:
			return VerdictStalled
		}
	}
	if unkillable == 0 {
		return VerdictStalled
	}
	return VerdictLoop
}

// LargestOrigin returns the origin of the largest unkillable candidate.
func LargestOrigin(cands []Candidate) *Origin {
	for _, c := range cands { // sorted by RSS, largest first
		if c.Unkillable && c.Origin != nil {
			return c.Origin
		}
	}
	return nil
}
