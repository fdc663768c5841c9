package procfs

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ParseError reports a /proc file whose content did not have the expected
// shape. File is the file's name as read (a full path when it came from an
// FS or Handle, the base name when a parser was called directly); Line is
// 1-based, 0 when the error is not tied to one line (stat is a single record
// whose comm may itself contain newlines).
type ParseError struct {
	File string
	Line int
	Err  error
}

func (e *ParseError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("parse %s line %d: %v", e.File, e.Line, e.Err)
	}
	return fmt.Sprintf("parse %s: %v", e.File, e.Err)
}

func (e *ParseError) Unwrap() error { return e.Err }

func parseErr(file string, line int, format string, args ...any) error {
	return &ParseError{File: file, Line: line, Err: fmt.Errorf(format, args...)}
}

// stat is what we use from /proc/PID/stat.
type stat struct {
	PID   int
	Comm  string
	State byte
	PPID  int
	Flags uint
}

// parseStat parses /proc/PID/stat: "pid (comm) state ppid pgrp session tty_nr
// tpgid flags ...". comm is whatever the task put in its name (prctl
// PR_SET_NAME, or the executable's basename): up to 15 bytes for user tasks,
// up to 63 for kthreads on 6.x, and it may contain spaces, parentheses,
// newlines and invalid UTF-8. Everything after comm is numeric, so comm runs
// from the first '(' to the LAST ')'.
func parseStat(b []byte) (stat, error) {
	const file = "stat"
	var s stat
	open := bytes.IndexByte(b, '(')
	closing := bytes.LastIndexByte(b, ')')
	if open < 0 || closing < open {
		return s, parseErr(file, 0, "no \"(comm)\" field")
	}
	pid, err := strconv.Atoi(string(bytes.TrimSpace(b[:open])))
	if err != nil || pid <= 0 {
		return s, parseErr(file, 0, "field 1 (pid) %q is not a positive integer", b[:open])
	}
	s.PID = pid
	s.Comm = string(b[open+1 : closing])

	// Fields 3.. after the comm. We need 3 (state), 4 (ppid) and 9 (flags).
	rest := strings.Fields(string(b[closing+1:]))
	if len(rest) < 7 {
		return s, parseErr(file, 0, "%d fields after comm, want at least 7", len(rest))
	}
	if len(rest[0]) != 1 {
		return s, parseErr(file, 0, "field 3 (state) %q is not one character", rest[0])
	}
	s.State = rest[0][0]
	ppid, err := strconv.Atoi(rest[1])
	if err != nil || ppid < 0 {
		return s, parseErr(file, 0, "field 4 (ppid) %q is not a non-negative integer", rest[1])
	}
	s.PPID = ppid
	flags, err := strconv.ParseUint(rest[6], 10, 32) // task->flags is unsigned int, printed %u
	if err != nil {
		return s, parseErr(file, 0, "field 9 (flags) %q: %v", rest[6], errors.Unwrap(err))
	}
	s.Flags = uint(flags)
	return s, nil
}

// status is what we use from /proc/PID/status.
type status struct {
	UID int    // real uid
	RSS uint64 // bytes; 0 when VmRSS is absent (kernel thread, zombie)
}

// parseStatus parses /proc/PID/status "Key:\tvalue" lines. It needs "Uid:"
// (real, effective, saved, fs) and takes "VmRSS:" ("  1234 kB") if present.
// Unknown keys are ignored. The kernel escapes '\n' and '\\' in "Name:", so
// one line is one key; a repeated Uid or VmRSS is refused rather than
// guessed at.
func parseStatus(b []byte) (status, error) {
	var sp statusParser
	for i, line := range bytes.Split(b, []byte("\n")) {
		if err := sp.line(i+1, line, false); err != nil {
			return sp.s, err
		}
	}
	return sp.end()
}

// statusParser is parseStatus one line at a time, for readStatus, which
// streams the file through a fixed buffer.
type statusParser struct {
	s                status
	haveUID, haveRSS bool
}

