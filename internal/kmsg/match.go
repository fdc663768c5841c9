package kmsg

import (
	"strconv"
	"strings"
)

// Kind names an OOM-related kernel log line.
type Kind string

// The lines the OOM killer prints. Formats are quoted from the kernels named
// (mm/oom_kill.c, mm/memcontrol.c); 4.19+ lines are unchanged up to 6.18.
const (
	// "COMM invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=-1000"
	// — first line of every dump_header (4.19+: once per OOM attempt).
	KindInvoked Kind = "invoked"
	// "memory: usage 16384kB, limit 16384kB, failcnt 0" — memcg dumps.
	KindUsage Kind = "usage"
	// "Memory cgroup stats for /path:" — names the OOM domain of the dump.
	KindStats Kind = "stats"
	// "Task in /a killed as a result of limit of /b" — 4.x before 4.19.
	KindTaskIn Kind = "task-in"
	// "Out of memory and no killable processes..." — 4.19+ (3100dab2aa09),
	// printed after the dump when no victim exists: the loop's signature.
	KindNoKillable Kind = "no-killable"
	// "oom-kill:constraint=CONSTRAINT_MEMCG,…,oom_memcg=/a,task_memcg=/a/b,task=COMM,pid=N,uid=N" — 4.19+.
	KindConstraint Kind = "oom-kill"
	// "Memory cgroup out of memory: Killed process PID (COMM) total-vm:…" (also
	// the global "Out of memory: Killed process …").
	KindKilled Kind = "killed"
	// "Memory cgroup out of memory: Kill process PID (COMM) score N or sacrifice child"
	// (2.6.36–4.x) and 2.6.32's "…: kill process PID (COMM) score N or a child".
	KindKillProcess Kind = "kill-process"
	// "Tasks in /path are going to be killed due to memory.oom.group set" — 4.19+.
	KindGroup Kind = "oom-group"
)

// Line is what a matcher extracted. Fields a kind does not carry are zero.
type Line struct {
	Kind Kind
	// Cgroup is the cgroup the line names: the OOM domain (oom_memcg, the
	// stats and "limit of" path) or the oom.group cgroup. "" when none.
	Cgroup     string
	TaskCgroup string // oom-kill task_memcg, task-in first path
	Comm       string
	PID        int
	UID        int
	Constraint string // CONSTRAINT_MEMCG, CONSTRAINT_NONE, …
	GFPMask    string
	Order      int
	// OOMScoreAdj of the task that invoked the killer (invoked) or of the
	// victim (killed); HasAdj says whether the line carried one.
	OOMScoreAdj int
	HasAdj      bool
	Score       int64  // kill-process
	UsageKB     uint64 // usage
	LimitKB     uint64 // usage
	Memcg       bool   // killed: the memcg killer (false: the global one)
}

// Relevant reports whether the line belongs in an incident's evidence (the
// stats header only names the cgroup of a dump).
func (l Line) Relevant() bool { return l.Kind != "" && l.Kind != KindStats }

const (
	prefMemcgOOM   = "Memory cgroup out of memory: "
	prefGlobalOOM  = "Out of memory: "
	sufInvoked     = " invoked oom-killer: "
	msgNoKillable  = "Out of memory and no killable processes..."
	prefConstraint = "oom-kill:"
	prefStats      = "Memory cgroup stats for "
	prefUsage      = "memory: usage "
	prefTaskIn     = "Task in "
	midTaskIn      = " killed as a result of limit of "
	prefGroup      = "Tasks in "
	sufGroup       = " are going to be killed due to memory.oom.group set"
)

// Match recognises an OOM-related message (Record.Message). It is pure and
// cheap for the lines it does not want: a byte check and a few prefix
// comparisons, since an OOM loop floods the log with stack dumps.
func Match(msg string) (Line, bool) {
	if msg == "" {
		return Line{}, false
	}
	switch msg[0] {
	case 'M':
		if rest, ok := strings.CutPrefix(msg, prefMemcgOOM); ok {
			return matchKill(rest, true)
		}
		if rest, ok := strings.CutPrefix(msg, prefStats); ok {
			p := strings.TrimSuffix(rest, ":")
			if !isPath(p) {
				return Line{}, false
			}
			return Line{Kind: KindStats, Cgroup: p}, true
		}
	case 'O':
		if strings.HasPrefix(msg, msgNoKillable) {
			return Line{Kind: KindNoKillable}, true
		}
		if rest, ok := strings.CutPrefix(msg, prefGlobalOOM); ok {
			return matchKill(rest, false)
		}
	case 'o':
		if rest, ok := strings.CutPrefix(msg, prefConstraint); ok {
			return matchConstraint(rest)
		}
	case 'm':
		if rest, ok := strings.CutPrefix(msg, prefUsage); ok {
			return matchUsage(rest)
		}
	case 'T':
		if rest, ok := strings.CutPrefix(msg, prefGroup); ok {
			p, ok := strings.CutSuffix(rest, sufGroup)
			if !ok || !isPath(p) {
				return Line{}, false
			}
			return Line{Kind: KindGroup, Cgroup: p}, true
		}
		if rest, ok := strings.CutPrefix(msg, prefTaskIn); ok {
			task, lim, ok := strings.Cut(rest, midTaskIn)
			if !ok || !isPath(task) || !isPath(lim) {
				return Line{}, false
			}
			return Line{Kind: KindTaskIn, Cgroup: lim, TaskCgroup: task}, true
		}
	}
	if i := strings.Index(msg, sufInvoked); i > 0 {
		return matchInvoked(msg[:i], msg[i+len(sufInvoked):])
	}
	return Line{}, false
}

