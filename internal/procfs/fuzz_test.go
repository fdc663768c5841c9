package procfs

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

func FuzzParseStat(f *testing.F) {
	for _, s := range []string{statCat, statKthreadd, statZombie, "42 (a) b (c)" + statTail, "42 (a\nb)" + statTail, "", "(", ")", "1 () R"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := parseStat(b)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is not a *ParseError", err)
			}
			return
		}
		if s.PID <= 0 || s.PPID < 0 {
			t.Fatalf("accepted pid %d ppid %d", s.PID, s.PPID)
		}
		// comm is exactly what lies between the first '(' and the last ')'.
		if !bytes.Contains(b, []byte("("+s.Comm+")")) {
			t.Fatalf("comm %q not found in input", s.Comm)
		}
	})
}

func FuzzParseStatus(f *testing.F) {
	for _, s := range []string{statusSelf, statusKthread, "Uid:\t0\nVmRSS:\t1 kB", ""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := parseStatus(b)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is not a *ParseError", err)
			}
			return
		}
		if s.UID < 0 || s.RSS%1024 != 0 {
			t.Fatalf("accepted %+v", s)
		}
	})
}

func FuzzParseCmdline(f *testing.F) {
	for _, s := range []string{"", "\x00", "a\x00b\x00", "sshd: root@pts/0", "\x00\x00", strings.Repeat("a\x00", 70), "x\x00€€"} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, b []byte, cut bool) {
		if cut && len(b) > MaxCmdline {
			b = b[:MaxCmdline] // what readAt passes with cut
		}
		args := parseCmdline(b, cut)
		if len(args) > maxArgs {
			t.Fatalf("%d arguments, want at most %d", len(args), maxArgs)
		}
		for _, a := range args {
			if strings.IndexByte(a, 0) >= 0 {
				t.Fatalf("argument %q contains NUL", a)
			}
		}
		joined := strings.Join(args, " ")
		if !cut {
			if want := strings.ReplaceAll(strings.TrimSuffix(string(b), "\x00"), "\x00", " "); joined != want {
				t.Fatalf("joined %q, want %q", joined, want)
			}
			if strings.Count(string(b), "\x00") < maxArgs {
				if round := strings.Join(args, "\x00"); round != strings.TrimSuffix(string(b), "\x00") {
					t.Fatalf("round trip %q != %q", round, b)
				}
			}
			return
		}
		kept, ok := strings.CutSuffix(joined, CmdlineCut)
		if !ok || len(joined) > MaxCmdline {
			t.Fatalf("cut cmdline %q: want at most %d bytes ending in %q", joined, MaxCmdline, CmdlineCut)
		}
		in := strings.ReplaceAll(string(b), "\x00", " ")
		if least := min(len(b), MaxCmdline-len(CmdlineCut)) - (utf8.UTFMax - 1); !strings.HasPrefix(in, kept) || len(kept) < least {
			t.Fatalf("kept %q of %q: want a prefix of at least %d bytes", kept, in, least)
		}
		if utf8.Valid(b) && !utf8.ValidString(joined) {
			t.Fatalf("cut %q splits a character", joined)
		}
	})
}

// FuzzScanLines: readStatus's line splitting of a file, with any buffer
// size, parses what parseStatus parses from the whole file whenever no
// line is longer than the buffer, and never fails otherwise on a line it
// does not use.
func FuzzScanLines(f *testing.F) {
	for _, s := range []string{statusSelf, statusKthread, "Uid:\t0\nVmRSS:\t1 kB", "", "Groups:\t" + strings.Repeat("1000 ", 3000) + "\nUid:\t5\n"} {
		f.Add([]byte(s), uint16(8))
		f.Add([]byte(s), uint16(4096))
	}
	f.Fuzz(func(t *testing.T, b []byte, size uint16) {
		if size == 0 || len(b) > 1<<20 {
			return
		}
		var sp statusParser
		gotErr := scanFile(t, b, make([]byte, size), sp.line)
		got, endErr := sp.end()
		if gotErr == nil {
			gotErr = endErr
		}
		want, wantErr := parseStatus(b)
		longest := 0
		for _, l := range bytes.Split(b, []byte("\n")) {
			longest = max(longest, len(l))
		}
		if longest < int(size) {
			if (gotErr == nil) != (wantErr == nil) || gotErr == nil && got != want {
				t.Fatalf("buffer %d: streamed %+v, %v; whole %+v, %v", size, got, gotErr, want, wantErr)
			}
			return
		}
		if gotErr != nil {
			var pe *ParseError
			if !errors.As(gotErr, &pe) {
				t.Fatalf("error %v is not a *ParseError", gotErr)
			}
		}
	})
}