// line parses line n (1-based, without its '\n'). cut says line is only the
// start of a longer line (readStatus's buffer was full): the key is in it,
// and a key that is used is refused, but the rest of an unused line, such
// as Groups: with thousands of supplementary groups, need not be read.
func (sp *statusParser) line(n int, line []byte, cut bool) error {
	const file = "status"
	key, val, ok := bytes.Cut(line, []byte(":"))
	if !ok {
		if !cut && len(bytes.TrimSpace(line)) == 0 {
			return nil
		}
		return parseErr(file, n, "no ':' in %q", line)
	}
	switch string(key) {
	case "Uid", "VmRSS":
		if cut {
			return parseErr(file, n, "%s line longer than %d bytes", key, len(line))
		}
	}
	switch string(key) {
	case "Uid":
		if sp.haveUID {
			return parseErr(file, n, "repeated Uid")
		}
		f := strings.Fields(string(val))
		if len(f) == 0 {
			return parseErr(file, n, "empty Uid")
		}
		uid, err := strconv.ParseUint(f[0], 10, 32)
		if err != nil {
			return parseErr(file, n, "Uid %q: %v", f[0], errors.Unwrap(err))
		}
		sp.s.UID, sp.haveUID = int(uid), true
	case "VmRSS":
		if sp.haveRSS {
			return parseErr(file, n, "repeated VmRSS")
		}
		f := strings.Fields(string(val))
		if len(f) != 2 || f[1] != "kB" {
			return parseErr(file, n, "VmRSS %q: want \"<n> kB\"", bytes.TrimSpace(val))
		}
		kb, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return parseErr(file, n, "VmRSS %q: %v", f[0], errors.Unwrap(err))
		}
		if kb > math.MaxUint64/1024 {
			return parseErr(file, n, "VmRSS %s kB overflows bytes", f[0])
		}
		sp.s.RSS, sp.haveRSS = kb*1024, true
	}
	return nil
}

// end returns what the lines gave, or an error if Uid was missing.
func (sp *statusParser) end() (status, error) {
	if !sp.haveUID {
		return sp.s, parseErr("status", 0, "no Uid line")
	}
	return sp.s, nil
}

// Bounds on what a Proc keeps of /proc/PID/cmdline, which the process
// chooses: an argv of 2 MB costs its owner one copy however many times it
// forks, and would cost oomwatch that much per task. The first MaxCmdline
// bytes are enough for exemption globs and reports; the whole is never read.
const (
	// MaxCmdline is the most bytes of a cmdline a Proc keeps, CmdlineCut
	// included.
	MaxCmdline = 4096
	// CmdlineCut ends the last argument of a cmdline that was cut.
	CmdlineCut = "…"
	// maxArgs bounds the arguments kept (each costs a string header, more
	// than a one-byte argument itself): the ones after the 63rd stay
	// joined by spaces in the last, which leaves the space-joined cmdline
	// that exemption globs match unchanged.
	maxArgs = 64
)

// parseCmdline splits /proc/PID/cmdline on NUL. b is the file, or with cut
// its first MaxCmdline bytes (there was more): the arguments then hold the
// first MaxCmdline-len(CmdlineCut) bytes or fewer (the cut does not split a
// UTF-8 character), and CmdlineCut ends the last one. Without cut a final
// NUL is dropped. It is empty for kernel threads and zombies (nil is
// returned). A process may overwrite its argv (setproctitle), so the last
// argument need not be NUL-terminated and arguments may contain anything
// but NUL; no error is possible. At most maxArgs arguments are returned;
// joined by spaces they are always b with each NUL a space (without cut,
// the dropped final NUL aside), followed by CmdlineCut if cut.
//
// All the arguments share one allocation.
func parseCmdline(b []byte, cut bool) []string {
	if cut {
		n := MaxCmdline - len(CmdlineCut)
		for i := 0; i < utf8.UTFMax-1 && n > 0 && n < len(b) && !utf8.RuneStart(b[n]); i++ {
			n--
		}
		b = b[:min(n, len(b))]
	} else {
		b = bytes.TrimSuffix(b, []byte{0})
		if len(b) == 0 {
			return nil
		}
	}
	var sb strings.Builder
	sb.Grow(len(b) + len(CmdlineCut))
	nuls := 0
	for _, c := range b {
		if c == 0 {
			if nuls++; nuls >= maxArgs {
				c = ' '
			}
		}
		sb.WriteByte(c)
	}
	if cut {
		sb.WriteString(CmdlineCut)
	}
	all := sb.String()
	args := make([]string, 0, min(nuls, maxArgs-1)+1)
	for {
		i := strings.IndexByte(all, 0)
		if i < 0 {
			return append(args, all)
		}
		args = append(args, all[:i])
		all = all[i+1:]
	}
}