func isPath(p string) bool { return strings.HasPrefix(p, "/") }

// matchKill parses "Killed process PID (COMM) total-vm:…, UID:0 pgtables:…kB
// oom_score_adj:N" and the older "Kill process PID (COMM) score N or
// sacrifice child" / "kill process PID (COMM) score N or a child".
func matchKill(rest string, memcg bool) (Line, bool) {
	l := Line{Memcg: memcg}
	switch {
	case strings.HasPrefix(rest, "Killed process "):
		l.Kind, rest = KindKilled, rest[len("Killed process "):]
	case memcg && (strings.HasPrefix(rest, "Kill process ") || strings.HasPrefix(rest, "kill process ")):
		l.Kind, rest = KindKillProcess, rest[len("Kill process "):]
	default:
		return Line{}, false
	}
	pid, after, ok := strings.Cut(rest, " (")
	if !ok {
		return Line{}, false
	}
	var err error
	if l.PID, err = strconv.Atoi(pid); err != nil || l.PID <= 0 {
		return Line{}, false
	}
	// comm may itself contain ") ": cut at the last ")" before the known tail.
	var tail string
	switch l.Kind {
	case KindKilled:
		if i := strings.LastIndex(after, ") total-vm:"); i >= 0 {
			l.Comm, tail = after[:i], after[i+1:]
		} else if i := strings.LastIndexByte(after, ')'); i >= 0 { // 2.6.32: "Killed process 12 (java)"
			l.Comm, tail = after[:i], after[i+1:]
		} else {
			return Line{}, false
		}
		if i := strings.LastIndex(tail, "oom_score_adj:"); i >= 0 {
			if v, err := strconv.Atoi(strings.TrimSpace(tail[i+len("oom_score_adj:"):])); err == nil {
				l.OOMScoreAdj, l.HasAdj = v, true
			}
		}
		if i := strings.Index(tail, "UID:"); i >= 0 {
			f := strings.Fields(tail[i+len("UID:"):])
			if len(f) > 0 {
				l.UID, _ = strconv.Atoi(strings.TrimSuffix(f[0], ","))
			}
		}
	case KindKillProcess:
		i := strings.LastIndex(after, ") score ")
		if i < 0 {
			return Line{}, false
		}
		l.Comm, tail = after[:i], after[i+len(") score "):]
		s, _, _ := strings.Cut(tail, " ")
		if l.Score, err = strconv.ParseInt(s, 10, 64); err != nil {
			return Line{}, false
		}
	}
	return l, true
}

// matchConstraint parses the 4.19+ one-line summary. Cgroup paths may
// contain commas, so the fields are found from the right, where the
// kernel's own fixed keys are.
func matchConstraint(rest string) (Line, bool) {
	l := Line{Kind: KindConstraint}
	c, _, ok := strings.Cut(strings.TrimPrefix(rest, "constraint="), ",")
	if !ok || !strings.HasPrefix(rest, "constraint=") {
		return Line{}, false
	}
	l.Constraint = c
	s := rest
	take := func(key string) (string, bool) {
		i := strings.LastIndex(s, ","+key+"=")
		if i < 0 {
			return "", false
		}
		v := s[i+len(key)+2:]
		s = s[:i]
		return v, true
	}
	uid, ok1 := take("uid")
	pid, ok2 := take("pid")
	task, ok3 := take("task")
	if !ok1 || !ok2 || !ok3 {
		return Line{}, false
	}
	var err error
	if l.UID, err = strconv.Atoi(uid); err != nil {
		return Line{}, false
	}
	if l.PID, err = strconv.Atoi(pid); err != nil {
		return Line{}, false
	}
	l.Comm = task
	if tm, ok := take("task_memcg"); ok {
		l.TaskCgroup = tm
	}
	if om, ok := take("oom_memcg"); ok && isPath(om) {
		l.Cgroup = om // absent for a global OOM (",global_oom,")
	}
	return l, true
}

// matchUsage parses "16384kB, limit 16384kB, failcnt 0" (after "memory: usage ").
func matchUsage(rest string) (Line, bool) {
	f := strings.Split(rest, ", ")
	if len(f) < 2 {
		return Line{}, false
	}
	u, ok1 := strings.CutSuffix(f[0], "kB")
	lim, ok2 := strings.CutPrefix(f[1], "limit ")
	lim, ok3 := strings.CutSuffix(lim, "kB")
	if !ok1 || !ok2 || !ok3 {
		return Line{}, false
	}
	l := Line{Kind: KindUsage}
	var err error
	if l.UsageKB, err = strconv.ParseUint(u, 10, 64); err != nil {
		return Line{}, false
	}
	if l.LimitKB, err = strconv.ParseUint(lim, 10, 64); err != nil {
		return Line{}, false
	}
	return l, true
}

// matchInvoked parses "gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=-1000"
// (4.x adds "nodemask=(null), ").
func matchInvoked(comm, rest string) (Line, bool) {
	l := Line{Kind: KindInvoked, Comm: comm}
	seenOrder := false
	for _, f := range strings.Split(rest, ", ") {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			continue
		}
		switch k {
		case "gfp_mask":
			l.GFPMask = v
		case "order":
			n, err := strconv.Atoi(v)
			if err != nil {
				return Line{}, false
			}
			l.Order, seenOrder = n, true
		case "oom_score_adj":
			n, err := strconv.Atoi(v)
			if err != nil {
				return Line{}, false
			}
			l.OOMScoreAdj, l.HasAdj = n, true
		}
	}
	if l.GFPMask == "" || !seenOrder {
		return Line{}, false
	}
	return l, true
}
