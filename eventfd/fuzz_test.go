package eventfd

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// captureInotify returns what the kernel itself wrote to an inotify fd
// watching a fresh directory (wd 1), its subdirectory (wd 2) and a pinned
// file (wd 3) while a child directory is made and removed, a file is
// written, a watch is removed (IN_IGNORED) and the subdirectory deleted
// (IN_DELETE_SELF): the same three watches the fuzz target's poller holds.
func captureInotify(f *testing.F) [][]byte {
	f.Helper()
	dir := f.TempDir()
	sub, file := filepath.Join(dir, "sub"), filepath.Join(dir, "memory.events")
	if err := os.Mkdir(sub, 0o755); err != nil {
		f.Fatal(err)
	}
	if err := os.WriteFile(file, []byte("oom 0\n"), 0o644); err != nil {
		f.Fatal(err)
	}
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		f.Fatal(err)
	}
	defer unix.Close(fd)
	for _, w := range []struct {
		path string
		mask uint32
	}{{dir, dirMask}, {sub, dirMask}, {file, pinMask}} {
		if _, err := unix.InotifyAddWatch(fd, w.path, w.mask); err != nil {
			f.Fatal(err)
		}
	}
	var out [][]byte
	read := func() {
		buf := make([]byte, 4096)
		n, err := unix.Read(fd, buf)
		if err == nil && n > 0 {
			out = append(out, buf[:n])
		}
	}
	steps := []func() error{
		func() error { return os.Mkdir(filepath.Join(dir, "lxc.payload.c1"), 0o755) },
		func() error { return os.WriteFile(file, []byte("oom 1\n"), 0o644) },
		func() error { return os.Rename(filepath.Join(dir, "lxc.payload.c1"), filepath.Join(sub, "c1")) },
		func() error { return os.Remove(filepath.Join(sub, "c1")) },
		func() error { _, err := unix.InotifyRmWatch(fd, 3); return err },
		func() error { return os.Remove(sub) },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			f.Fatal(err)
		}
		read()
	}
	return out
}

// inotifyRecord builds one struct inotify_event as the kernel lays it out.
func inotifyRecord(wd int32, mask uint32, name string) []byte {
	n := 0
	if name != "" {
		n = (len(name) + 1 + 15) &^ 15 // NUL-terminated, padded
	}
	b := make([]byte, unix.SizeofInotifyEvent+n)
	binary.NativeEndian.PutUint32(b[0:], uint32(wd))
	binary.NativeEndian.PutUint32(b[4:], mask)
	binary.NativeEndian.PutUint32(b[12:], uint32(n))
	copy(b[unix.SizeofInotifyEvent:], name)
	return b
}

// The inotify parser gets whatever read(2) returned. It must never panic,
// read past a record, report an event for a wd it does not hold, or say
// Gone twice for a key; its name cache stays bounded.
func FuzzParseInotify(f *testing.F) {
	for _, b := range captureInotify(f) {
		f.Add(b)
	}
	f.Add(inotifyRecord(-1, unix.IN_Q_OVERFLOW, ""))
	f.Add(append(inotifyRecord(1, unix.IN_ISDIR|unix.IN_CREATE, "a"), inotifyRecord(1, unix.IN_IGNORED, "")...))
	f.Add(inotifyRecord(2, unix.IN_MODIFY, "memory.events")[:20]) // torn
	f.Add(bytes.Repeat([]byte{0xff}, 64))
	dir := f.TempDir()
	sub, file := filepath.Join(dir, "sub"), filepath.Join(dir, "memory.events")
	if err := os.Mkdir(sub, 0o755); err != nil {
		f.Fatal(err)
	}
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := New()
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		if err := p.WatchDir("a", dir); err != nil {
			t.Fatal(err)
		}
		if err := p.WatchDir("b", sub); err != nil {
			t.Fatal(err)
		}
		if err := p.PinFile("a", file); err != nil {
			t.Fatal(err)
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		evs := p.parseInotifyLocked(nil, b)
		if len(evs) > len(b)/unix.SizeofInotifyEvent {
			t.Fatalf("%d events from %d bytes", len(evs), len(b))
		}
		gone := map[string]bool{}
		for _, ev := range evs {
			switch ev.Kind {
			case Overflow:
				if ev.Key != "" {
					t.Fatalf("overflow with key %q", ev.Key)
				}
				continue
			case Gone:
				if gone[ev.Key] {
					t.Fatalf("Gone twice for %q", ev.Key)
				}
				gone[ev.Key] = true
				if p.byKey[ev.Key] != nil {
					t.Fatalf("Gone for %q, still watched", ev.Key)
				}
			case Created, Removed, Modified:
				if bytes.HasSuffix([]byte(ev.Name), []byte{0}) {
					t.Fatalf("name %q keeps its padding", ev.Name)
				}
			default:
				t.Fatalf("event %+v", ev)
			}
			if ev.Key != "a" && ev.Key != "b" {
				t.Fatalf("event for a key never watched: %+v", ev)
			}
		}
		if len(p.names) > maxInterned {
			t.Fatalf("%d names interned", len(p.names))
		}
		for wd, e := range p.byWD {
			if e.dirWD != wd && e.pinWD != wd || p.byKey[e.key] != e {
				t.Fatalf("wd %d maps to a stale entry %+v", wd, e)
			}
		}
	})
}