// parseInt parses a single decimal integer followed by an optional newline,
// as in oom_score_adj and oom_adj. file names the file in the error.
func parseInt(file string, b []byte) (int, error) {
	s := strings.TrimSuffix(string(b), "\n")
	v, err := strconv.Atoi(s)
	if err != nil {
		return 0, parseErr(file, 1, "%q is not a decimal integer", s)
	}
	return v, nil
}

// CgroupLine is one line of /proc/PID/cgroup.
type CgroupLine struct {
	ID          int      // hierarchy ID; 0 for the v2 unified hierarchy
	Controllers []string // v1 controllers (and "name=systemd"-style names); nil for v2
	Path        string   // relative to the reader's cgroup namespace, " (deleted)" removed
	Deleted     bool     // the kernel appended " (deleted)" (v2 zombie whose cgroup is gone)
}

const deletedSuffix = " (deleted)"

// parseCgroup parses /proc/PID/cgroup "hierarchy-ID:controller-list:path"
// lines. The path is printed unescaped, so it may contain ':' (kept: we split
// at the first two colons only) and even '\n' (cgroup names may contain
// anything but '/'). A newline in a name could forge a whole extra line, so a
// hierarchy ID or controller that appears twice is refused: the kernel prints
// each hierarchy exactly once. [6.12 kernel/cgroup/cgroup.c:proc_cgroup_show]
func parseCgroup(b []byte) ([]CgroupLine, error) {
	const file = "cgroup"
	b = bytes.TrimSuffix(b, []byte("\n"))
	if len(b) == 0 {
		return nil, parseErr(file, 0, "empty")
	}
	var out []CgroupLine
	ids := make(map[int]bool)
	ctrls := make(map[string]bool)
	for i, line := range bytes.Split(b, []byte("\n")) {
		n := i + 1
		f := bytes.SplitN(line, []byte(":"), 3)
		if len(f) != 3 {
			return nil, parseErr(file, n, "%q: want hierarchy-ID:controller-list:path", line)
		}
		id, err := strconv.Atoi(string(f[0]))
		if err != nil || id < 0 {
			return nil, parseErr(file, n, "hierarchy ID %q is not a non-negative integer", f[0])
		}
		if ids[id] {
			return nil, parseErr(file, n, "hierarchy ID %d repeated", id)
		}
		ids[id] = true
		l := CgroupLine{ID: id}
		if len(f[1]) > 0 {
			for _, c := range strings.Split(string(f[1]), ",") {
				if c == "" {
					return nil, parseErr(file, n, "empty controller name in %q", f[1])
				}
				if ctrls[c] {
					return nil, parseErr(file, n, "controller %q repeated", c)
				}
				ctrls[c] = true
				l.Controllers = append(l.Controllers, c)
			}
		} else if id != 0 {
			// A v1 hierarchy always has a controller or a name=.
			return nil, parseErr(file, n, "hierarchy %d has no controllers", id)
		}
		p := string(f[2])
		if strings.HasSuffix(p, deletedSuffix) {
			p, l.Deleted = strings.TrimSuffix(p, deletedSuffix), true
		}
		if !strings.HasPrefix(p, "/") {
			return nil, parseErr(file, n, "path %q is not absolute", p)
		}
		l.Path = p
		out = append(out, l)
	}
	return out, nil
}

// Safe returns s with everything that could mislead a log reader or a
// terminal escaped: invalid UTF-8 bytes as \xNN, control and other
// non-printing runes (newline, ESC, bidi overrides) as \n, \t or \uNNNN, and
// the backslash itself as \\. Use it whenever a comm or cmdline — chosen by
// the (possibly hostile) process itself — is shown to a human.
func Safe(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == ' ' || (unicode.IsPrint(r) && r != utf8.RuneError):
			b.WriteRune(r)
		case r <= 0xffff:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			fmt.Fprintf(&b, `\U%08x`, r)
		}
		i += size
	}
	return b.String()
}