// scanFile runs scanLines on b in a memfd, which like the /proc files read
// whole returns a short read only at its end.
func scanFile(t *testing.T, b, buf []byte, fn func(int, []byte, bool) error) error {
	t.Helper()
	fd, err := unix.MemfdCreate("status", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if _, err := unix.Pwrite(fd, b, 0); err != nil {
		t.Fatal(err)
	}
	return scanLines(fd, buf, fn)
}

func FuzzParseInt(f *testing.F) {
	for _, s := range []string{"0\n", "-1000\n", "1000", "", "x", "-17\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, err := parseInt("oom_score_adj", b); err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || pe.File != "oom_score_adj" {
				t.Fatalf("error %v is not a *ParseError naming the file", err)
			}
		}
	})
}

func FuzzParseCgroup(f *testing.F) {
	for _, s := range []string{"0::/\n", "0::/x (deleted)\n", "9:name=systemd:/\n4:memory:/a\n0::/\n", "2:cpu,cpuacct:/x", "", ":::", "0::/a\n0::/b"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		lines, err := parseCgroup(b)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is not a *ParseError", err)
			}
			return
		}
		ids := map[int]bool{}
		for _, l := range lines {
			if ids[l.ID] || l.ID < 0 || !strings.HasPrefix(l.Path, "/") || strings.Contains(l.Path, "\n") {
				t.Fatalf("accepted bad line %+v in %q", l, b)
			}
			ids[l.ID] = true
		}
	})
}

func FuzzSafe(f *testing.F) {
	for _, s := range []string{"", "a) b (c", "a\nb", "\xff", "\u202e", "\\x41"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := Safe(s)
		if !utf8.ValidString(out) {
			t.Fatalf("Safe(%q) = %q is not valid UTF-8", s, out)
		}
		for _, r := range out {
			if r != ' ' && !unicode.IsPrint(r) {
				t.Fatalf("Safe(%q) = %q contains non-printing %U", s, out, r)
			}
		}
		// Safe loses nothing: escaping is reversible.
		if back, err := unescape(out); err != nil || back != s {
			t.Fatalf("unescape(Safe(%q) = %q) = %q, %v", s, out, back, err)
		}
	})
}

// unescape inverts Safe.
func unescape(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			b.WriteByte(s[i])
			continue
		}
		if i+1 >= len(s) {
			return "", errors.New("trailing backslash")
		}
		i++
		switch c := s[i]; c {
		case '\\':
			b.WriteByte('\\')
		case 'n':
			b.WriteByte('\n')
		case 't':
			b.WriteByte('\t')
		case 'x', 'u', 'U':
			n := map[byte]int{'x': 2, 'u': 4, 'U': 8}[c]
			if i+n >= len(s) {
				return "", errors.New("short escape")
			}
			v, err := strconv.ParseUint(s[i+1:i+1+n], 16, 32)
			if err != nil {
				return "", err
			}
			if c == 'x' {
				b.WriteByte(byte(v))
			} else {
				b.WriteRune(rune(v))
			}
			i += n
		default:
			return "", errors.New("unknown escape")
		}
	}
	return b.String(), nil
}

func FuzzParseNSLink(f *testing.F) {
	for _, s := range []string{"cgroup:[4026531835]", "cgroup:[0]", "cgroup:[", "net:[1]", "cgroup:[1]]", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ino, err := parseNSLink("cgroup", s)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is not a *ParseError", err)
			}
			return
		}
		if ino == 0 || s != "cgroup:["+strconv.FormatUint(ino, 10)+"]" {
			t.Fatalf("%q accepted as inode %d", s, ino)
		}
	})
}
